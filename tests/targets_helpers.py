"""Real separate repositories for target tests: a brain, a project clone and its bare upstream.

The project is the demo's sample (demo/run.create_sample_target: `sample/durations.py` and its
unittest tests, pushed to a bare upstream). `build_on_target` acts as a builder cell: it gets
the real cell worktree (cells/worktrees.prepare) in the target's clone, commits the change
there and returns the patch handoff.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gptme_factory.cells import worktrees
from gptme_factory.demo.run import create_sample_target
from gptme_factory.demo.sample import CHECK_COMMAND, NEW_TEST, SAMPLE_DIR, write_sample_project
from gptme_factory.ledger.config import TargetConfig
from gptme_factory.ledger.store import Ledger
from gptme_factory.line import engine
from gptme_factory.targets import registry
from gptme_factory.targets.registry import Target
from tests.conftest import git
from tests.test_engine import report, scout_memo


def project(tmp_path: Path, name: str = "deploy-bot", branch: str = "main") -> tuple[Path, Path]:
    """The sample project's clone and its bare upstream (origin), on `branch`."""
    clone, upstream = tmp_path / name, tmp_path / "upstream" / f"{name}.git"
    create_sample_target(clone, upstream, branch)
    return clone, upstream


def local_project(tmp_path: Path, name: str = "local-lib", branch: str = "main") -> Path:
    """The sample project in a clone without any remote."""
    clone = tmp_path / name
    clone.mkdir()
    git(clone, "init", "-q", "-b", branch)
    paths = write_sample_project(clone)
    git(clone, "add", *paths)
    git(clone, "commit", "-q", "-m", "feat: parse durations")
    return clone


def register(ledger: Ledger, name: str, clone: Path, **fields: Any) -> Target:
    """Register `clone` as target `name` (origin if it has one, its current branch as base)."""
    has_origin = "origin" in git(clone, "remote").split()
    spec: dict[str, Any] = {
        "path": str(clone), "remote": "origin" if has_origin else None,
        "base": git(clone, "symbolic-ref", "--short", "HEAD").strip(),
        "checks": [CHECK_COMMAND], **fields}
    cfg = TargetConfig.model_validate({k: v for k, v in spec.items() if v is not None})
    return registry.add(ledger, name, cfg)


def push_upstream(upstream: Path, tmp_path: Path, branch: str, path: str, text: str) -> str:
    """Someone else pushes a commit to the upstream's `branch`; returns it."""
    other = tmp_path / f"other-{upstream.name}"
    if not other.exists():
        git(tmp_path, "clone", "-q", "-b", branch, str(upstream), str(other))
    git(other, "pull", "-q", "origin", branch)
    (other / path).parent.mkdir(parents=True, exist_ok=True)
    (other / path).write_text(text)
    git(other, "add", path)
    git(other, "commit", "-q", "-m", f"chore: {path}")
    git(other, "push", "-q", "origin", branch)
    return git(other, "rev-parse", "HEAD").strip()


def build_on_target(ledger: Ledger, started: engine.StartedStage, source: str, *,
                    base: str | None = None) -> dict[str, Any]:
    """Act as a builder cell in the target's real cell worktree; the patch handoff."""
    chain, view = engine.load(ledger, started.artifact)
    target = registry.of_intake(ledger, view.intake)
    wd = worktrees.prepare(target.repo, view, started.cell, False, base or started.base_commit)
    changed = [f"{SAMPLE_DIR}/durations.py", f"{SAMPLE_DIR}/test_durations.py"]
    (wd.path / SAMPLE_DIR / "durations.py").write_text(source)
    with open(wd.path / SAMPLE_DIR / "test_durations.py", "a") as fh:
        fh.write(NEW_TEST)
    git(wd.path, "add", *changed)
    git(wd.path, "commit", "-q", "-m", "fix: compound durations")
    head = git(wd.path, "rev-parse", "HEAD").strip()
    worktrees.discard(target.repo, wd.path)
    return {
        "kind": "builder_patch", "artifact": started.artifact, "status": "success",
        "branch": wd.branch, "base": base or started.base_commit, "head": head,
        "summary": "parse compound durations", "files_changed": changed,
        "tests_added": ["test_compound"],
        "claims": [{"criterion": 0, "claim": "compound parsing", "evidence": "test_compound"},
                   {"criterion": 1, "claim": "kept old tests", "evidence": "unittest"}],
    }


def full_report(aid: str, commit: str, commands: list[str], verdict: str = "pass") -> dict[str, Any]:
    """A verifier report covering every command with exit 0 (pass) or 1."""
    data = report(aid, commit, 0 if verdict == "pass" else 1, verdict)
    data["checks"] = [{"command": c, "exit_code": 0 if verdict == "pass" else 1}
                      for c in commands]
    return data


def through_build(ledger: Ledger, aid: str, source: str) -> str:
    """Scout and build (a real commit in the target) passed; returns the built commit."""
    s = engine.start_stage(ledger, aid)
    engine.submit(ledger, s.cell, scout_memo(aid))
    assert engine.advance(ledger, aid).passed
    engine.refresh_base(ledger, aid)
    b = engine.start_stage(ledger, aid)
    engine.submit(ledger, b.cell, build_on_target(ledger, b, source))
    res = engine.advance(ledger, aid)
    assert res.passed, res.reasons
    assert res.outcome is not None and res.outcome.commit
    return res.outcome.commit
