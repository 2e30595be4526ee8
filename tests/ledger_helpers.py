"""Helpers for the ledger-core tests: legal events without the engine, git snapshots.

Events are recorded through the real `Ledger.record` under the real writer lock; the payloads
follow the default line's state machine (replay.py) so `verify` stays clean.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gptme_factory.ledger.kinds import ArtifactChain, StoredEvent
from gptme_factory.ledger.records import ARTIFACT_EVENTS, Abandoned, ArtifactEvent
from gptme_factory.ledger.store import Ledger
from gptme_factory.line.intake import intake as new_intake
from gptme_factory.line.replay import replay

DEMAND: dict[str, Any] = {
    "demand": "gh:acme/app#42",
    "consumers": ["erik"],
    "acceptance": ["login succeeds under 2 s"],
}


def new_artifact(ledger: Ledger, title: str = "Fix login timeout") -> str:
    """Intake one artifact and return its id."""
    return new_intake(ledger, title=title, **DEMAND).artifact


def event(payload: dict[str, Any]) -> ArtifactEvent:
    """A payload given as plain data, validated (what the engine builds as a model)."""
    return ARTIFACT_EVENTS.validate_python(payload)


def next_payload(ledger: Ledger, chain: ArtifactChain) -> ArtifactEvent:
    """A legal next event: alternate scout attempts (stage_started / cell_finished crashed)."""
    assert chain.root is not None
    line = ledger.config.line(chain.root.record.line)
    view = replay(chain.root.record, line, chain.events)
    if view.status == "running":
        return event({"kind": "cell_finished", "cell": view.cell, "outcome": "crashed",
                      "wall_s": 1.0})
    attempt = view.attempts.get("scout", 0) + 1
    return event({
        "kind": "stage_started", "stage": "scout", "role": "scout",
        "cell": f"{chain.id}.scout.{attempt:04x}", "attempt": attempt,
    })


def append_next(ledger: Ledger, aid: str, **kw: Any) -> StoredEvent:
    """Record one legal event on `aid` (read under the lock, as the API requires)."""
    with ledger.locked():
        chain = ledger.read(aid)
        return ledger.record(chain, next_payload(ledger, chain), **kw)


def abandon(ledger: Ledger, aid: str, reason: str) -> StoredEvent:
    """Record an `abandoned` event (legal in any non-final state)."""
    with ledger.locked():
        chain = ledger.read(aid)
        return ledger.record(chain, Abandoned(reason=reason))


def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every artifact `Ledger.read` reads (the real method still does the reading)."""
    seen: list[str] = []
    real = Ledger.read

    def recording(self: Ledger, artifact: str, **kw: Any) -> Any:
        seen.append(artifact)
        return real(self, artifact, **kw)

    monkeypatch.setattr(Ledger, "read", recording)
    return seen


def listings(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Record every listing of artifact folders made (layout.scan), by the places it read
    (sorted; None: every place). The real scan still does the listing."""
    from gptme_factory.ledger import layout

    asked: list[Any] = []
    real = layout.scan

    def recording(base: Any, only: Any = None) -> Any:
        asked.append(None if only is None else sorted(only))
        return real(base, only)

    monkeypatch.setattr(layout, "scan", recording)
    return asked


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
