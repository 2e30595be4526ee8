"""Cell building blocks without a model: briefs, task files, logs, processes, the board."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from gptme_factory.cells import convlog, proctree, taskfile
from gptme_factory.cells import spawn as cells
from gptme_factory.cells import state as cellstate
from gptme_factory.cells.brief import BriefContext, render_brief, render_prompt
from gptme_factory.cells.state import CellRecord
from gptme_factory.cells.watch import observe
from gptme_factory.demo import scripted
from gptme_factory.errors import HandoffRefused, IllegalTransition, InvalidRecord, UsageError
from gptme_factory.ledger.schemas import contract_schema
from gptme_factory.ledger.store import Ledger
from gptme_factory.line import engine
from gptme_factory.line.intake import intake as new_intake
from gptme_factory.line.verify import verify_ledger
from gptme_factory.views import cellboard as board_cells
from tests import cells_helpers
from tests.cells_helpers import events, view
from tests.conftest import git
from tests.ledger_helpers import append_next, commit_count, new_artifact

cell_env = cells_helpers.cell_env
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def ctx(**kw: object) -> BriefContext:
    base: dict[str, object] = dict(
        cell="demo-1a2b3c.build.beef", artifact="demo-1a2b3c", stage="build", role="builder",
        role_description="Makes the change on its own branch and commits it.", read_only=False,
        attempt=2, attempts=3, contract="builder_patch",
        schema=contract_schema(None, "builder_patch"),
        intake={"title": "Demo", "acceptance": ["a", "b"], "consumers": ["erik"]},
        budget={"timeout_s": 600.0, "max_tokens": 100000, "max_cost_usd": 1.5},
        brain="/srv/brain", workdir="/srv/brain/.git/factory-worktrees/x",
        factory_cmd="gptme-factory", brief_path="factory/artifacts/demo/briefs/x.md",
        retry_note="test_compound fails: assert 120 == 150",
        earlier=[("scout", "scout", {"kind": "scout_memo", "approach": "regex"})],
        base_commit="abc123", branch="factory/demo-1a2b3c.build.beef",
        runtime_dir="/srv/brain/factory/.runtime")
    base.update(kw)
    return BriefContext(**base)


def test_brief_has_everything_a_cell_needs() -> None:
    text = render_brief(ctx())
    for needle in [
        "cell id: `demo-1a2b3c.build.beef`", "attempt 2 of 3", "one `builder_patch`",
        "gptme-factory submit --repo /srv/brain --cell demo-1a2b3c.build.beef HANDOFF.yaml",
        "gptme-factory progress --repo /srv/brain --cell demo-1a2b3c.build.beef",
        "Only committed work survives", "branch: `factory/demo-1a2b3c.build.beef`",
        "base commit `abc123`", "wall clock: 600 s", "tokens: 100,000", "money: $1.5",
        "Why the previous attempt failed", "assert 120 == 150", "Earlier handoff: scout",
        "approach: regex", '"title": "BuilderPatch"', "Never `git add -A`",
    ]:
        assert needle in text, needle
    assert "```shell" not in text  # an echoing model must not run the brief's examples
    prompt = render_prompt(ctx(), "/srv/brain/factory/artifacts/demo/briefs/x.md")
    assert "Read your brief first: /srv/brain/factory/artifacts/demo/briefs/x.md" in prompt
    assert len(prompt) < 1000


def test_read_only_brief_says_changes_are_discarded() -> None:
    text = render_brief(ctx(role="verifier", read_only=True, branch=None, commit="deadbeef",
                            contract="verifier_report"))
    assert "throw-away checkout" in text and "`deadbeef` (checked out for you)" in text
    assert "real exit code" in text


def test_scripted_prompt_runs_once_and_embeds_verbatim() -> None:
    c = ctx(role="builder")
    prompt = scripted.SamplePlan(broken_builds=1)(c)
    assert prompt.count("```shell") == 1 and "scripted actions already ran" in prompt
    assert "1h2m30s" in prompt  # attempt 2 of a plan with one broken build: the fix
    assert "first unit only: wrong" in scripted.SamplePlan(broken_builds=1)(ctx(attempt=1))
    assert "git rev-parse HEAD" in prompt
    with pytest.raises(ValueError, match="cannot be embedded"):
        scripted.write_file("x", "```shell\nrm -rf /\n```")
    with pytest.raises(UsageError, match="unknown scripted plan"):
        scripted.plan("nope")


def test_an_artifact_that_needs_a_person_is_a_waiting_gptodo_task(ledger: Ledger) -> None:
    import frontmatter
    from gptodo.utils import load_tasks, validate_task_file

    aid = new_artifact(ledger)
    assert taskfile.sync_person_task(ledger, aid) is None  # nobody needed yet: no file
    for _ in range(3):  # three crashed scout attempts: the stage is blocked
        append_next(ledger, aid)
        append_next(ledger, aid)
    with pytest.raises(IllegalTransition):
        engine.start_stage(ledger, aid)  # records attempts_exhausted
    before = commit_count(ledger.repo.root)
    what = taskfile.sync_person_task(ledger, aid)
    assert what is not None and "start" in what and "--force" in what
    path = ledger.repo.root / "tasks" / f"factory-{aid}.md"
    [task] = load_tasks(ledger.repo.root / "tasks")
    assert task.state == "waiting" and task.name == f"factory-{aid}"
    assert validate_task_file(path, frontmatter.load(path)) == []
    meta, body = taskfile.parse(path.read_bytes(), str(path))
    assert meta["tags"] == ["factory", "needs-person"] and "--force" in meta["waiting_for"]
    assert f"gptme-factory show {aid}" in body
    # its own commit, holding only the task file
    assert commit_count(ledger.repo.root) == before + 1
    assert git(ledger.repo.root, "show", "--name-only", "--format=", "HEAD").split() == [
        f"tasks/factory-{aid}.md"]
    assert taskfile.sync_person_task(ledger, aid) is None  # unchanged: no new commit
    # gptodo does not offer it as something to start
    ready = subprocess.run(["gptodo", "ready", "--json"], cwd=ledger.repo.root,
                           capture_output=True, text=True, check=True)
    assert f"factory-{aid}" not in ready.stdout
    # a person retries: the task is done
    engine.start_stage(ledger, aid, force=True)
    assert taskfile.sync_person_task(ledger, aid) == "no longer needs a person"
    assert taskfile.parse(path.read_bytes(), str(path))[0]["state"] == "done"
    assert taskfile.problems({"state": "doing", "created": "x", "waiting_for": ["a"]}) == [
        "state: must be one of backlog, todo, active, ready_for_review, waiting, done, cancelled",
        "created: must be an ISO date or datetime string", "waiting_for: must be a string"]
    with pytest.raises(InvalidRecord):
        taskfile.parse(b"no frontmatter", "t.md")


def _log(d: Path, workspace: str, msgs: list[dict[str, object]]) -> Path:
    d.mkdir(parents=True)
    (d / "config.toml").write_text(f'[chat]\nmodel = "x"\nworkspace = "{workspace}"\n')
    (d / "conversation.jsonl").write_text("".join(json.dumps(m) + "\n" for m in msgs))
    return d


def test_usage_is_read_from_gptme_metadata(tmp_path: Path) -> None:
    logdir = _log(tmp_path / "c1", "/w", [
        {"role": "system", "content": "s" * 400},
        {"role": "user", "content": "do it"},
        {"role": "assistant", "content": "done\n```shell\nls\n```",
         "metadata": {"cost": 0.01, "usage": {"input_tokens": 100, "cache_read_tokens": 50,
                                              "output_tokens": 20}}},
        {"role": "assistant", "content": "ok", "metadata": {"cost": 0.02,
                                                            "usage": {"input_tokens": 200,
                                                                      "output_tokens": 5}}},
    ])
    u = convlog.read_usage(logdir)
    assert (u.tokens_in, u.tokens_out, u.measured, u.steps) == (350, 25, True, 2)
    assert u.cost_usd == pytest.approx(0.03) and u.last_line == "ok"


def test_usage_is_estimated_when_the_model_reports_none(tmp_path: Path) -> None:
    logdir = _log(tmp_path / "c1", "/w", [
        {"role": "system", "content": "s" * 4000},
        {"role": "user", "content": "u" * 400},
        {"role": "assistant", "content": "a" * 40, "metadata": {"model": "mock/echo"}},
        {"role": "system", "content": "t" * 400},
    ])
    u = convlog.read_usage(logdir)
    assert (u.tokens_in, u.tokens_out, u.measured, u.cost_usd) == (1100, 10, False, None)
    assert convlog.read_usage(logdir, in_flight=True).tokens_in == 1100 + 1210
    assert convlog.read_usage(tmp_path / "missing") == convlog.Usage()


def test_finds_the_conversation_of_a_workdir(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    _log(logs / "a", "/srv/wt/cell-a", [{"role": "user", "content": "cell a"}])
    _log(logs / "b", "/srv/wt/cell-b", [{"role": "user", "content": "cell b"}])
    _log(logs / "b2", "/srv/wt/cell-b", [{"role": "user", "content": "you are x.build.beef"}])
    since = time.time() - 60
    assert convlog.find_conversation("/srv/wt/cell-a", since, dirs=[logs]) == logs / "a"
    assert convlog.find_conversation("/srv/wt/cell-b", since, "x.build.beef", [logs]) == logs / "b2"
    assert convlog.find_conversation("/srv/wt/none", since, dirs=[logs]) is None
    assert convlog.find_conversation("/srv/wt/cell-a", time.time() + 3600, dirs=[logs]) is None


def test_each_conversation_config_is_parsed_once_until_it_changes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    logs = tmp_path / "logs"
    _log(logs / "a", "/srv/wt/cell-a", [{"role": "user", "content": "cell a"}])
    _log(logs / "b", "/srv/wt/cell-b", [{"role": "user", "content": "cell b"}])
    parsed: list[str] = []
    real = convlog._read_workspace
    monkeypatch.setattr(convlog, "_read_workspace", lambda p: parsed.append(p) or real(p))
    since = time.time() - 60
    for wd in ("/srv/wt/cell-a", "/srv/wt/cell-b", "/srv/wt/none"):  # three running cells
        convlog.find_conversation(wd, since, dirs=[logs])
    assert sorted(parsed) == [str(logs / "a" / "config.toml"), str(logs / "b" / "config.toml")]
    config = logs / "a" / "config.toml"  # rewritten: it names another workspace now
    config.write_text(config.read_text().replace("cell-a", "cell-c-longer"))
    assert convlog.find_conversation("/srv/wt/cell-c-longer", since, dirs=[logs]) == logs / "a"
    assert convlog.find_conversation("/srv/wt/cell-a", since, dirs=[logs]) is None


def test_one_listing_of_the_logs_serves_every_cell(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    real = tmp_path / "wt" / "cell-a"
    real.mkdir(parents=True)
    (tmp_path / "via").symlink_to(tmp_path / "wt")
    _log(logs / "a", str(tmp_path / "via" / "cell-a"), [{"role": "user", "content": "a"}])
    listing = convlog.LogDirs([logs])
    since = time.time() - 60
    # gptme named the workspace through a symlink: the same folder
    assert convlog.find_conversation(real, since, logs=listing) == logs / "a"
    _log(logs / "b", "/srv/wt/cell-b", [{"role": "user", "content": "b"}])
    assert convlog.find_conversation("/srv/wt/cell-b", since, logs=listing) is None  # listed once
    assert convlog.find_conversation("/srv/wt/cell-b", since, dirs=[logs]) == logs / "b"
    # a missing logs dir is skipped, a file in one is not a conversation
    (logs / "notes.txt").write_text("x")
    assert sorted(p for _, p in convlog.LogDirs([tmp_path / "missing", logs]).entries()) == [
        str(logs / "a"), str(logs / "b")]


def test_kill_tree_leaves_no_orphans() -> None:
    proc = subprocess.Popen(["bash", "-c", "sleep 60 & sleep 60 & wait"], start_new_session=True)
    try:
        time.sleep(0.3)
        kids = proctree.descendants(proc.pid)
        assert len(kids) == 2
        ticks = proctree.start_ticks(proc.pid)
        assert proctree.alive(proc.pid, ticks) and not proctree.alive(proc.pid, (ticks or 0) + 1)
        proctree.kill_tree(proc.pid, ticks)
        proc.wait(5)
        assert not any(proctree.alive(k) for k in kids)
    finally:
        proc.kill()
        proc.wait()


def _rec(**kw: object) -> CellRecord:
    base: dict[str, object] = dict(
        cell="a-1.scout.ab12", artifact="a-1", stage="scout", role="scout", backend="gptodo",
        started_at=(NOW - timedelta(minutes=3)).isoformat(), workdir="/nowhere",
        timeout_s=600.0, max_tokens=1000, max_cost_usd=0.5, session="agent_x",
        conversation=None)
    base.update(kw)
    return CellRecord(**base)


def test_observation_and_board_rows(tmp_path: Path) -> None:
    logdir = _log(tmp_path / "c", "/nowhere", [
        {"role": "system", "content": "s" * 4000},
        {"role": "assistant", "content": "looked at parse_duration\n```", "metadata": {}}])
    rec = _rec(conversation=str(logdir), pid=None)
    o = observe(rec, NOW, stall_after_s=60, progress=None)
    assert (o.elapsed_s, o.time_left_s, o.tokens) == (180.0, 420.0, 1000 + 7)
    assert o.latest == "looked at parse_duration" and o.latest_source == "conversation"
    assert o.over_budget is not None and "over its budget of 1,000" in o.over_budget
    o2 = observe(rec, NOW, stall_after_s=60, progress=("planning the regex", NOW.isoformat()))
    assert o2.latest == "planning the regex" and o2.latest_source == "progress"
    row = board_cells.row(o2)
    assert row["elapsed"] == "3m00s" and row["budget"].startswith("7m00s left, ~0 tok, $0.50")
    lines = board_cells.render_text([o2], cap=4)
    assert lines[0] == "cells (1 running, max 4)" and lines[2] == "    > planning the regex"
    [j] = board_cells.to_json([o2])
    assert j["latest"] == "planning the regex" and j["over_budget"] and j["state"] == "running"
    dead = observe(_rec(pid=999_999_999, pid_start=1), NOW, stall_after_s=60, progress=None,
                   output_tail="\x1b[1mEcho:\x1b[0m working\nEXIT_CODE=0\n")
    assert not dead.alive and board_cells.state_of(dead) == "exited, awaiting collect"
    assert dead.latest == "Echo: working" and dead.latest_source == "output"


def test_status_lists_cells_and_stays_quiet_without(ledger: Ledger) -> None:
    def status(*args: str) -> str:
        return subprocess.run([sys.executable, "-m", "gptme_factory", "status", *args, "--repo",
                               str(ledger.repo.root)], capture_output=True, text=True,
                              check=True).stdout

    assert "cells (" not in status()
    assert json.loads(status("--json"))["cells"] == []
    cellstate.save(ledger.runtime_dir, _rec(started_at=datetime.now(timezone.utc).isoformat(),
                                            pid=None))
    out = status()
    assert "cells (1 running, max 4)" in out and "a-1.scout.ab12" in out
    [c] = json.loads(status("--json"))["cells"]
    assert c["cell"] == "a-1.scout.ab12" and c["backend"] == "gptodo"


def test_progress_is_runtime_only_and_checked(ledger: Ledger) -> None:
    aid = new_intake(ledger, title="T", demand="me", consumers=["me"], acceptance=["x"]).artifact
    head = git(ledger.repo.root, "rev-parse", "HEAD")
    proc = subprocess.run([sys.executable, "-m", "gptme_factory", "progress", "--cell",
                           f"{aid}.scout.ab12", "read", "the", "code", "--repo",
                           str(ledger.repo.root)], capture_output=True, text=True)
    assert proc.returncode == 0 and "noted: read the code" in proc.stdout
    assert git(ledger.repo.root, "rev-parse", "HEAD") == head
    with pytest.raises(HandoffRefused, match="not a cell id"):
        cells.progress(ledger, "nonsense", "x")
    with pytest.raises(HandoffRefused, match="does not exist"):
        cells.progress(ledger, "nope-1.scout.ab12", "x")


def test_failed_launch_fails_the_attempt_and_cleans_up(ledger: Ledger, cell_env: Path) -> None:
    aid = new_intake(ledger, title="T", demand="me", consumers=["me"], acceptance=["x"]).artifact
    opts = cells.SpawnOptions(backend="command", command="echo {nope}")
    with pytest.raises(UsageError, match="bad command template"):
        cells.spawn(ledger, aid, opts)
    [fin] = events(ledger, aid, "cell_finished")
    assert fin.outcome == "crashed" and "could not launch" in fin.reason
    assert view(ledger, aid).status == "pending"
    assert cellstate.load_all(ledger.runtime_dir) == []
    assert git(ledger.repo.root, "worktree", "list").count("\n") == 1
    assert not list(ledger.artifact_dir(aid).glob("briefs/*"))  # no stray brief
    assert git(ledger.repo.root, "status", "--porcelain") == ""
    assert [str(p) for p in verify_ledger(ledger)] == []


def test_command_backend_and_reap_without_a_model(ledger: Ledger, cell_env: Path) -> None:
    aid = new_intake(ledger, title="T", demand="me", consumers=["me"], acceptance=["x"]).artifact
    rec = cells.spawn(ledger, aid, cells.SpawnOptions(backend="command",
                                                      command="echo hello from {cell}; exit 3"))
    assert rec.read_only and Path(rec.workdir).is_dir()
    assert Path(ledger.repo.root / (rec.brief or "")).is_file()
    spawned = events(ledger, aid, "cell_spawned")[0]
    assert spawned.backend == "command" and spawned.session == rec.session

    def reaped() -> list[cells.Reaped]:
        return cells.collect(ledger, [aid])[0]

    deadline = time.monotonic() + 20
    got: list[cells.Reaped] = []
    while not got and time.monotonic() < deadline:
        got = reaped()
        time.sleep(0.1)
    [r] = got
    assert r.outcome == "crashed" and "status 3" in r.reason
    fin = events(ledger, aid, "cell_finished")[0]
    assert fin.exit_code == 3 and f"hello from {rec.cell}" in fin.output_tail
    assert "conversation log was not found" in fin.reason and fin.tokens_in is None
    assert not Path(rec.workdir).exists()
    v = view(ledger, aid)
    assert v.status == "pending" and "crashed" in v.retry_note
    assert engine.load(ledger, aid)[1].attempts["scout"] == 1


def test_spawn_and_collect_through_the_cli(ledger: Ledger, cell_env: Path) -> None:
    aid = new_intake(ledger, title="T", demand="me", consumers=["me"], acceptance=["x"]).artifact

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "gptme_factory", *args, "--repo",
                               str(ledger.repo.root)], capture_output=True, text=True)

    proc = cli("spawn", aid, "--backend", "command", "--command", "echo working on {cell}",
               "--timeout", "30", "--json")
    assert proc.returncode == 0, proc.stderr
    rec = json.loads(proc.stdout)
    assert rec["role"] == "scout" and rec["timeout_s"] == 30 and rec["backend"] == "command"
    again = cli("spawn", aid, "--backend", "command", "--command", "true")
    assert again.returncode == 7 and "is running" in again.stderr  # one cell per stage
    deadline = time.monotonic() + 20
    reaped: list[dict[str, object]] = []
    while not reaped and time.monotonic() < deadline:
        out = cli("collect", "--json")
        assert out.returncode == 0, out.stderr
        reaped = json.loads(out.stdout)["reaped"]
        time.sleep(0.1)
    assert [(r["cell"], r["outcome"]) for r in reaped] == [(rec["cell"], "no_handoff")]
    fin = events(ledger, aid, "cell_finished")[0]
    assert f"working on {rec['cell']}" in fin.output_tail and fin.exit_code == 0
    assert cli("collect").stdout.strip() == "nothing to collect"


def test_a_cell_worktree_reaches_the_brain_ledger(ledger: Ledger) -> None:
    aid = new_intake(ledger, title="T", demand="me", consumers=["me"], acceptance=["x"]).artifact
    wt = ledger.repo.worktree_base() / f"{aid}.scout.ab12"
    ledger.repo.worktree_add(wt, ledger.repo.head() or "HEAD")
    assert Ledger.open(wt).dir == ledger.dir  # never the stale copy in the worktree
    proc = subprocess.run([sys.executable, "-m", "gptme_factory", "progress", "--cell",
                           f"{aid}.scout.ab12", "hi"], cwd=wt, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert not (wt / "factory" / ".runtime").exists()
    assert (ledger.runtime_dir / "progress" / f"{aid}.scout.ab12.json").is_file()
