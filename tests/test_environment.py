"""Environment failures are not the builder's fault: they block with the cause, spend nothing.

Real parts: the real engine and gates running real commands, real gptme (no key) in a real
cell, the real CLI. A check that cannot run, or a cell that dies because no model is usable,
is recorded as `environment_failed`: no attempt spent, no rework, the exact cause and fix on
record and on screen; the pre-flight refuses before anything is recorded.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from gptme_factory.cells.spawn import SpawnOptions, spawn
from gptme_factory.cli import main
from gptme_factory.errors import EnvironmentNotReady, IllegalTransition
from gptme_factory.ledger.store import Ledger
from gptme_factory.line import engine
from gptme_factory.line.verify import verify_ledger
from tests import cells_helpers
from tests.cells_helpers import events, view, wait_for
from tests.flow_helpers import sample_artifact
from tests.ledger_helpers import commit_count
from tests.test_engine import build, report, scout_memo

PROBE = "factory-probe-tool"
cell_env = cells_helpers.cell_env


def _with_probe(ledger: Ledger) -> Path:
    """A directory holding a working PROBE, to put on PATH while the machine still has it."""
    bindir = ledger.repo.root.parent / "probe-bin"
    bindir.mkdir(exist_ok=True)
    tool = bindir / PROBE
    tool.write_text("#!/bin/sh\nexit 0\n")
    tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    return bindir


def built(ledger: Ledger, check: str) -> tuple[str, str]:
    """The sample artifact, built, waiting for its verify stage; its contract also runs `check`
    (tied to criterion 1). PROBE is on PATH while the contract is fixed and the patch built,
    and gone afterwards: the machine lost it."""
    aid = sample_artifact(ledger)
    old_path = os.environ["PATH"]
    os.environ["PATH"] = f"{_with_probe(ledger)}{os.pathsep}{old_path}"
    try:
        s = engine.start_stage(ledger, aid)
        memo = scout_memo(aid)
        memo["verification_plan"].append({"command": check, "proves": "the probe passes",
                                          "criteria": [1]})
        engine.submit(ledger, s.cell, memo)
        assert engine.advance(ledger, aid).passed
        b = engine.start_stage(ledger, aid)
        from gptme_factory.demo.sample import FIXED_SOURCE

        engine.submit(ledger, b.cell, build(ledger, b, FIXED_SOURCE))
        res = engine.advance(ledger, aid)
        assert res.passed, res.reasons
    finally:
        os.environ["PATH"] = old_path
    return aid, res.outcome.commit  # type: ignore[union-attr, return-value]


def to_verify(ledger: Ledger, check: str, code: int = 0) -> tuple[str, str]:
    """The sample artifact, built, with a verifier report submitted; its plan runs `check`."""
    aid, head = built(ledger, check)
    v = engine.start_stage(ledger, aid)
    rep = report(aid, head, 0, "pass" if code == 0 else "fail")
    rep["checks"].append({"command": check, "exit_code": code})
    engine.submit(ledger, v.cell, rep)
    return aid, v.cell


def test_a_check_that_cannot_run_blocks_without_spending_anything(
    ledger: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    aid, cell = to_verify(ledger, PROBE)
    attempts = dict(view(ledger, aid).attempts)
    res = engine.advance(ledger, aid)
    assert not res.passed
    v = view(ledger, aid)
    assert (v.state, v.stage.name if v.stage else None, v.status) == ("patched", "verify", "blocked")
    assert v.blocked_by == "environment_gate"
    assert f"{PROBE}: command not found" in v.blocked_reason and "fix:" in v.blocked_reason
    assert v.attempts == attempts  # no attempt spent
    [env] = events(ledger, aid, "environment_failed")
    assert (env.what, env.failure, env.command, env.cell) == ("check", "command_not_found",
                                                              PROBE, cell)
    assert events(ledger, aid, "rework") == [] and events(ledger, aid, "gate_failed") == []
    subject = ledger.repo.git("log", "-1", "--format=%s").decode()
    assert "verify blocked by the environment" in subject
    # the cause is on screen where people look
    shown = CliRunner().invoke(main, ["show", aid, "--repo", str(ledger.repo.root)])
    assert f"{PROBE}: command not found" in shown.output
    # a new cell is refused: the handoff stands and the gate is what waits
    with pytest.raises(IllegalTransition, match="advance"):
        engine.start_stage(ledger, aid)
    # fix the machine: the same handoff passes the gate on the next advance
    bindir = tmp_path / "bin"
    bindir.mkdir()
    tool = bindir / PROBE
    tool.write_text("#!/bin/sh\nexit 0\n")
    tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    again = engine.advance(ledger, aid)
    assert again.passed, again.reasons
    assert view(ledger, aid).state == "verified"
    assert verify_ledger(ledger) == []


def test_a_real_test_failure_is_still_the_builders(ledger: Ledger) -> None:
    aid, _ = to_verify(ledger, "python3 -c 'import sys; sys.exit(1)'", code=1)
    res = engine.advance(ledger, aid)
    assert not res.passed
    assert events(ledger, aid, "environment_failed") == []
    assert [r.to_stage for r in events(ledger, aid, "rework")] == ["build"]


@pytest.mark.parametrize("env_var", ["GPTME_MODEL", "none"])
def test_spawn_preflight_names_the_key_and_records_nothing(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch, env_var: str
) -> None:
    for key in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "OPENROUTER_API_KEY", "GPTME_MODEL"):
        monkeypatch.delenv(key, raising=False)
    if env_var == "GPTME_MODEL":
        monkeypatch.setenv("GPTME_MODEL", "anthropic/claude-sonnet-4-5")
    aid = sample_artifact(ledger)
    before = commit_count(ledger.repo.root)
    with pytest.raises(EnvironmentNotReady) as err:
        spawn(ledger, aid, SpawnOptions())
    assert "ANTHROPIC_API_KEY" in str(err.value) and "nothing was recorded" in str(err.value)
    assert "\n" not in str(err.value)
    assert commit_count(ledger.repo.root) == before
    assert view(ledger, aid).attempts == {}
    result = CliRunner().invoke(main, ["run", aid, "--repo", str(ledger.repo.root)])
    assert result.exit_code == 12
    assert result.stderr.count("\n") == 1 and "ANTHROPIC_API_KEY" in result.stderr
    assert commit_count(ledger.repo.root) == before


def test_verify_stage_preflight_catches_a_missing_check_program(ledger: Ledger) -> None:
    aid, _ = built(ledger, f"{PROBE} --check")
    before = commit_count(ledger.repo.root)
    with pytest.raises(EnvironmentNotReady, match=f"{PROBE} is not on PATH"):
        spawn(ledger, aid, SpawnOptions(model="mock/echo"))
    assert commit_count(ledger.repo.root) == before
    assert view(ledger, aid).status == "pending"


@pytest.mark.slow
def test_a_cell_that_dies_for_want_of_a_model_gives_its_attempt_back(
    ledger: Ledger, cell_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "OPENROUTER_API_KEY", "GPTME_MODEL"):
        monkeypatch.delenv(key, raising=False)
    aid = sample_artifact(ledger)
    # `env gptme` slips past the pre-flight (a harness the factory cannot vouch for): the real
    # gptme, with no model and no key, dies before doing anything
    rec = spawn(ledger, aid, SpawnOptions(backend="command", command="env gptme -n {prompt}"))
    from gptme_factory.cells.reaper import reap

    reaped = wait_for(lambda: reap(ledger, rec), timeout=90)
    assert reaped.outcome == "crashed" and "environment:" in reaped.reason
    v = view(ledger, aid)
    assert (v.status, v.blocked_by) == ("blocked", "environment")
    assert "No provider configured" in v.blocked_reason
    assert v.attempts == {}  # the attempt was given back
    [env] = events(ledger, aid, "environment_failed")
    assert env.what == "cell" and env.failure == "no_provider"
    assert events(ledger, aid, "attempts_exhausted") == []
    assert verify_ledger(ledger) == []
    # `start` (or `run`) tries again once the machine is fixed: no --force needed
    assert engine.start_stage(ledger, aid).attempt == 1
