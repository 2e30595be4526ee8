"""`gptme-factory init`: make a brain repo a factory (ledger, then gptme wiring)."""

from __future__ import annotations

import click

from ._common import echo_json, json_option, repo_option


@click.command("init")
@click.option("--upgrade", is_flag=True,
              help="Also update installed skill/lesson files you have not changed.")
@click.option("--no-wire", is_flag=True,
              help="Only create the ledger; leave gptme.toml, skills and lessons alone.")
@click.option("--line", "lines", multiple=True, metavar="NAME",
              help="Also install a built-in line (bugfix: issue -> reproduce -> fix -> PR); "
                   "added to an existing factory.yaml that lacks it. Repeatable.")
@repo_option
@json_option
def command(upgrade: bool, no_wire: bool, lines: tuple[str, ...], repo: str,
            as_json: bool) -> None:
    """Create the factory ledger (factory/) in a git repo, wire gptme, commit. Idempotent.

    Wiring merges `[env] TOOL_MODULES` into gptme.toml (keeping your keys and comments) and
    installs skills/factory-run/SKILL.md and lessons/factory/*.md, never overwriting a file
    you changed.
    """
    from ..ledger.store import Ledger

    ledger, changed = Ledger.init(repo, lines=lines)
    report = None
    if not no_wire:
        from ..plugin.wiring import wire

        report = wire(ledger, upgrade=upgrade)
    if as_json:
        echo_json({"repo": str(ledger.repo.root), "changed": changed,
                   "wiring": report.to_json() if report else None})
        return
    wired = report.changes if report else []
    if not changed and not wired:
        click.echo(f"{ledger.repo.root}: already a factory, nothing changed")
        return
    click.echo(f"{ledger.repo.root}: " + ("factory initialized" if changed else "factory wiring"))
    for path in changed:
        click.echo(f"  wrote {path}")
    for path, what in wired:
        click.echo(f"  {path}: {what}")
