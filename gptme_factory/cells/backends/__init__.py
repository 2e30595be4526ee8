"""Cell backends: how a cell process is launched, watched, read and stopped.

A backend turns a `LaunchSpec` (prompt, working directory, model, role) into a running
process and fills in the runtime record (`cellstate.CellRecord`): session id, pid and start
time, output file. Every backend leaves a process the factory can check by pid (so liveness
survives the factory's own restart) and an output file that ends with `EXIT_CODE=N` when
the process ended by itself.

- `gptodo` (default): a gptodo task file plus `gptodo.subagent.spawn_agent` in tmux, so
  `gptodo list`/`sessions`/`output`/`kill` show and control factory cells.
- `subagent`: gptme's own `subagent()` API in subprocess mode.
- `command`: any command template (`claude -p {prompt}`, `gptme -n --no-stream {prompt}`).

Backends are imported lazily by name: the gptme backend imports gptme only when used.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ...errors import UsageError
from ..state import CellRecord

BACKENDS = {
    "gptodo": "gptodo_backend",
    "subagent": "subagent_backend",
    "command": "command_backend",
}


@dataclass
class LaunchSpec:
    """What a backend needs to start one cell."""

    cell: str
    role: str
    gptodo_type: str
    prompt: str
    prompt_file: Path
    brief_file: Path
    workdir: Path
    brain: Path
    runtime_dir: Path
    title: str
    model: str | None = None
    timeout_s: float = 1800
    command: str | None = None
    tags: list[str] = field(default_factory=list)


class Backend(Protocol):
    """The operations the factory needs from a cell backend."""

    name: str

    def launch(self, spec: LaunchSpec, rec: CellRecord) -> None:
        """Start the cell; set rec.session/pid/pid_start/output_file/task_file."""

    def alive(self, rec: CellRecord) -> bool:
        """True while the cell's process runs."""

    def stop(self, rec: CellRecord) -> None:
        """Stop the cell and every process it started."""

    def exit_code(self, rec: CellRecord) -> int | None:
        """The process's exit code, if known."""

    def finalize(self, rec: CellRecord, outcome: str) -> None:
        """After the ledger recorded the cell's end: refresh the backend's own records."""


def get_backend(name: str) -> Backend:
    """The backend called `name`."""
    module = BACKENDS.get(name)
    if module is None:
        raise UsageError(f"unknown backend {name!r}: use one of {', '.join(BACKENDS)}")
    mod = importlib.import_module(f"{__name__}.{module}")
    backend: Backend = mod.BACKEND
    return backend


def read_output(rec: CellRecord, max_bytes: int = 64_000) -> str:
    """The end of a cell's output file (empty if there is none)."""
    if not rec.output_file:
        return ""
    try:
        with open(rec.output_file, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return ""


def output_exit_code(rec: CellRecord) -> int | None:
    """The `EXIT_CODE=N` the launch wrapper appended, or None if the process never wrote it."""
    for line in reversed(read_output(rec, 4096).splitlines()):
        if line.startswith("EXIT_CODE="):
            try:
                return int(line.split("=", 1)[1])
            except ValueError:
                return None
    return None
