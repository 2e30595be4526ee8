"""`gptme-factory start`: start a stage by hand and get its cell id (no process spawned)."""

from __future__ import annotations

import click

from ._common import echo_json, json_option, open_ledger, repo_option


@click.command("start")
@click.argument("artifact")
@click.option("--force", is_flag=True, help="Retry a blocked stage past its attempt budget.")
@repo_option
@json_option
def command(artifact: str, force: bool, repo: str, as_json: bool) -> None:
    """Start ARTIFACT's current stage and print the cell id allowed to hand off for it."""
    from ..line.engine import refresh_base, start_stage

    ledger = open_ledger(repo)
    aid = ledger.resolve(artifact)
    refresh_base(ledger, aid)  # a target's base, fetched from its remote
    s = start_stage(ledger, aid, force=force)
    if as_json:
        echo_json(s.__dict__)
    else:
        click.echo(f"{s.cell}  {s.stage} ({s.role}, attempt {s.attempt})")
        if s.role == "builder" and s.base_commit:
            click.echo(f"build on base {s.base_commit}: branch from it, commit, and hand it "
                       "over as `base` (with `head` = your last commit)")
