"""Cells end to end: real gptodo, real tmux and the real `gptme` CLI on the offline mock/echo model.

Each cell is a scripted gptme agent (scripted.py): its prompt carries a shell block that the
echoing model hands back and gptme's shell tool runs in the cell's worktree — writing code,
committing, reporting progress and submitting handoffs through the factory CLI.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gptme_factory.cells import spawn as cells
from gptme_factory.cells.brief import BriefContext
from gptme_factory.cells.spawn import SpawnOptions
from gptme_factory.demo import scripted
from gptme_factory.demo.scripted import run_scripted
from gptme_factory.errors import CellError
from gptme_factory.ledger.store import Ledger
from gptme_factory.ledger.stream import sha256
from gptme_factory.line import engine
from gptme_factory.line.intake import intake as new_intake
from gptme_factory.line.verify import verify_ledger
from tests import cells_helpers
from tests.cells_helpers import (
    events,
    no_cells_left,
    set_config,
    set_stage,
    tmux_sessions,
    view,
    wait_for,
)
from tests.conftest import git

pytestmark = pytest.mark.slow
cell_env = cells_helpers.cell_env
sample = cells_helpers.sample
ECHO = scripted.SCRIPTED_MODEL


def clean(ledger: Ledger) -> None:
    assert [str(p) for p in verify_ledger(ledger)] == []


def scripted_opts(script: cells.ScriptFn, **kw: object) -> SpawnOptions:
    return SpawnOptions(model=ECHO, script=script, **kw)


def reap_all(ledger: Ledger, aid: str, timeout: float = 60) -> list[cells.Reaped]:
    out: list[cells.Reaped] = []

    def done() -> bool:
        out.extend(cells.collect(ledger, [aid])[0])
        return not [r for r in cells.live(ledger) if r.artifact == aid]

    wait_for(done, timeout)
    return out


def test_full_line_scout_build_verify(sample: tuple[Ledger, str]) -> None:
    ledger, aid = sample
    said: list[str] = []
    t0 = time.monotonic()
    stopped = run_scripted(ledger, aid, until="verify", on_event=said.append)
    elapsed = time.monotonic() - t0
    assert [s.kind for s in stopped] == ["done"], said
    v = view(ledger, aid)
    assert (v.state, v.stage.name if v.stage else None) == ("verified", "package")
    finished = events(ledger, aid, "cell_finished")
    assert [f.outcome for f in finished] == ["handoff"] * 3
    assert all(f.exit_code == 0 and f.tokens_in and f.conversation for f in finished)
    assert all("estimated" in f.reason for f in finished)  # mock/echo reports no usage
    assert finished[1].last_progress == "committed the change and test_compound"
    # Each brief is committed with its cell_spawned event, digest and all.
    for ev in events(ledger, aid, "cell_spawned"):
        raw = (ledger.repo.root / ev.brief).read_bytes()
        assert sha256(raw) == ev.brief_digest
        assert ev.cell in raw.decode() and "JSON Schema" in raw.decode()
        assert ev.backend == "gptodo" and ev.session and ev.session.startswith("agent_")
        subject = git(ledger.repo.root, "log", "-1", "--format=%s", "--", ev.brief).strip()
        assert f"{ev.brief.rsplit('.', 3)[-3]} started" in subject  # the start and its spawn
    # The builder's work is on its own branch; every worktree is gone; the brain is untouched:
    # cells are not the user's tasks, so no task file is written for them.
    build = events(ledger, aid, "gate_passed")[1]
    branch = f"factory/{events(ledger, aid, 'cell_spawned')[1].cell}"
    assert git(ledger.repo.root, "rev-parse", branch).strip() == build.commit
    assert git(ledger.repo.root, "worktree", "list").count("\n") == 1
    status = git(ledger.repo.root, "status", "--porcelain", "--untracked-files=all").split("\n")
    assert [ln for ln in status if ln] == []
    assert not (ledger.repo.root / "tasks").exists()
    # gptodo still keeps its session records for the cells, all completed.
    sessions = list((ledger.repo.root / "state" / "sessions").glob("agent_*.json"))
    assert sorted(json.loads(p.read_text())["status"] for p in sessions) == ["completed"] * 3
    no_cells_left(ledger)
    clean(ledger)
    print(f"\nscout->build->verify: {elapsed:.1f} s for 3 cells and 3 gates")


def test_the_bugfix_line_reproduces_then_fixes_with_scripted_cells(
        ledger: Ledger, cell_env: Path) -> None:
    from gptme_factory.demo.sample import DEMAND, REPRO_TEST_COMMAND, SAMPLE_DIR

    scripted.prepare_sample(ledger)  # the sample project in the brain (its own intake aside)
    ledger, _ = Ledger.init(ledger.repo.root, lines=["bugfix"])
    aid = new_intake(ledger, **{**DEMAND, "title": "Compound timeouts raise ValueError"},
                     line="bugfix").artifact
    said: list[str] = []
    stopped = run_scripted(ledger, aid, "bugfix", until="verify", on_event=said.append)
    assert [s.kind for s in stopped] == ["done"], said
    v = view(ledger, aid)
    assert (v.state, v.stage.name if v.stage else None) == ("verified", "package")
    assert [f.outcome for f in events(ledger, aid, "cell_finished")] == ["handoff"] * 4
    [fixed] = events(ledger, aid, "contract_fixed")
    assert [c.command for c in fixed.checks if c.criteria == [0]] == [REPRO_TEST_COMMAND]
    scout_, repro, build, verify = events(ledger, aid, "gate_passed")
    assert [g.stage for g in (scout_, repro, build, verify)] == [
        "scout", "reproduce", "build", "verify"]
    # the reproduction is a commit of the test alone; the fix is built on top of it
    root = ledger.repo.root
    assert git(root, "diff", "--name-only", f"{repro.commit}^", repro.commit).split() == [
        f"{SAMPLE_DIR}/test_reported.py"]
    assert git(root, "rev-parse", f"{build.commit}^").strip() == repro.commit
    assert any("reproduces: " in n and "invalid literal for int()" in n for n in repro.notes)
    rows = {r.command: r.verdict for r in verify.evidence.rows}
    assert rows[REPRO_TEST_COMMAND] == "fail-to-pass"
    assert verify.evidence.base_commit == repro.commit
    no_cells_left(ledger)
    clean(ledger)


def test_builder_fails_tests_rework_then_pass(sample: tuple[Ledger, str]) -> None:
    ledger, aid = sample
    said: list[str] = []
    stopped = run_scripted(ledger, aid, "sample-rework", until="verify",
                               on_event=said.append)
    assert [s.kind for s in stopped] == ["done"], said
    v = view(ledger, aid)
    assert v.state == "verified" and v.attempts["build"] == 2 and not v.first_pass
    failed = events(ledger, aid, "gate_failed")
    assert len(failed) == 1 and failed[0].stage == "verify"
    assert "test_compound" in failed[0].failure_summary  # the factory's own pytest run
    rework = events(ledger, aid, "rework")
    assert rework[0].to_stage == "build"
    starts = [e for e in events(ledger, aid, "stage_started") if e.stage == "build"]
    assert starts[1].attempt == 2 and "test_compound" in starts[1].retry_note
    # The second builder's brief carries the retry note.
    brief = (ledger.repo.root / events(ledger, aid, "cell_spawned")[3].brief).read_text()
    assert "Why the previous attempt failed" in brief and "test_compound" in brief
    assert [f.outcome for f in events(ledger, aid, "cell_finished")] == ["handoff"] * 5
    no_cells_left(ledger)
    clean(ledger)


def _sleeper(ctx: BriefContext) -> str:
    return scripted.as_prompt(ctx, "\n".join([
        scripted.progress(ctx, "thinking very hard"),
        "timeout 120 sleep 120",
    ]))


def test_cell_that_never_submits_is_killed_at_its_deadline(sample: tuple[Ledger, str]) -> None:
    ledger, aid = sample
    rec = cells.spawn(ledger, aid, scripted_opts(_sleeper, timeout_s=6))
    wait_for(lambda: cells.observation(ledger, rec).latest == "thinking very hard", 30)
    obs = cells.observation(ledger, rec)
    assert obs.alive and obs.latest_source == "progress" and obs.time_left_s < 6
    assert tmux_sessions() == [f"gptodo_{rec.session}"]
    reaped = reap_all(ledger, aid, 40)
    assert [r.outcome for r in reaped] == ["timed_out"]
    fin = events(ledger, aid, "cell_finished")[0]
    assert fin.outcome == "timed_out" and "wall-clock budget" in fin.reason
    assert 6 <= fin.wall_s < 20 and fin.last_progress == "thinking very hard"
    v = view(ledger, aid)
    assert v.status == "pending" and v.attempts["scout"] == 1  # the attempt is spent
    assert "timed_out" in v.retry_note
    no_cells_left(ledger)  # the sleep inside gptme's shell is gone too
    clean(ledger)


def _invalid_twice(ctx: BriefContext) -> str:
    bad = scripted.scout_memo(ctx)
    del bad["approach"]
    worse = {**scripted.scout_memo(ctx), "colour": "blue"}
    return scripted.as_prompt(ctx, "\n".join([
        scripted.submit(ctx, bad, name="bad1", check=False),
        scripted.submit(ctx, worse, name="bad2", check=False),
    ]))


def test_invalid_handoff_twice_is_a_recorded_violation(sample: tuple[Ledger, str]) -> None:
    ledger, aid = sample
    ledger = set_stage(ledger, "scout", repairs=1)
    cells.spawn(ledger, aid, scripted_opts(_invalid_twice))
    reaped = reap_all(ledger, aid)
    assert [r.outcome for r in reaped] == ["no_handoff"]
    violation = events(ledger, aid, "contract_violation")
    assert len(violation) == 1 and violation[0].attempts == 2
    assert any("colour: unknown field" in e for e in violation[0].errors)
    fin = events(ledger, aid, "cell_finished")[0]
    assert "invalid past the repair budget" in fin.reason
    assert "approach: required field is missing" in fin.output_tail  # the cell saw the errors
    v = view(ledger, aid)
    assert v.status == "blocked" and "contract violation" in v.blocked_reason
    assert events(ledger, aid, "handoff_submitted") == []
    no_cells_left(ledger)
    clean(ledger)


def _slow_scout(ctx: BriefContext) -> str:
    return scripted.as_prompt(ctx, "\n".join([
        scripted.progress(ctx, "reading slowly"), "sleep 4",
        scripted.submit(ctx, scripted.scout_memo(ctx)),
    ]))


def test_two_read_only_cells_in_parallel_and_the_cap(sample: tuple[Ledger, str]) -> None:
    ledger, a = sample
    ledger = set_config(ledger, max_concurrent_cells=2)
    b = new_intake(ledger, title="Another sample demand", demand="gh:acme/deploy-bot#18",
                      consumers=["erik"], acceptance=["x", "y"]).artifact
    c = new_intake(ledger, title="A third", demand="me", consumers=["me"], acceptance=["z"]).artifact
    head = git(ledger.repo.root, "rev-parse", "HEAD")
    ra = cells.spawn(ledger, a, scripted_opts(_slow_scout))
    rb = cells.spawn(ledger, b, scripted_opts(_slow_scout))
    with pytest.raises(CellError, match="max_concurrent_cells is 2"):
        cells.spawn(ledger, c, scripted_opts(_slow_scout))
    assert view(ledger, c).status == "pending"  # refused before the stage started
    assert ra.workdir != rb.workdir and ra.read_only and rb.read_only
    # Both run at once; `status --json` and `status` show them with their latest notes.
    out = wait_for(lambda: _both_noted(ledger), 30)
    cells_json = {c["cell"]: c for c in out["cells"]}
    assert set(cells_json) == {ra.cell, rb.cell}
    assert all(c["alive"] and c["role"] == "scout" and c["backend"] == "gptodo"
               and not c["stalled"] for c in cells_json.values())
    text = subprocess.run([sys.executable, "-m", "gptme_factory", "status", "--repo",
                           str(ledger.repo.root)], capture_output=True, text=True, check=True)
    assert "cells (2 running, max 2)" in text.stdout
    assert sum(ln.rstrip().endswith("reading slowly") for ln in text.stdout.splitlines()) == 2
    reap_all(ledger, a)
    reap_all(ledger, b)
    for aid in (a, b):
        fin = events(ledger, aid, "cell_finished")[0]
        assert fin.outcome == "handoff"
        assert view(ledger, aid).state == "designed"
    spans = [events(ledger, x, "cell_finished")[0] for x in (a, b)]
    assert all(s.wall_s >= 4 for s in spans)
    # Read-only cells never touched the brain: HEAD moved only by ledger commits.
    changed = git(ledger.repo.root, "diff", "--name-only", head.strip(), "HEAD").split()
    assert all(p.startswith("factory/") for p in changed)
    no_cells_left(ledger)
    clean(ledger)


def _both_noted(ledger: Ledger) -> dict[str, object] | None:
    proc = subprocess.run([sys.executable, "-m", "gptme_factory", "status", "--json", "--repo",
                           str(ledger.repo.root)], capture_output=True, text=True, check=True)
    data = json.loads(proc.stdout)
    notes = [c["latest"] for c in data["cells"] if c["alive"]]
    return data if notes == ["reading slowly"] * 2 else None


def test_run_interrupted_and_resumed(sample: tuple[Ledger, str]) -> None:
    ledger, aid = sample
    root = str(ledger.repo.root)
    cmd = [sys.executable, "-m", "gptme_factory", "run", aid, "--until", "verify",
           "--scripted", "sample", "--poll", "0.3", "--repo", root]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: [e for e in events(ledger, aid, "cell_spawned")
                          if e.cell.split(".")[1] == "build"], 60, 0.1)
        first.send_signal(signal.SIGINT)
        out, err = first.communicate(timeout=30)
    finally:
        first.kill()
    assert first.returncode == 130, (out, err)
    assert "interrupted" in err and "spawned" in out
    v = view(ledger, aid)
    assert v.stage is not None and v.stage.name == "build"  # stopped mid-line
    # The build cell was left alone: it finishes its work without a foreman.
    build = [e for e in events(ledger, aid, "cell_spawned") if ".build." in e.cell][0]
    assert not [f for f in events(ledger, aid, "cell_finished") if f.cell == build.cell]
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, (second.stdout, second.stderr)
    v = view(ledger, aid)
    assert v.state == "verified" and v.attempts == {"scout": 1, "build": 1, "verify": 1}
    outcomes = {f.cell: f.outcome for f in events(ledger, aid, "cell_finished")}
    assert outcomes[build.cell] == "handoff" and len(outcomes) == 3
    no_cells_left(ledger)
    clean(ledger)


def test_over_token_budget_is_stopped(sample: tuple[Ledger, str]) -> None:
    ledger, aid = sample
    cells.spawn(ledger, aid, scripted_opts(_sleeper, max_tokens=500))
    reaped = reap_all(ledger, aid, 40)
    assert [r.outcome for r in reaped] == ["over_budget"]
    fin = events(ledger, aid, "cell_finished")[0]
    assert "over its budget of 500" in fin.reason and fin.tokens_in and fin.tokens_in > 500
    no_cells_left(ledger)


def test_kill_a_running_cell(sample: tuple[Ledger, str]) -> None:
    ledger, aid = sample
    rec = cells.spawn(ledger, aid, scripted_opts(_sleeper))
    wait_for(lambda: cells.observation(ledger, rec).latest, 30)
    proc = subprocess.run([sys.executable, "-m", "gptme_factory", "kill", rec.cell, "--reason",
                           "wrong approach", "--repo", str(ledger.repo.root)],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "killed" in proc.stdout
    fin = events(ledger, aid, "cell_finished")[0]
    assert fin.outcome == "killed" and "wrong approach" in fin.reason
    session = json.loads((ledger.repo.root / "state" / "sessions" / f"{rec.session}.json")
                         .read_text())
    assert session["status"] == "killed"
    assert not (ledger.repo.root / "tasks").exists()  # a cell is not the user's task
    no_cells_left(ledger)


def test_command_backend(sample: tuple[Ledger, str]) -> None:
    ledger, aid = sample
    opts = scripted_opts(scripted.plan("sample"), backend="command",
                         command="gptme -n --no-stream {model_opt} {prompt}")
    rec = cells.spawn(ledger, aid, opts)
    assert rec.session == f"pid:{rec.pid}"
    reaped = reap_all(ledger, aid)
    assert [(r.outcome, r.advanced.passed if r.advanced else None) for r in reaped] == [
        ("handoff", True)]
    assert events(ledger, aid, "cell_finished")[0].exit_code == 0
    no_cells_left(ledger)


def test_subagent_backend(sample: tuple[Ledger, str]) -> None:
    ledger, aid = sample
    rec = cells.spawn(ledger, aid, scripted_opts(scripted.plan("sample"), backend="subagent"))
    assert rec.conversation and "subagent-factory-" in rec.conversation
    recorded = Path(rec.conversation).name  # the ledger keeps the log dir's name, not a path
    reaped = reap_all(ledger, aid)
    assert [r.outcome for r in reaped] == ["handoff"]
    fin = events(ledger, aid, "cell_finished")[0]
    assert fin.conversation == recorded and fin.tokens_in
    assert view(ledger, aid).state == "designed"
    no_cells_left(ledger)


def test_foreman_resumes_a_stage_left_without_a_process(sample: tuple[Ledger, str]) -> None:
    ledger, aid = sample
    engine.start_stage(ledger, aid)  # a foreman died between start and launch
    said: list[str] = []
    stopped = run_scripted(ledger, aid, until="scout", on_event=said.append)
    assert [s.kind for s in stopped] == ["done"]
    assert any("never launched" in m for m in said)
    assert [f.outcome for f in events(ledger, aid, "cell_finished")] == ["crashed", "handoff"]
    assert view(ledger, aid).attempts["scout"] == 2
    no_cells_left(ledger)
