"""The `subagent` backend: gptme's in-process `subagent()` API, subprocess mode.

gptme starts `python -m gptme -n --name=subagent-<id>-xxxx ...` in the cell's workdir with
the prompt on stdin, from a launcher thread of this process, and keeps its own registry.
The factory records the child's pid and start time (liveness survives a restart of the
factory) and the conversation log dir gptme chose (no search needed). gptme's worktree
isolation is not used: the factory already gives the cell its own worktree. The only module
of the core that imports gptme, and only when this backend is used.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ...errors import CellError
from .. import proctree
from ..state import CellRecord
from . import LaunchSpec

START_WAIT_S = 20.0


def agent_id(cell: str) -> str:
    """The gptme subagent id of a cell (conversation names avoid dots)."""
    return "factory-" + cell.replace(".", "-")


def _registered(aid: str) -> Any:
    from gptme.tools.subagent import api

    finder = getattr(api, "_find_subagent", None)
    return finder(aid) if finder else None


class SubagentBackend:
    """Cells as gptme subagents (subprocess mode)."""

    name = "subagent"

    def launch(self, spec: LaunchSpec, rec: CellRecord) -> None:
        """Start the subagent and wait until its process exists."""
        from gptme.tools.subagent import subagent

        aid = agent_id(spec.cell)
        subagent(aid, spec.prompt, use_subprocess=True, model=spec.model,
                 workdir=str(spec.workdir), timeout=int(spec.timeout_s) + 60)
        deadline = time.monotonic() + START_WAIT_S
        sa = _registered(aid)
        while sa is not None and getattr(sa, "process", None) is None:
            if time.monotonic() > deadline or not sa.is_running():
                break
            time.sleep(0.05)
            sa = _registered(aid)
        process = getattr(sa, "process", None) if sa is not None else None
        if process is None:
            raise CellError(f"gptme's subagent API did not start a process for {spec.cell}")
        rec.session = aid
        rec.pid, rec.pid_start = process.pid, proctree.start_ticks(process.pid)
        logdir = Path(sa.logdir)
        rec.conversation = str(logdir)
        stderr = [p for p in logdir.glob("*stderr*")]
        rec.output_file = str(stderr[0]) if stderr else None

    def alive(self, rec: CellRecord) -> bool:
        """The subagent's process runs."""
        return proctree.alive(rec.pid, rec.pid_start)

    def stop(self, rec: CellRecord) -> None:
        """Cancel through gptme when it is ours, and kill the process tree in any case."""
        if rec.session:
            try:
                from gptme.tools.subagent import subagent_cancel

                subagent_cancel(rec.session)
            except Exception:  # noqa: BLE001 - not in this process's registry: kill below
                pass
        proctree.kill_tree(rec.pid, rec.pid_start)

    def exit_code(self, rec: CellRecord) -> int | None:
        """Known only in the process that launched it (gptme's registry holds the child)."""
        sa = _registered(rec.session) if rec.session else None
        process = getattr(sa, "process", None) if sa is not None else None
        return process.poll() if process is not None else None

    def finalize(self, rec: CellRecord, outcome: str) -> None:
        """Nothing to refresh: gptme's registry updates itself."""


BACKEND = SubagentBackend()
