"""`gptme-factory log`: an artifact's audit trail, read back from git history."""

from __future__ import annotations

import click

from ._common import echo_json, json_option, open_ledger, repo_option


@click.command("log")
@click.argument("artifact")
@repo_option
@json_option
def command(artifact: str, repo: str, as_json: bool) -> None:
    """Show the commits that recorded an artifact's events: commit, time, author, event."""
    ledger = open_ledger(repo)
    aid = ledger.resolve(artifact)
    entries = ledger.history([aid])
    if as_json:
        echo_json([e.__dict__ for e in entries])
        return
    if not entries:
        click.echo(f"{aid}: no commits yet (the ledger files are not committed)")
        return
    from ..views.present import log_lines

    for line in log_lines(entries):
        click.echo(line)
