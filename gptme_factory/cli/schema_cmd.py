"""`gptme-factory schema`: the JSON Schema of a role's (or contract's) handoff."""

from __future__ import annotations

import json

import click

from ._common import repo_option


@click.command("schema")
@click.argument("role")
@click.option("--example", "as_example", is_flag=True,
              help="Print a filled-in example handoff (YAML) instead of the schema.")
@repo_option
def command(role: str, as_example: bool, repo: str) -> None:
    """Print the JSON Schema of ROLE's handoff (a role like scout, or a contract name)."""
    from ..ledger.schemas import example_for, schema_for

    if as_example:
        from ..ledger import yamlio

        click.echo(yamlio.dumps(example_for(role, repo)).decode().rstrip("\n"))
        return
    click.echo(json.dumps(schema_for(role, repo), indent=2, sort_keys=False))
