"""The board server running for a ledger: `factory/.runtime/board.json`, and a detached start.

A server records its URL, pid and process start time when it listens and removes the record
when it stops; `current` trusts a record only while that very process runs (pid reuse is
caught by the start time). `start_detached` launches `gptme-factory board` in its own session
(what `/factory board` in gptme and `board --detach` use) and waits until it listens;
`stop` ends the recorded server.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from typing import Any

from ..cells import proctree
from ..errors import BoardError
from ..ledger.runtime import write_json
from ..ledger.store import Ledger

RECORD = "board.json"
LOG = "board.log"


def _path(ledger: Ledger) -> Any:
    return ledger.runtime_dir / RECORD


def record(ledger: Ledger, url: str, started_at: datetime) -> None:
    """Remember that this process serves the board at `url`."""
    pid = os.getpid()
    data = {"url": url, "pid": pid, "pid_start": proctree.start_ticks(pid),
            "started_at": started_at.isoformat()}
    write_json(_path(ledger), data)


def forget(ledger: Ledger) -> None:
    """Drop the record, if it is this process's."""
    rec = _read(ledger)
    if rec and rec.get("pid") == os.getpid():
        _path(ledger).unlink(missing_ok=True)


def _read(ledger: Ledger) -> dict[str, Any] | None:
    try:
        data = json.loads(_path(ledger).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def current(ledger: Ledger) -> dict[str, Any] | None:
    """The record of the board server running for this ledger, or None."""
    rec = _read(ledger)
    if not rec or not isinstance(rec.get("pid"), int):
        return None
    if not proctree.alive(rec["pid"], rec.get("pid_start")):
        return None
    return rec


def start_detached(ledger: Ledger, *, host: str = "127.0.0.1", port: int = 0,
                   limit: int | None = None, timeout_s: float = 20.0) -> dict[str, Any]:
    """Start `gptme-factory board` in the background and return its record once it listens."""
    running = current(ledger)
    if running:
        return running
    args = [sys.executable, "-m", "gptme_factory", "board", "--repo", str(ledger.repo.root),
            "--host", host, "--port", str(port)]
    if limit is not None:
        args += ["--limit", str(limit)]
    ledger.runtime_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GPTME_FACTORY_DIR": ledger.rel}
    log = ledger.runtime_dir / LOG
    # Through a shell that puts it in the background and exits: the server is nobody's
    # child, so it outlives this process and leaves no zombie behind when it stops.
    launch = 'setsid "$@" >> "$LOG" 2>&1 < /dev/null & echo $!'
    proc = subprocess.run(["bash", "-c", launch, "board", *args], capture_output=True,
                          text=True, env={**env, "LOG": str(log)}, cwd=ledger.repo.root,
                          check=False)
    if proc.returncode != 0 or not proc.stdout.strip().isdigit():
        raise BoardError(f"could not start the board server: {proc.stderr.strip()}")
    pid = int(proc.stdout.strip())
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rec = current(ledger)
        if rec and rec.get("pid") == pid:
            return rec
        if not proctree.alive(pid):
            break
        time.sleep(0.1)
    if proctree.alive(pid):
        os.kill(pid, signal.SIGTERM)
    tail = log.read_text("utf-8", "replace")[-500:].strip() if log.exists() else ""
    raise BoardError(f"the board server did not start: {tail or 'no output'} "
                     f"(see {ledger.rel}/.runtime/{LOG})")


def stop(ledger: Ledger, timeout_s: float = 10.0) -> dict[str, Any] | None:
    """Stop the recorded board server; its record, or None when none was running."""
    rec = current(ledger)
    if rec is None:
        _path(ledger).unlink(missing_ok=True)
        return None
    os.kill(rec["pid"], signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proctree.alive(rec["pid"], rec.get("pid_start")):
        time.sleep(0.1)
    if proctree.alive(rec["pid"], rec.get("pid_start")):
        os.kill(rec["pid"], signal.SIGKILL)
    _path(ledger).unlink(missing_ok=True)
    return rec
