"""Processes of a cell: identity, liveness and killing a whole tree (Linux /proc).

A pid alone is not an identity: after a process exits its pid can be reused. A cell's
process is therefore recorded as (pid, start time in clock ticks since boot), read from
`/proc/<pid>/stat`, and is alive only while both still match and it is not a zombie.

Killing a cell must not leave orphans: gptme runs shell commands in children that can
outlive a killed tmux pane, so `kill_tree` collects every descendant first, then sends
SIGTERM to all of them, waits briefly, and SIGKILLs whatever is left.
"""

from __future__ import annotations

import os
import signal
import time


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, start ticks) of a process, or None if it does not exist."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read().decode("utf-8", "replace")
    except OSError:
        return None
    # The command name is in parentheses and may itself contain spaces or ')'.
    rest = raw[raw.rfind(")") + 2 :].split()
    try:
        return rest[0], int(rest[1]), int(rest[19])
    except (IndexError, ValueError):
        return None


def start_ticks(pid: int) -> int | None:
    """When process `pid` started (clock ticks since boot), or None if it does not exist."""
    st = _stat(pid)
    return st[2] if st else None


def alive(pid: int | None, ticks: int | None = None) -> bool:
    """True while `pid` runs and (if given) is still the process that started at `ticks`."""
    if not pid:
        return False
    st = _stat(pid)
    if st is None or st[0] in ("Z", "X"):
        return False
    return ticks is None or st[2] == ticks


def descendants(pid: int) -> list[int]:
    """Every live descendant of `pid` (children first found, breadth first)."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for name in entries:
        if not name.isdigit():
            continue
        st = _stat(int(name))
        if st is not None:
            children.setdefault(st[1], []).append(int(name))
    found: list[int] = []
    frontier = [pid]
    while frontier:
        for child in children.get(frontier.pop(), []):
            if child not in found:
                found.append(child)
                frontier.append(child)
    return found


def kill_tree(pid: int | None, ticks: int | None = None, grace_s: float = 2.0,
              extra: list[int] | None = None) -> list[int]:
    """Terminate `pid` (if it is still the recorded process) and all its descendants.

    `extra` are pids collected earlier (e.g. before a tmux session was killed) that are
    killed too if they still exist. Returns the pids that were signalled.
    """
    targets: list[int] = list(extra or [])
    if pid and alive(pid, ticks):
        targets = [pid, *descendants(pid), *targets]
    targets = [p for p in dict.fromkeys(targets) if p != os.getpid() and alive(p)]
    for p in targets:
        _signal(p, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(alive(p) for p in targets):
        time.sleep(0.05)
    for p in targets:
        if alive(p):
            _signal(p, signal.SIGKILL)
    return targets


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
