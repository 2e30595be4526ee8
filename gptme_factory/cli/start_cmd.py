"""`gptme-factory start`: start a stage by hand and get its cell id (no process spawned)."""

from __future__ import annotations

import click

from ._common import echo_json, json_option, open_ledger, repo_option


@click.command("start")
@click.argument("artifact")
@click.option("--force", is_flag=True, help="Retry a blocked stage past its attempt budget.")
@click.option("--take-over", is_flag=True,
              help="Take over a claim whose lease expired with no handoff (shared ledger).")
@repo_option
@json_option
def command(artifact: str, force: bool, take_over: bool, repo: str, as_json: bool) -> None:
    """Start ARTIFACT's current stage and print the cell id allowed to hand off for it.

    On a shared ledger (factory.yaml `sync.remote`) the start is a claim: it holds only once
    it is on the remote; if another clone claimed the stage first, it says who, where, when.
    """
    from ..line.claims import find_artifact
    from ..line.engine import refresh_base, start_stage

    ledger = open_ledger(repo)
    aid = find_artifact(ledger, artifact)
    refresh_base(ledger, aid)  # a target's base, fetched from its remote
    s = start_stage(ledger, aid, force=force, take_over=take_over)
    if as_json:
        echo_json(s.__dict__)
    else:
        click.echo(f"{s.cell}  {s.stage} ({s.role}, attempt {s.attempt})")
        if s.role == "builder" and s.base_commit:
            click.echo(f"build on base {s.base_commit}: branch from it, commit, and hand it "
                       "over as `base` (with `head` = your last commit)")
