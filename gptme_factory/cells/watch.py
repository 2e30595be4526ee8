"""Watching a running cell: elapsed time, budget left, latest useful output, stalled or not.

An observation is derived from the runtime record, the process table, the cell's progress
notes and its own gptme conversation log; nothing here writes. The foreman uses it to
enforce budgets, `status` to show the line. "Latest useful thing" is the cell's latest
progress note, else the last meaningful line of its conversation or terminal output. A cell
looks stalled when neither a progress note nor its conversation has moved for
`stall_after_s`.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from . import convlog, proctree
from .state import CellRecord


@dataclass
class Observation:
    """What is known about one cell right now."""

    cell: str
    artifact: str
    stage: str
    role: str
    backend: str
    session: str | None
    alive: bool
    elapsed_s: float
    timeout_s: float
    time_left_s: float
    tokens: int | None
    tokens_measured: bool
    max_tokens: int | None
    cost_usd: float | None
    max_cost_usd: float | None
    latest: str
    latest_source: str
    idle_s: float
    stalled: bool
    stopping: str | None
    conversation: str | None

    @property
    def over_budget(self) -> str | None:
        """Which token/cost bound is exceeded, as a sentence, or None."""
        if self.max_tokens and self.tokens is not None and self.tokens > self.max_tokens:
            how = "measured" if self.tokens_measured else "estimated"
            return f"used {self.tokens:,} tokens ({how}), over its budget of {self.max_tokens:,}"
        if (self.max_cost_usd is not None and self.cost_usd is not None
                and self.cost_usd > self.max_cost_usd):
            return f"cost ${self.cost_usd:.4f}, over its budget of ${self.max_cost_usd:g}"
        return None

    def to_json(self) -> dict[str, Any]:
        """Plain dict for --json."""
        data = asdict(self)
        data["over_budget"] = self.over_budget
        return data


def _mtime(path: str | None) -> float:
    if not path:
        return 0.0
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


def observe(rec: CellRecord, now: datetime, *, stall_after_s: float,
            progress: tuple[str, str] | None, output_tail: str = "",
            logs: convlog.LogDirs | None = None) -> Observation:
    """Observe one cell. `progress` is its latest (note, ISO time), if any.

    `logs`: where to look for its conversation, listed once for every cell observed.
    """
    started = rec.started
    elapsed = max(0.0, (now - started).total_seconds())
    alive = proctree.alive(rec.pid, rec.pid_start) if rec.pid else rec.stop is None
    conv = rec.conversation
    if conv is None:
        found = convlog.find_conversation(rec.workdir, started.timestamp(), rec.cell, logs=logs)
        conv = str(found) if found else None
    usage = convlog.read_usage(Path(conv), in_flight=alive) if conv else None
    activity = [started.timestamp(), _mtime(conv and os.path.join(conv, "conversation.jsonl"))]
    latest, source = "", ""
    if progress:
        latest, source = progress[0], "progress"
        try:
            activity.append(datetime.fromisoformat(progress[1]).timestamp())
        except ValueError:
            pass
    if not latest and usage and usage.last_line:
        latest, source = usage.last_line, "conversation"
    if not latest and output_tail:
        latest, source = convlog.last_output_line(output_tail), "output"
    idle = max(0.0, now.timestamp() - max(activity))
    return Observation(
        cell=rec.cell, artifact=rec.artifact, stage=rec.stage, role=rec.role,
        backend=rec.backend, session=rec.session, alive=alive, elapsed_s=round(elapsed, 1),
        timeout_s=rec.timeout_s, time_left_s=round(rec.timeout_s - elapsed, 1),
        tokens=usage.tokens if usage else None,
        tokens_measured=bool(usage and usage.measured), max_tokens=rec.max_tokens,
        cost_usd=usage.cost_usd if usage else None, max_cost_usd=rec.max_cost_usd,
        latest=latest, latest_source=source, idle_s=round(idle, 1),
        stalled=alive and idle > stall_after_s,
        stopping=(rec.stop or {}).get("outcome"), conversation=conv,
    )
