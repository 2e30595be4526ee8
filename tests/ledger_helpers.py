"""Helpers for the ledger-core tests: legal events without the engine, git snapshots.

Events are appended through the real `Ledger.append` under the real writer lock; the payloads
follow the default line's state machine (replay.py) so `verify` stays clean.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from gptme_factory.ledger.store import Chain, Ledger, StoredRecord
from gptme_factory.line.replay import replay

DEMAND: dict[str, Any] = {
    "demand": "gh:acme/app#42",
    "consumers": ["erik"],
    "acceptance": ["login succeeds under 2 s"],
}


def new_artifact(ledger: Ledger, title: str = "Fix login timeout") -> str:
    """Intake one artifact and return its id."""
    return ledger.create(title=title, **DEMAND).artifact


def next_payload(ledger: Ledger, chain: Chain) -> dict[str, Any]:
    """A legal next event: alternate scout attempts (stage_started / cell_finished crashed)."""
    line = ledger.config.line(chain.intake.record.line)  # type: ignore[union-attr]
    view = replay(chain.intake.record, line, chain.models())  # type: ignore[arg-type]
    if view.status == "running":
        return {"kind": "cell_finished", "cell": view.cell, "outcome": "crashed", "wall_s": 1.0}
    attempt = view.attempts.get("scout", 0) + 1
    return {
        "kind": "stage_started", "stage": "scout", "role": "scout",
        "cell": f"{chain.artifact}.scout.{attempt:04x}", "attempt": attempt,
    }


def append_next(ledger: Ledger, aid: str, **kw: Any) -> StoredRecord:
    """Append one legal event to `aid` (read under the lock, as the API requires)."""
    with ledger.locked():
        chain = ledger.read(aid)
        return ledger.append(chain, next_payload(ledger, chain), **kw)


def abandon(ledger: Ledger, aid: str, reason: str) -> StoredRecord:
    """Append an `abandoned` event (legal in any non-final state)."""
    with ledger.locked():
        chain = ledger.read(aid)
        return ledger.append(chain, {"kind": "abandoned", "reason": reason})


def run(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run git, not raising: for commands whose failure is part of the test."""
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True)


def git_state(repo: Path) -> dict[str, str]:
    """Everything about the user's work a ledger write must leave alone."""
    out = {}
    for name, args in {
        "status": ("status", "--porcelain=v1", "--untracked-files=all"),
        "diff": ("diff",),
        "cached": ("diff", "--cached"),
    }.items():
        out[name] = run(repo, *args).stdout
    return out


def commit_count(repo: Path) -> int:
    proc = run(repo, "rev-list", "--count", "HEAD")
    return int(proc.stdout) if proc.returncode == 0 else 0


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real `gptme-factory` CLI in a subprocess (Python start-up included)."""
    return subprocess.run(
        [sys.executable, "-m", "gptme_factory", *args], cwd=cwd, capture_output=True, text=True
    )
