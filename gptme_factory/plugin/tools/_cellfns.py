"""Tool functions for cells: spawn, progress, collect, kill, and the foreman's run.

Thin adapters over cells.py and foreman.py (the cells engine); budgets and the default model
come from `[plugin.gptme_factory]`.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ...views.present import reaped_lines
from ._base import adapter, open_ledger, summary_of
from ._render import Reply, next_step

if TYPE_CHECKING:
    pass

@adapter
def factory_progress(cell: str, note: str) -> str:
    """Report a cell's latest useful progress (shown on the board; not a commit)."""
    from ...cells.spawn import progress

    until = progress(open_ledger(), cell, note)
    renewed = f"; claim renewed until {until.isoformat()}" if until else ""
    return f"progress noted for {cell}{renewed}"


@adapter
def factory_spawn(artifact: str, model: str | None = None, timeout_s: float | None = None) -> str:
    """Spawn a bounded cell (gptodo + tmux + gptme) for the artifact's current stage; returns the cell id.

    model: the cell's model (default: [plugin.gptme_factory] model, then gptme's default).
    timeout_s: wall-clock budget (default: the stage's budget in factory.yaml).
    """
    from ...cells import spawn as cells
    from ...line.claims import find_artifact
    from ..settings import settings

    ledger = open_ledger()
    aid = find_artifact(ledger, artifact)
    opts = cells.SpawnOptions(model=model or settings.model,
                              timeout_s=timeout_s if timeout_s is not None else settings.timeout_s,
                              max_tokens=settings.max_tokens, max_cost_usd=settings.max_cost_usd)
    rec = cells.spawn(ledger, aid, opts)
    where = f", tmux session {rec.session}" if rec.session else ""
    limits = [f"{rec.timeout_s:.0f} s"]
    if rec.max_tokens:
        limits.append(f"{rec.max_tokens:,} tokens")
    if rec.max_cost_usd is not None:
        limits.append(f"${rec.max_cost_usd:g}")
    return Reply(f"spawned cell {rec.cell}: {rec.role} for stage {rec.stage} ({rec.backend}"
                 f"{where}); budget {', '.join(limits)}. Watch with factory_status(); "
                 f"factory_wait({aid!r}) returns when it has ended and its gate ran.",
                 value=rec.cell, artifact=aid, cell=rec.cell)


@adapter
def factory_collect(artifact: str | None = None) -> str:
    """Collect finished cells: enforce budgets, record each ended cell (a cell without a handoff fails its attempt) and run its gate."""
    from ...cells import spawn as cells

    ledger = open_ledger()
    aid = ledger.resolve(artifact) if artifact else None
    reaped, said = cells.collect(ledger, [aid] if aid else None)
    lines = list(said)
    for r in reaped:
        lines += reaped_lines(r)
    still = [rec.cell for rec in cells.live(ledger) if aid is None or rec.artifact == aid]
    if still:
        lines.append(f"{len(still)} cell(s) still running: {', '.join(still)}")
    elif not reaped:
        lines.append("no cells to collect")
    if aid:
        lines.append(f"next: {next_step(summary_of(ledger, aid))}")
    return "\n".join(lines)


@adapter
def factory_wait(artifact: str, timeout_s: float | None = None) -> str:
    """Wait until the artifact's running cell has ended, then record it and run its gate (like factory_collect); returns what happened and the next step.

    timeout_s: how long to wait at most (default and upper bound: just under gptme's ipython
    timeout); if the cell is still running then, it keeps running: call it again.
    """
    from ...cells import spawn as cells

    ledger = open_ledger()
    aid = ledger.resolve(artifact)
    reaped, said, still = cells.wait(ledger, [aid], timeout_s=_run_window(timeout_s),
                                     poll_s=1.0)
    lines = list(said)
    for r in reaped:
        lines += reaped_lines(r)
    if still:
        lines.append(f"still running after the wait: {', '.join(still)}; call "
                     f"factory_wait({aid!r}) again (factory_status() shows its progress)")
    elif not reaped:
        lines.append(f"no cell of {aid} is running")
    lines.append(f"next: {next_step(summary_of(ledger, aid))}")
    return Reply("\n".join(lines), artifact=aid, done=not still)


@adapter
def factory_kill(cell: str, reason: str = "") -> str:
    """Stop a running cell now and record it as killed (its attempt fails)."""
    from ...cells import spawn as cells

    res = cells.kill(open_ledger(), cell, reason)
    return f"{cell}: killed" + (f" ({res.reason})" if res is not None and res.reason else "")


def _run_window(max_wait_s: float | None) -> float:
    """How long factory_run may block: under gptme's ipython cell timeout, which kills the cell."""
    raw = os.environ.get("GPTME_IPYTHON_TIMEOUT", "600")
    try:
        cell_timeout = float(raw)
    except ValueError:
        cell_timeout = 600.0
    limit = max(30.0, cell_timeout - 60) if cell_timeout > 0 else float("inf")
    return min(max_wait_s, limit) if max_wait_s is not None else min(540.0, limit)


@adapter
def factory_run(artifact: str, model: str | None = None, until: str | None = None,
                publish: str | None = None, max_wait_s: float | None = None) -> str:
    """Drive the artifact through its remaining stages with bounded cells (spawn, collect, gate, next stage); resumable.

    Returns when the artifact is done, blocked or waits for a person, or after max_wait_s
    (default 540 s, under gptme's ipython timeout): cells keep running; call it again to go
    on. until: stop once that stage passed. publish: note|pr|release to publish the release
    package when the package gate needs it (default: stop and let a person decide).
    """
    import time

    from ...cells import spawn as cells
    from ...cells.foreman import Foreman as foreman
    from ...line.claims import find_artifact
    from ..settings import settings

    ledger = open_ledger()
    aid = find_artifact(ledger, artifact)
    opts = cells.SpawnOptions(model=model or settings.model, timeout_s=settings.timeout_s,
                              max_tokens=settings.max_tokens, max_cost_usd=settings.max_cost_usd)
    events: list[str] = []
    deadline = time.monotonic() + _run_window(max_wait_s)
    run = foreman(ledger, [aid], until=until, opts=opts, publish=publish,
                  on_event=events.append, should_stop=lambda: time.monotonic() > deadline)
    stopped = run.run()
    lines = events[-40:]
    if not stopped:
        lines.append(f"still running after {_run_window(max_wait_s):.0f} s; the cells keep "
                     f"working: factory_status() to watch, factory_run({aid!r}) to go on")
    lines.append(f"next: {next_step(summary_of(ledger, aid))}")
    return Reply("\n".join(lines), artifact=aid, done=bool(stopped))
