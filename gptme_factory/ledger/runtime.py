"""Runtime state that must not be committed: progress notes and repair counters.

Lives under factory/.runtime/ (gitignored by `init`): progress ticks would flood a PR diff.
The last progress note of a cell is copied into its handoff (or failure) event, so what
matters survives in the ledger. Writes are atomic (temp file + rename).
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .store import Ledger

MAX_NOTE = 2000


def _path(ledger: Ledger, kind: str, cell: str) -> Path:
    return ledger.runtime_dir / kind / f"{cell}.json"


def write_json(path: Path, data: Any, *, indent: int | None = None,
               compact: bool = False) -> os.stat_result:
    """Write `data` as JSON to `path` atomically (a temp file beside it, then a rename).

    A reader sees the old file or the new one, never half of one. Returns the stat of the
    file written (taken before the rename: a later writer's file has another inode). Raises
    OSError (a read-only checkout); callers for whom the file is only a cache ignore it.
    """
    text = json.dumps(data, indent=indent, separators=(",", ":") if compact else None)
    return write_bytes(path, text.encode())


def write_bytes(path: Path, data: bytes) -> os.stat_result:
    """Write `data` to `path` atomically, as `write_json` does; the stat of the file written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        st = os.fstat(fh.fileno())
    os.replace(tmp, path)
    return st


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def record_progress(ledger: Ledger, cell: str, note: str, now: datetime | None = None) -> None:
    """Remember a cell's latest progress note (runtime only, not a commit)."""
    note = " ".join(note.split())[:MAX_NOTE]
    at = (now or datetime.now(timezone.utc)).isoformat()
    path = _path(ledger, "progress", cell)
    old = _read(path) or {}
    write_json(path, {"note": note, "at": at, "count": int(old.get("count", 0)) + 1})


def last_progress(ledger: Ledger, cell: str) -> tuple[str, str] | None:
    """(note, ISO time) of a cell's latest progress note, if any."""
    data = _read(_path(ledger, "progress", cell))
    if not data or not data.get("note"):
        return None
    return str(data["note"]), str(data.get("at", ""))


def bump_repairs(ledger: Ledger, cell: str) -> int:
    """Count one more invalid handoff from `cell`; returns the new count."""
    path = _path(ledger, "repairs", cell)
    count = int((_read(path) or {}).get("count", 0)) + 1
    write_json(path, {"count": count})
    return count


def repairs(ledger: Ledger, cell: str) -> int:
    """How many invalid handoffs `cell` has submitted."""
    return int((_read(_path(ledger, "repairs", cell)) or {}).get("count", 0))


def write_state(ledger: Ledger, name: str, data: dict[str, Any]) -> None:
    """Keep a small JSON record `name` under factory/.runtime/ (atomic)."""
    write_json(ledger.runtime_dir / f"{name}.json", data)


def read_state(ledger: Ledger, name: str) -> dict[str, Any] | None:
    """A record kept by `write_state` (None if missing or unreadable)."""
    return _read(ledger.runtime_dir / f"{name}.json")
