"""Running verification commands with a time limit, as evidence for a gate.

Each command runs under `bash -c` in its own process group, with stdin closed and
stdout+stderr captured together. The check ends when its main process exits (or its time
runs out); then whatever is left of its process group is killed, so a background child cannot
keep the gate waiting or outlive the worktree. Output is read on a thread into a bounded
buffer, so a chatty command cannot exhaust memory and a descendant that escaped the group
(`setsid`) but still holds the pipe cannot hang the factory. Only a bounded tail is kept.
A timed-out command has no exit code and is a failure, never a success.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from ..ledger.records import CheckResult

TAIL_LINES = 40
TAIL_CHARS = 4000
_BUFFER_BYTES = 64 * 1024  # raw output kept while reading (the tail is cut from it)
_DRAIN_S = 2.0  # how long to wait for the pipe to close once the command has ended


def tail(text: str, lines: int = TAIL_LINES, chars: int = TAIL_CHARS) -> str:
    """The last `lines` lines of `text`, at most `chars` characters."""
    kept = "\n".join(text.rstrip().splitlines()[-lines:])
    return kept[-chars:]


class _TailReader(threading.Thread):
    """Reads a pipe to EOF on a daemon thread, keeping only the last bytes; owns the fd."""

    def __init__(self, fd: int) -> None:
        super().__init__(daemon=True)
        self.fd = fd
        self.buffer = bytearray()
        self.lock = threading.Lock()

    def run(self) -> None:
        try:
            while chunk := os.read(self.fd, 65536):
                with self.lock:
                    self.buffer += chunk
                    del self.buffer[:-_BUFFER_BYTES]
        except OSError:  # pragma: no cover - a read error ends the output like EOF
            pass
        finally:
            os.close(self.fd)

    def text(self) -> str:
        with self.lock:
            return bytes(self.buffer).decode("utf-8", "replace")


def _wait_unreaped(proc: subprocess.Popen[bytes], timeout_s: float) -> bool:
    """Wait up to `timeout_s` for `proc` to exit, without reaping it.

    While the exited leader is not reaped its pid (the process group id) cannot be reused, so
    killing the group afterwards can never hit an unrelated process.
    """
    if not hasattr(os, "waitid"):  # pragma: no cover - platforms without waitid (macOS)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return False
        return True
    deadline = time.monotonic() + timeout_s
    delay = 0.001
    while True:
        if os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, 0.05)


def run_check(
    command: str, cwd: Path, timeout_s: float, env: Mapping[str, str] | None = None
) -> CheckResult:
    """Run one shell command in `cwd`; never raises for the command's own failure."""
    start = time.monotonic()
    proc = subprocess.Popen(
        ["bash", "-c", command],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=dict(env) if env is not None else None,
        start_new_session=True,
    )
    assert proc.stdout is not None
    # The reader owns a duplicate of the pipe: if a detached descendant keeps the pipe open,
    # the reader thread outlives this call and closes the fd when the pipe finally closes.
    reader = _TailReader(os.dup(proc.stdout.fileno()))
    proc.stdout.close()
    reader.start()
    timed_out = not _wait_unreaped(proc, timeout_s)
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the rest of the tree (or all of it on timeout)
    except ProcessLookupError:
        pass
    returncode = proc.wait()
    duration = round(time.monotonic() - start, 3)
    reader.join(_DRAIN_S)
    text = reader.text()
    if reader.is_alive():
        text += "\n[a detached process still holds the output open; stopped reading]"
    if timed_out:
        text += f"\n[timed out after {timeout_s:g} s and was killed]"
    return CheckResult(
        command=command,
        exit_code=None if timed_out else returncode,
        duration_s=duration,
        timed_out=timed_out,
        output_tail=tail(text),
    )


def run_checks(
    commands: Iterable[str], cwd: Path, timeout_s: float, env: Mapping[str, str] | None = None
) -> list[CheckResult]:
    """Run every command (all of them, even after a failure) and return their results."""
    return [run_check(c, cwd, timeout_s, env) for c in commands]


def passed(result: CheckResult) -> bool:
    """True only for a command that finished with exit code 0."""
    return not result.timed_out and result.exit_code == 0
