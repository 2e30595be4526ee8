"""Runtime records of launched cells: `factory/.runtime/cells/<cell>.json`.

The ledger says *that* a cell was spawned and how it ended; this record says how to reach
the process while it runs: backend session, pid and start time, workdir, output file, the
conversation log once found, and a stop request (timed out, over budget, killed) that the
reaper turns into the `cell_finished` event. It is written when a cell is launched and
removed when the cell is reaped, so the directory lists exactly the cells not yet reaped.
Plain JSON and os only: `status` reads it on its light path.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ..ledger.runtime import write_json

CELLS_DIR = "cells"


@dataclass
class CellRecord:
    """How to reach one launched cell."""

    cell: str
    artifact: str
    stage: str
    role: str
    backend: str
    started_at: str
    workdir: str
    timeout_s: float
    brain: str = ""
    repo: str = ""  # the target clone its worktree belongs to ("" = the brain)
    max_tokens: int | None = None
    max_cost_usd: float | None = None
    session: str | None = None
    pid: int | None = None
    pid_start: int | None = None
    output_file: str | None = None
    task_file: str | None = None
    model: str | None = None
    branch: str | None = None
    read_only: bool = True
    brief: str | None = None
    conversation: str | None = None
    handoff_seen_at: str | None = None
    stop: dict[str, str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def started(self) -> datetime:
        """Launch time (wall clock, for elapsed time and deadlines)."""
        return datetime.fromisoformat(self.started_at)

    def to_json(self) -> dict[str, Any]:
        """Plain dict."""
        return asdict(self)


def cells_dir(runtime_dir: Path) -> Path:
    """Directory of the runtime cell records."""
    return runtime_dir / CELLS_DIR


def save(runtime_dir: Path, rec: CellRecord) -> None:
    """Write a record atomically."""
    d = cells_dir(runtime_dir)
    d.mkdir(parents=True, exist_ok=True)
    write_json(d / f"{rec.cell}.json", rec.to_json(), indent=1)


def load(runtime_dir: Path, cell: str) -> CellRecord | None:
    """The record of `cell`, or None."""
    try:
        data = json.loads((cells_dir(runtime_dir) / f"{cell}.json").read_text())
        return CellRecord(**data)
    except (OSError, ValueError, TypeError):
        return None


def load_all(runtime_dir: Path) -> list[CellRecord]:
    """Every record not yet reaped, oldest first."""
    out: list[CellRecord] = []
    try:
        names = sorted(os.listdir(cells_dir(runtime_dir)))
    except OSError:
        return out
    for name in names:
        if name.endswith(".json") and not name.startswith("."):
            rec = load(runtime_dir, name[:-5])
            if rec is not None:
                out.append(rec)
    out.sort(key=lambda r: r.started_at)
    return out


def remove(runtime_dir: Path, cell: str) -> None:
    """Forget a reaped cell."""
    (cells_dir(runtime_dir) / f"{cell}.json").unlink(missing_ok=True)
