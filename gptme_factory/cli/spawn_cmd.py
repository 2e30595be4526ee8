"""`gptme-factory spawn`: launch the cell for an artifact's current stage."""

from __future__ import annotations

import click

from ._cellopts import cell_options, spawn_options
from ._common import echo_json, json_option, open_ledger, repo_option


@click.command("spawn")
@click.argument("artifact")
@cell_options
@click.option("--force", is_flag=True, help="Retry a blocked stage past its attempt budget.")
@click.option("--take-over", is_flag=True,
              help="Take over a claim whose lease expired with no handoff (shared ledger).")
@repo_option
@json_option
def command(artifact: str, backend: str, model: str | None, timeout_s: float | None,
            max_tokens: int | None, max_cost_usd: float | None, command_template: str | None,
            scripted: str | None, force: bool, take_over: bool, repo: str,
            as_json: bool) -> None:
    """Start ARTIFACT's current stage and launch its cell (records cell_spawned).

    The cell gets a brief (committed with the event), its own worktree, and the budget. Watch
    it with `status`, reap it with `collect`, or let `run` do both.
    """
    from ..cells.spawn import spawn

    ledger = open_ledger(repo)
    opts = spawn_options(backend, model, timeout_s, max_tokens, max_cost_usd, command_template,
                         scripted, force)
    opts.take_over = take_over
    rec = spawn(ledger, artifact, opts)
    if as_json:
        echo_json(rec.to_json())
    else:
        click.echo(f"{rec.cell}  {rec.stage} ({rec.role}) via {rec.backend}"
                   + (f" session {rec.session}" if rec.session else ""))
        click.echo(f"  brief   {rec.brief}")
        click.echo(f"  workdir {rec.workdir}" + (f" (branch {rec.branch})" if rec.branch else ""))
