"""The board's cell section: every launched cell not yet reaped, as `status` shows it.

Read-only and light (runtime JSON, /proc and the cells' own logs; no git, no GitPython, no
rich): artifact, role, backend, elapsed time, budget left, the latest useful thing it
produced and whether it looks stalled. `status --watch` renders the same rows with rich.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from ..cells import state as cellstate
from ..cells.backends import read_output
from ..cells.convlog import LogDirs
from ..cells.watch import Observation, observe
from ..ledger import runtime
from ..ledger.store import Ledger
from .present import duration, tokens
from .statuscache import config_values


def observations(ledger: Ledger, now: datetime | None = None) -> list[Observation]:
    """An observation of every launched, unreaped cell of this ledger."""
    recs = cellstate.load_all(ledger.runtime_dir)
    if not recs:
        return []
    now = now or datetime.now(timezone.utc)
    stall = float(config_values(ledger)["stall_after_s"])
    logs = LogDirs()  # listed once, for every cell
    return [observe(rec, now, stall_after_s=stall, progress=runtime.last_progress(ledger, rec.cell),
                    output_tail=read_output(rec, 8000), logs=logs)
            for rec in recs]


def state_of(o: Observation) -> str:
    """running, stalled, stopping (why) or exited (awaiting collect)."""
    if not o.alive:
        return "exited, awaiting collect"
    if o.stopping:
        return f"stopping ({o.stopping})"
    return "stalled" if o.stalled else "running"


def budget_left(o: Observation) -> str:
    """What is left of each bound, e.g. `24m10s left, 1.2M tok, $4.90`."""
    parts = [f"{duration(o.time_left_s)} left" if o.time_left_s > 0 else "time up"]
    if o.max_tokens:
        used = o.tokens or 0
        est = "" if o.tokens_measured or o.tokens is None else "~"
        parts.append(f"{est}{tokens(max(0, o.max_tokens - used))} tok")
    if o.max_cost_usd is not None:
        left = o.max_cost_usd - (o.cost_usd or 0.0)
        parts.append(f"${max(0.0, left):.2f}")
    return ", ".join(parts)


def row(o: Observation) -> dict[str, str]:
    """The displayed columns of one cell."""
    return {
        "cell": o.cell, "artifact": o.artifact, "role": o.role, "backend": o.backend,
        "elapsed": duration(o.elapsed_s), "budget": budget_left(o), "state": state_of(o),
        "latest": o.latest or "(nothing yet)",
    }


def render_text(obs: list[Observation], cap: int) -> list[str]:
    """Plain-text lines for `status`."""
    if not obs:
        return []
    lines = [f"cells ({sum(o.alive for o in obs)} running, max {cap})"]
    for o in obs:
        r = row(o)
        lines.append(f"  {r['cell']:<56} {r['role']:<9} {r['backend']:<8} {r['elapsed']:>7}  "
                     f"{r['state']:<10} {r['budget']}")
        lines.append(f"    > {r['latest']}")
    return lines


def to_json(obs: list[Observation]) -> list[dict[str, Any]]:
    """The same for programs."""
    return [{**o.to_json(), "state": state_of(o), "budget_left": budget_left(o)} for o in obs]
