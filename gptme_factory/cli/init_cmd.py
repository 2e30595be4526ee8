"""`gptme-factory init`: make a brain repo a factory."""

from __future__ import annotations

import click

from ._common import echo_json, json_option, repo_option


@click.command("init")
@repo_option
@json_option
def command(repo: str, as_json: bool) -> None:
    """Create the factory ledger (factory/) in a git repo and commit it. Idempotent."""
    from ..ledger import Ledger

    ledger, changed = Ledger.init(repo)
    if as_json:
        echo_json({"repo": str(ledger.repo.root), "changed": changed})
        return
    if not changed:
        click.echo(f"{ledger.repo.root}: already a factory, nothing changed")
        return
    click.echo(f"{ledger.repo.root}: factory initialized")
    for path in changed:
        click.echo(f"  wrote {path}")
