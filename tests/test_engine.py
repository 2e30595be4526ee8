"""End-to-end engine tests in real git repos with a sample project whose real pytest runs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from gptme_factory.demo.sample import (
    BROKEN_SOURCE,
    DEMAND,
    FIXED_SOURCE,
    NEW_TEST,
    SAMPLE_DIR,
    verification_plan,
    write_sample_project,
)
from gptme_factory.errors import HandoffRefused, IllegalTransition, InvalidRecord
from gptme_factory.ledger.store import Ledger, short_id
from gptme_factory.line import engine, transitions
from gptme_factory.line.intake import intake as new_intake
from gptme_factory.line.verify import verify_ledger
from tests.conftest import git


@pytest.fixture
def sample(ledger: Ledger) -> tuple[Ledger, str]:
    root = ledger.repo.root
    paths = write_sample_project(root)
    git(root, "add", *paths)
    git(root, "commit", "-q", "-m", "add sample project")
    intake = new_intake(ledger, **DEMAND)
    return ledger, intake.artifact


def scout_memo(aid: str, command: str | None = None) -> dict[str, Any]:
    """The sample's memo: its discriminating plan, or one `command` covering criterion 0."""
    plan = (verification_plan() if command is None else
            [{"command": command, "proves": "old and new behaviour", "criteria": [0]}])
    return {
        "kind": "scout_memo", "artifact": aid,
        "files": [{"path": f"{SAMPLE_DIR}/durations.py", "why": "parse_duration lives here"}],
        "approach": "parse (number, unit) pairs with a regex and sum them",
        "verification_plan": plan,
        "criteria": [{"criterion": 0, "plan": "new test_compound"},
                     {"criterion": 1, "plan": "existing tests"}],
    }


def build(ledger: Ledger, started: engine.StartedStage, source: str, *, add_test: bool = True,
          commit: bool = True) -> dict[str, Any]:
    """Act as a builder cell: worktree on a branch, change, commit; return the patch handoff."""
    root = ledger.repo.root
    wt = root.parent / f"wt-{started.cell}"
    branch = f"factory/{started.cell}"
    git(root, "worktree", "add", "-q", "-b", branch, str(wt), started.base_commit or "HEAD")
    changed = [f"{SAMPLE_DIR}/durations.py"]
    (wt / SAMPLE_DIR / "durations.py").write_text(source)
    if add_test:
        with open(wt / SAMPLE_DIR / "test_durations.py", "a") as fh:
            fh.write(NEW_TEST)
        changed.append(f"{SAMPLE_DIR}/test_durations.py")
    if commit:
        git(wt, "commit", "-qam", "fix: compound durations")
    head = git(wt, "rev-parse", "HEAD").strip()
    return {
        "kind": "builder_patch", "artifact": started.artifact, "status": "success",
        "branch": branch, "base": started.base_commit, "head": head,
        "summary": "parse compound durations", "files_changed": changed,
        "tests_added": ["test_compound"],
        "claims": [{"criterion": 0, "claim": "compound parsing", "evidence": "test_compound"},
                   {"criterion": 1, "claim": "kept old tests", "evidence": "pytest"}],
    }


def report(aid: str, commit: str, exit_code: int, verdict: str,
           command: str | None = None) -> dict[str, Any]:
    """A report of the sample's plan (or of one `command`), every check with `exit_code`."""
    commands = [c["command"] for c in verification_plan()] if command is None else [command]
    crit = "pass" if verdict == "pass" else "fail"
    return {
        "kind": "verifier_report", "artifact": aid, "commit": commit,
        "checks": [{"command": c, "exit_code": exit_code} for c in commands],
        "verdict": verdict, "failure_summary": "" if verdict == "pass" else "test_compound fails",
        "criteria": [{"criterion": 0, "verdict": crit, "evidence": "test_compound"},
                     {"criterion": 1, "verdict": "pass", "evidence": "old tests"}],
    }


def state(ledger: Ledger, aid: str) -> tuple[str, str | None, str]:
    _, view = engine.load(ledger, aid)
    return view.state, view.stage.name if view.stage else None, view.status


def clean(ledger: Ledger) -> None:
    assert [str(p) for p in verify_ledger(ledger)] == []


def through_scout(ledger: Ledger, aid: str) -> None:
    s = engine.start_stage(ledger, aid)
    engine.submit(ledger, s.cell, scout_memo(aid))
    assert engine.advance(ledger, aid).passed


def built_head(ledger: Ledger, aid: str, source: str) -> str:
    """Run a build stage that passes its patch gate; the commit to verify."""
    b = engine.start_stage(ledger, aid)
    engine.submit(ledger, b.cell, build(ledger, b, source))
    res = engine.advance(ledger, aid)
    assert res.passed and res.outcome is not None and res.outcome.commit, res.reasons
    return res.outcome.commit


def test_full_line_to_closed(sample: tuple[Ledger, str]) -> None:
    ledger, aid = sample
    through_scout(ledger, aid)
    assert state(ledger, aid) == ("designed", "build", "pending")
    b = engine.start_stage(ledger, aid)
    engine.submit(ledger, b.cell, build(ledger, b, FIXED_SOURCE))
    res = engine.advance(ledger, aid)
    assert res.passed, res.reasons
    assert state(ledger, aid)[0] == "patched"
    v = engine.start_stage(ledger, aid)
    head = res.outcome.commit
    engine.submit(ledger, v.cell, report(aid, head, 0, "pass"))
    res = engine.advance(ledger, aid)
    assert res.passed, res.reasons
    assert res.outcome.checks[0].exit_code == 0
    assert state(ledger, aid)[0] == "verified"
    p = engine.start_stage(ledger, aid)
    engine.submit(ledger, p.cell, {
        "kind": "release_package", "artifact": aid, "change_type": "feature",
        "version_bump": "minor", "changelog_entry": "parse_duration accepts 2m30s",
        "release_notes": "## Compound durations", "pr_title": "feat: compound durations",
        "pr_description": "Fixes #17", "announcement": "Durations like 2m30s now work."})
    with pytest.raises(IllegalTransition, match="not published yet"):
        engine.advance(ledger, aid)
    engine.record_published(ledger, aid, target="note", where="releases/compound.md")
    assert engine.advance(ledger, aid).passed
    m = engine.start_stage(ledger, aid)
    engine.submit(ledger, m.cell, {
        "kind": "outcome_report", "artifact": aid,
        "adoption": [{"consumer": "deploy-bot maintainers", "status": "used", "evidence": "PR merged"},
                     {"consumer": "erik", "status": "unknown", "evidence": "not asked yet"}],
        "terminal": "the demand is met; nothing follows"})
    assert engine.advance(ledger, aid).passed
    assert state(ledger, aid) == ("measured", None, "done")
    with pytest.raises(Exception, match="done is not a handoff"):
        engine.close(ledger, aid)
    engine.close(ledger, aid, terminal="demand met")
    assert state(ledger, aid)[0] == "closed"
    clean(ledger)
    subjects = git(ledger.repo.root, "log", "--format=%s").splitlines()
    assert subjects[0] == f"factory({short_id(aid)}): closed: terminal"
    assert f"factory({short_id(aid)}): verify passed -> verified" in subjects
    assert all(len(s) <= 72 for s in subjects)


def test_failing_tests_rework_then_pass(sample: tuple[Ledger, str]) -> None:
    ledger, aid = sample
    through_scout(ledger, aid)
    head = built_head(ledger, aid, BROKEN_SOURCE)
    v = engine.start_stage(ledger, aid)
    engine.submit(ledger, v.cell, report(aid, head, 1, "fail"))
    res = engine.advance(ledger, aid)
    assert not res.passed
    assert state(ledger, aid) == ("designed", "build", "pending")
    b2 = engine.start_stage(ledger, aid)
    assert b2.attempt == 2 and "test_compound" in b2.retry_note
    assert "assert" in b2.retry_note or "failed" in b2.retry_note
    engine.submit(ledger, b2.cell, build(ledger, b2, FIXED_SOURCE))
    head = engine.advance(ledger, aid).outcome.commit
    v2 = engine.start_stage(ledger, aid)
    engine.submit(ledger, v2.cell, report(aid, head, 0, "pass"))
    assert engine.advance(ledger, aid).passed
    _, view = engine.load(ledger, aid)
    assert view.state == "verified" and not view.first_pass
    clean(ledger)


def test_success_with_no_diff_is_rejected(sample: tuple[Ledger, str]) -> None:
    ledger, aid = sample
    through_scout(ledger, aid)
    b = engine.start_stage(ledger, aid)
    patch = build(ledger, b, FIXED_SOURCE, commit=False)  # claims success, commits nothing
    engine.submit(ledger, b.cell, patch)
    res = engine.advance(ledger, aid)
    assert not res.passed
    assert any("no diff" in r for r in res.reasons)
    assert state(ledger, aid) == ("designed", "build", "pending")
    clean(ledger)


def test_claimed_files_must_match_diff(sample: tuple[Ledger, str]) -> None:
    ledger, aid = sample
    through_scout(ledger, aid)
    b = engine.start_stage(ledger, aid)
    patch = build(ledger, b, FIXED_SOURCE)
    patch["files_changed"] = [f"{SAMPLE_DIR}/durations.py", "README.md"]
    engine.submit(ledger, b.cell, patch)
    res = engine.advance(ledger, aid)
    assert not res.passed
    assert any("claimed but not changed: README.md" in r for r in res.reasons)
    assert any("changed but not claimed" in r for r in res.reasons)


def test_verifier_with_only_presence_evidence_is_rejected(sample: tuple[Ledger, str]) -> None:
    ledger, aid = sample
    through_scout(ledger, aid)
    head = built_head(ledger, aid, FIXED_SOURCE)
    v = engine.start_stage(ledger, aid)
    lazy = report(aid, head, 0, "pass", command=f"test -f {SAMPLE_DIR}/durations.py")
    engine.submit(ledger, v.cell, lazy)
    res = engine.advance(ledger, aid)
    assert not res.passed
    assert any("does not include the planned check" in r for r in res.reasons)
    assert state(ledger, aid) == ("patched", "verify", "pending")  # retry verify, not rework
    clean(ledger)


def test_verifier_claiming_pass_over_failing_tests_is_rejected(sample: tuple[Ledger, str]) -> None:
    ledger, aid = sample
    through_scout(ledger, aid)
    head = built_head(ledger, aid, BROKEN_SOURCE)
    v = engine.start_stage(ledger, aid)
    engine.submit(ledger, v.cell, report(aid, head, 0, "pass"))
    res = engine.advance(ledger, aid)
    assert not res.passed
    assert any("claims" in r and "observed" in r for r in res.reasons)


def test_a_check_slower_than_its_limit_is_refused_with_the_limit(
        ledger: Ledger, sample: tuple[Ledger, str]) -> None:
    ledger, aid = sample
    stage = ledger.config.stage("default", "verify")
    object.__setattr__(stage, "check_timeout_s", 1.0)
    s = engine.start_stage(ledger, aid)
    memo = scout_memo(aid)
    memo["verification_plan"].append({"command": "sleep 30", "proves": "slow", "criteria": [1]})
    engine.submit(ledger, s.cell, memo)
    res = engine.advance(ledger, aid)
    assert not res.passed and res.outcome is not None
    [reason] = res.reasons
    assert reason.startswith("`sleep 30` did not finish within its time limit of 1 s at base ")
    assert "raise lines.default.stages.2.check_timeout_s (stage verify)" in reason
    slow = next(c for c in res.outcome.checks if c.command == "sleep 30")
    assert slow.timed_out and slow.exit_code is None and slow.duration_s < 10
    assert res.outcome.evidence is not None
    assert [r.verdict for r in res.outcome.evidence.rows] == ["fails", "passes", "timed-out"]
    assert transitions.load(ledger, aid)[1].contract is None  # nothing was fixed
    clean(ledger)


def test_handoff_for_other_artifact_or_role_is_refused_and_unrecorded(
    sample: tuple[Ledger, str],
) -> None:
    ledger, aid = sample
    other = new_intake(ledger, title="Other", demand="me", consumers=["me"], acceptance=["x"]).artifact
    s = engine.start_stage(ledger, aid)
    head = git(ledger.repo.root, "rev-parse", "HEAD")
    with pytest.raises(HandoffRefused, match="names artifact"):
        engine.submit(ledger, s.cell, scout_memo(other))
    with pytest.raises(HandoffRefused, match="must hand over a scout_memo"):
        engine.submit(ledger, s.cell, {"kind": "builder_patch", "artifact": aid})
    with pytest.raises(HandoffRefused, match="never issued"):
        engine.submit(ledger, f"{aid}.scout.ffff", scout_memo(aid))
    with pytest.raises(HandoffRefused, match="current stage"):
        engine.submit(ledger, f"{aid}.build.ffff", scout_memo(aid))
    assert git(ledger.repo.root, "rev-parse", "HEAD") == head
    engine.submit(ledger, s.cell, scout_memo(aid))
    with pytest.raises(HandoffRefused):
        engine.submit(ledger, s.cell, scout_memo(aid))  # finished stage
    clean(ledger)


def test_invalid_handoffs_spend_repair_budget_then_violation(sample: tuple[Ledger, str]) -> None:
    ledger, aid = sample
    s = engine.start_stage(ledger, aid)
    head = git(ledger.repo.root, "rev-parse", "HEAD")
    bad = scout_memo(aid)
    del bad["approach"]
    bad["colour"] = "blue"
    with pytest.raises(InvalidRecord) as err:
        engine.submit(ledger, s.cell, bad)
    assert "approach: required field is missing" in str(err.value)
    assert "colour: unknown field" in str(err.value)
    assert git(ledger.repo.root, "rev-parse", "HEAD") == head  # nothing committed yet
    with pytest.raises(InvalidRecord):
        engine.submit(ledger, s.cell, "not: [valid")
    with pytest.raises(InvalidRecord, match="contract_violation was recorded"):
        engine.submit(ledger, s.cell, {**scout_memo(aid), "criteria": []})
    _, view = engine.load(ledger, aid)
    assert view.status == "blocked" and "contract violation" in view.blocked_reason
    assert view.last_kind == "contract_violation"
    clean(ledger)


def test_package_cannot_start_before_verify(sample: tuple[Ledger, str]) -> None:
    ledger, aid = sample
    through_scout(ledger, aid)
    with pytest.raises(HandoffRefused, match="current stage"):
        engine.submit(ledger, f"{aid}.package.abcd", {"kind": "release_package"})


def test_attempt_budget_exhausted(sample: tuple[Ledger, str]) -> None:
    ledger, aid = sample
    for _ in range(3):
        s = engine.start_stage(ledger, aid)
        engine.record_cell_finished(ledger, s.cell, outcome="no_handoff", wall_s=1.0,
                                    reason="exited without a handoff")
    _, view = engine.load(ledger, aid)
    assert view.status == "blocked" and view.last_kind == "attempts_exhausted"
    with pytest.raises(IllegalTransition, match="blocked"):
        engine.start_stage(ledger, aid)
    assert engine.start_stage(ledger, aid, force=True).attempt == 4
    clean(ledger)


def test_close_requires_finished_line(sample: tuple[Ledger, str], tmp_path: Path) -> None:
    ledger, aid = sample
    with pytest.raises(IllegalTransition, match="after the line's last stage"):
        engine.close(ledger, aid, terminal="x")
    engine.finish(ledger, aid, "abandoned", "demand went away")
    with pytest.raises(IllegalTransition, match="abandoned"):
        engine.start_stage(ledger, aid)
    clean(ledger)


def test_gate_worktrees_left_by_a_killed_advance_are_swept(sample: tuple[Ledger, str]) -> None:
    import subprocess
    import sys

    from gptme_factory.line.gates import _sweep_gate_worktrees

    ledger, _ = sample
    repo = ledger.repo
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    base = repo.worktree_base()
    base.mkdir(parents=True, exist_ok=True)
    stale = base / f"verify-x.verify.ab12-{dead.pid}-beef0001"
    live = base / f"verify-x.verify.ab12-{os.getpid()}-beef0002"
    head = repo.head()
    assert head
    repo.worktree_add(stale, head)
    repo.worktree_add(live, head)
    _sweep_gate_worktrees(repo)
    assert not stale.exists()
    assert live.exists()  # this process is alive: its gate may be running
    assert str(stale) not in git(repo.root, "worktree", "list")
    repo.worktree_remove(live)
