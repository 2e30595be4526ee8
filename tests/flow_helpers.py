"""Drive the sample project's artifact through the real engine up to a given stage.

Reuses the scripted cells of tests/test_engine.py (a real builder commit on a branch, the
real pytest run by the verify gate) so packaging and measurement tests start from a ledger
made exactly the way a factory run makes it.
"""

from __future__ import annotations

from typing import Any

from gptme_factory.demo.sample import DEMAND, FIXED_SOURCE, write_sample_project
from gptme_factory.ledger.store import Ledger
from gptme_factory.line import engine
from gptme_factory.line.intake import intake as new_intake
from tests.conftest import git
from tests.test_engine import build, report, scout_memo

RELEASE_PACKAGE: dict[str, Any] = {
    "kind": "release_package", "change_type": "feature", "version_bump": "minor",
    "changelog_entry": "`parse_duration` accepts compound durations such as `2m30s`.",
    "release_notes": "## Compound durations\n\n`--timeout 2m30s` now works.",
    "pr_title": "feat: compound durations",
    "pr_description": "Accept compound durations in `parse_duration`.",
    "announcement": "The deploy bot now understands timeouts like 2m30s.",
}


def sample_artifact(ledger: Ledger, **overrides: Any) -> str:
    """Commit the sample project (once) and intake its demand; returns the artifact id."""
    root = ledger.repo.root
    if not (root / "sample").exists():
        paths = write_sample_project(root)
        git(root, "add", *paths)
        git(root, "commit", "-q", "-m", "add sample project")
    return new_intake(ledger, **{**DEMAND, **overrides}).artifact


def to_package(ledger: Ledger, aid: str) -> str:
    """Scout, build (a real commit), verify (real pytest) and submit the release package.

    Returns the verified commit.
    """
    s = engine.start_stage(ledger, aid)
    engine.submit(ledger, s.cell, scout_memo(aid))
    assert engine.advance(ledger, aid).passed
    b = engine.start_stage(ledger, aid)
    engine.submit(ledger, b.cell, build(ledger, b, FIXED_SOURCE))
    res = engine.advance(ledger, aid)
    assert res.passed, res.reasons
    head = res.outcome.commit
    v = engine.start_stage(ledger, aid)
    engine.submit(ledger, v.cell, report(aid, head, 0, "pass"))
    assert engine.advance(ledger, aid).passed
    p = engine.start_stage(ledger, aid)
    engine.submit(ledger, p.cell, {**RELEASE_PACKAGE, "artifact": aid})
    return head  # type: ignore[return-value]


def add_origin(ledger: Ledger, bare: Any, fetch_url: str | None = None) -> None:
    """A real bare repo as `origin` (pushes land there); optionally a GitHub fetch URL."""
    git(ledger.repo.root, "init", "-q", "--bare", str(bare))
    git(ledger.repo.root, "remote", "add", "origin", fetch_url or str(bare))
    if fetch_url:
        git(ledger.repo.root, "remote", "set-url", "--push", "origin", str(bare))
