"""`gptme-factory close`: done is not a handoff — name a successor or declare it terminal."""

from __future__ import annotations

import click

from ._common import open_ledger, repo_option


@click.command("close")
@click.argument("artifact")
@click.option("--successor", default=None, help="The artifact that continues this work.")
@click.option("--terminal", default=None, help="Why nothing follows.")
@repo_option
def command(artifact: str, successor: str | None, terminal: str | None, repo: str) -> None:
    """Close a finished artifact: name a --successor or declare it --terminal."""
    from ..line.engine import close

    ledger = open_ledger(repo)
    aid = ledger.resolve(artifact)
    event = close(ledger, aid, successor=successor, terminal=terminal).event
    resolved = getattr(event, "successor", None)  # a prefix given, the full id recorded
    click.echo(f"{aid}: closed" + (f" -> {resolved}" if resolved else " (terminal)"))
