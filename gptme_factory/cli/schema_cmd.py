"""`gptme-factory schema`: the JSON Schema of a role's (or contract's) handoff."""

from __future__ import annotations

import json

import click

from ._common import repo_option


@click.command("schema")
@click.argument("role")
@repo_option
def command(role: str, repo: str) -> None:
    """Print the JSON Schema of ROLE's handoff (a role like scout, or a contract name)."""
    from ..ledger.schemas import schema_for

    click.echo(json.dumps(schema_for(role, repo), indent=2, sort_keys=False))
