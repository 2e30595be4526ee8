"""The default backend: a gptodo task file, then `gptodo.subagent.spawn_agent` in tmux.

gptodo runs `gptme -n [--model M] "<prompt>"` in tmux session `gptodo_agent_<id>` from the
workspace it is given, writing `state/sessions/<id>.{json,output}` under that workspace. The
cell must run in its own worktree, yet gptodo's records belong in the brain repo (so
`gptodo sessions`, `output` and `kill` work there): the worktree's `state/sessions` is a
symlink to the brain's, listed in info/exclude so it never lands in a commit.

Facts this relies on (gptodo 0.1.0): `--type` is only recorded (the role travels in the
brief); the background timeout is ignored (the factory enforces deadlines); a session
record refreshes only through `check_session`; a missing `EXIT_CODE` line is reported as
completed (the factory checks for the handoff itself). The pane's pid is recorded so
liveness does not depend on gptodo's records, and killing takes the pane's whole process
tree, since gptme's shell children can outlive a killed tmux session.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from ...errors import CellError
from ...ledger.gitstore import GitRepo
from .. import proctree
from ..state import CellRecord
from ..worktrees import ensure_excluded
from . import LaunchSpec, output_exit_code

SESSIONS = Path("state") / "sessions"


def _link_sessions(workdir: Path, brain: Path) -> None:
    target = brain / SESSIONS
    target.mkdir(parents=True, exist_ok=True)
    if workdir.resolve() == brain.resolve():
        return
    link = workdir / SESSIONS
    if link.is_symlink() or link.exists():
        return
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, link, target_is_directory=True)


def _pane_pid(tmux_session: str) -> int | None:
    proc = subprocess.run(["tmux", "list-panes", "-t", tmux_session, "-F", "#{pane_pid}"],
                          capture_output=True, text=True, check=False)
    first = proc.stdout.strip().splitlines()[:1]
    return int(first[0]) if proc.returncode == 0 and first and first[0].isdigit() else None


class GptodoBackend:
    """Cells as gptodo background agents."""

    name = "gptodo"

    def launch(self, spec: LaunchSpec, rec: CellRecord) -> None:
        """Write the task file and spawn the agent in tmux."""
        from gptodo.subagent import save_session, spawn_agent

        # No task file in tasks/: a cell is the factory's work, not the user's queue (it shows
        # in `gptodo sessions`); an artifact that needs a person gets one (taskfile.py).
        _link_sessions(spec.workdir, spec.brain)
        # The link is in the cell's worktree: excluded in the repo it belongs to (a target's).
        ensure_excluded(GitRepo.discover(spec.workdir), f"/{SESSIONS.as_posix()}")
        session: Any = spawn_agent(
            task_id=spec.cell, prompt=spec.prompt, agent_type=spec.gptodo_type,  # type: ignore[arg-type]
            backend="gptme", background=True, workspace=spec.workdir, model=spec.model)
        rec.session = session.session_id
        rec.extra["tmux_session"] = session.tmux_session
        out = spec.brain / SESSIONS / f"{session.session_id}.output"
        rec.output_file = str(out)
        # gptodo recorded the path through the worktree's link; point it at the brain.
        session.output_file = str(out)
        save_session(session, spec.brain)
        if session.status == "failed":
            raise CellError(f"gptodo could not start cell {spec.cell}: {session.error}")
        pid = _pane_pid(session.tmux_session)
        if pid is not None:
            rec.pid, rec.pid_start = pid, proctree.start_ticks(pid)

    def alive(self, rec: CellRecord) -> bool:
        """The pane's process runs (or, without a pid, gptodo says running)."""
        if rec.pid:
            return proctree.alive(rec.pid, rec.pid_start)
        return self._status(rec) == "running"

    def _status(self, rec: CellRecord) -> str | None:
        from gptodo.subagent import check_session

        if not rec.session:
            return None
        session = check_session(rec.session, Path(rec.brain))
        return session.status if session else None

    def stop(self, rec: CellRecord) -> None:
        """`gptodo kill` the session, then every process left of the pane's tree."""
        from gptodo.subagent import kill_session

        tree = proctree.descendants(rec.pid) if rec.pid and proctree.alive(rec.pid, rec.pid_start) else []
        if rec.session:
            kill_session(rec.session, Path(rec.brain))
        proctree.kill_tree(rec.pid, rec.pid_start, extra=tree)

    def finalize(self, rec: CellRecord, outcome: str) -> None:
        """Refresh gptodo's session record (its `status` then says how the cell ended)."""
        self._status(rec)

    def exit_code(self, rec: CellRecord) -> int | None:
        """From the `EXIT_CODE=N` line the launch wrapper appended."""
        return output_exit_code(rec)


BACKEND = GptodoBackend()
