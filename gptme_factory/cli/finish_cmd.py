"""`gptme-factory reject` and `abandon`."""

from __future__ import annotations

import click

from ._common import open_ledger, repo_option


def _finish(kind: str, artifact: str, reason: str, repo: str) -> None:
    from ..line.engine import finish

    ledger = open_ledger(repo)
    aid = ledger.resolve(artifact)
    finish(ledger, aid, kind, reason)
    click.echo(f"{aid}: {kind}")


@click.command("reject")
@click.argument("artifact")
@click.option("--reason", required=True, help="Why it will not be made.")
@repo_option
def reject(artifact: str, reason: str, repo: str) -> None:
    """Reject an artifact: it will not be made."""
    _finish("rejected", artifact, reason, repo)


@click.command("abandon")
@click.argument("artifact")
@click.option("--reason", required=True, help="Why work stops.")
@repo_option
def abandon(artifact: str, reason: str, repo: str) -> None:
    """Abandon an artifact: work stops without a verdict."""
    _finish("abandoned", artifact, reason, repo)
