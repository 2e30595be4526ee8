"""`gptme-factory review`: a person approves, requests changes or rejects."""

from __future__ import annotations

import click

from ._common import open_ledger, repo_option


@click.command("review")
@click.argument("artifact")
@click.option("--approve", "decision", flag_value="approve", help="Approve and move on.")
@click.option("--request-changes", "decision", flag_value="request_changes", help="Send it back.")
@click.option("--reject", "decision", flag_value="reject", help="Reject the artifact.")
@click.option("--reviewer", required=True, help="Who reviews (a person).")
@click.option("--comments", default="", help="Review comments (the retry note on changes).")
@repo_option
def command(artifact: str, decision: str | None, reviewer: str, comments: str, repo: str) -> None:
    """Review a stage that waits for approval."""
    from ..engine import review

    if decision is None:
        raise click.UsageError("choose one of --approve, --request-changes, --reject")
    ledger = open_ledger(repo)
    aid = ledger.resolve(artifact)
    review(ledger, aid, reviewer, decision, comments)
    click.echo(f"{aid}: {decision} by {reviewer}")
