"""`gptme-factory show`: one artifact's full derived record."""

from __future__ import annotations

import click

from ._common import echo_json, json_option, open_ledger, repo_option


@click.command("show")
@click.argument("artifact")
@repo_option
@json_option
def command(artifact: str, repo: str, as_json: bool) -> None:
    """Show an artifact: intake, state, stages, cells, handoffs (any unambiguous id prefix)."""
    from ..views.details import artifact_record, render_artifact

    ledger = open_ledger(repo)
    record = artifact_record(ledger, ledger.resolve(artifact))
    if as_json:
        echo_json(record)
    else:
        click.echo(render_artifact(record))
