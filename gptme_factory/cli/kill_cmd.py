"""`gptme-factory kill`: stop a cell now and record it as killed."""

from __future__ import annotations

import click

from ._common import echo_json, json_option, open_ledger, repo_option


@click.command("kill")
@click.argument("cell")
@click.option("--reason", default="", help="Why (recorded in the ledger).")
@repo_option
@json_option
def command(cell: str, reason: str, repo: str, as_json: bool) -> None:
    """Stop CELL and every process it started; record cell_finished (killed)."""
    from ..cells.spawn import kill

    r = kill(open_ledger(repo), cell, reason)
    if as_json:
        echo_json({"cell": cell, "outcome": r.outcome if r else None})
    else:
        click.echo(f"{cell}: {r.outcome if r else 'already reaped'}")
