"""`gptme-factory review`: a person approves, requests changes or rejects."""

from __future__ import annotations

import click

from ._common import open_ledger, repo_option


@click.command("review")
@click.argument("artifact")
@click.option("--approve", is_flag=True, help="Approve and move on.")
@click.option("--request-changes", is_flag=True, help="Send the stage back (comments = retry note).")
@click.option("--reject", is_flag=True, help="Reject the artifact.")
@click.option("--reviewer", required=True, help="Who reviews (a person).")
@click.option("--comments", default="", help="Review comments (the retry note on changes).")
@repo_option
def command(artifact: str, approve: bool, request_changes: bool, reject: bool, reviewer: str,
            comments: str, repo: str) -> None:
    """Review a stage that waits for approval: exactly one of --approve, --request-changes, --reject."""
    from ..line.engine import review

    chosen = [d for d, on in (("approve", approve), ("request_changes", request_changes),
                              ("reject", reject)) if on]
    if len(chosen) != 1:
        # Two decisions at once must not silently become the last one given.
        raise click.UsageError("choose one of --approve, --request-changes, --reject")
    ledger = open_ledger(repo)
    aid = ledger.resolve(artifact)
    review(ledger, aid, reviewer, chosen[0], comments)
    click.echo(f"{aid}: {chosen[0]} by {reviewer}")
