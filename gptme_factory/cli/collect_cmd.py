"""`gptme-factory collect`: reap finished cells, enforce budgets, run the gates."""

from __future__ import annotations

import click

from ._common import echo_json, json_option, open_ledger, repo_option


@click.command("collect")
@click.argument("artifacts", nargs=-1)
@click.option("--no-advance", is_flag=True, help="Record the cells' ends but run no gate.")
@click.option("--grace", "grace_s", type=float, default=30.0, show_default=True,
              help="Seconds a cell may linger after its handoff before it is stopped.")
@click.option("--wait", "wait_", is_flag=True,
              help="Keep collecting until no cell (of ARTIFACTS) is left, or --timeout.")
@click.option("--timeout", "timeout_s", type=float, default=600.0, show_default=True,
              help="With --wait: seconds to wait at most (running cells keep running).")
@repo_option
@json_option
def command(artifacts: tuple[str, ...], no_advance: bool, grace_s: float, wait_: bool,
            timeout_s: float, repo: str, as_json: bool) -> None:
    """Stop cells past their budget and reap every cell that has ended (of ARTIFACTS, if given).

    Reaping records cell_finished (outcome, reason, exit code, tokens and cost measured from
    the cell's gptme log, output tail), removes the cell's worktree, and runs the stage's gate
    on a submitted handoff.
    """
    from ..cells.spawn import collect, wait

    ledger = open_ledger(repo)
    wanted = [ledger.resolve(a) for a in artifacts] or None
    still: list[str] = []
    if wait_:
        reaped, said, still = wait(ledger, wanted, timeout_s=timeout_s, grace_s=grace_s,
                                   advance=not no_advance)
    else:
        reaped, said = collect(ledger, wanted, advance=not no_advance, grace_s=grace_s)
    if as_json:
        echo_json({"stopped": said, "reaped": [{
            "cell": r.cell, "artifact": r.artifact, "outcome": r.outcome, "reason": r.reason,
            "wall_s": r.wall_s, "tokens": r.tokens, "cost_usd": r.cost_usd,
            "gate": None if r.advanced is None else {
                "stage": r.advanced.stage, "passed": r.advanced.passed,
                "state": r.advanced.state, "reasons": r.advanced.reasons},
            "gate_note": r.gate_note} for r in reaped], "still_running": still})
        return
    from ..views.present import reaped_lines

    for line in said:
        click.echo(line)
    for r in reaped:
        click.echo("\n".join(reaped_lines(r)))
    if still:
        click.echo(f"still running after {timeout_s:g} s: {', '.join(still)}")
    elif not reaped and not said:
        click.echo("nothing to collect")
    for note in ledger.notes:
        click.echo(f"note: {note}", err=True)
