"""Running verification commands with a time limit, as evidence for a gate.

Each command runs under `bash -c` in its own process group (so a timeout kills the whole
tree), with stdin closed, stdout+stderr captured together and only a bounded tail kept.
A timed-out command has no exit code and is a failure, never a success.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from .records import CheckResult

TAIL_LINES = 40
TAIL_CHARS = 4000


def tail(text: str, lines: int = TAIL_LINES, chars: int = TAIL_CHARS) -> str:
    """The last `lines` lines of `text`, at most `chars` characters."""
    kept = "\n".join(text.rstrip().splitlines()[-lines:])
    return kept[-chars:]


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
    timed_out = False
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, _ = proc.communicate()
    duration = round(time.monotonic() - start, 3)
    text = out.decode("utf-8", "replace")
    if timed_out:
        text += f"\n[timed out after {timeout_s:g} s and was killed]"
    return CheckResult(
        command=command,
        exit_code=None if timed_out else proc.returncode,
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
