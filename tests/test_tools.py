"""The `factory` gptme tool: functions called directly, `execute`, gptme's own discovery,
and (slow) the real `gptme` CLI on `mock/echo` calling the functions through `ipython`."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gptme_factory.demo.sample import (
    DEMAND,
    SAMPLE_DIR,
    verification_plan,
    write_sample_project,
)
from gptme_factory.ledger.layout import fanned
from gptme_factory.ledger.store import Ledger, short_id
from gptme_factory.line.verify import verify_ledger
from gptme_factory.plugin.tools import _functions as f
from gptme_factory.plugin.tools.factory import ACTIONS, execute, tool
from tests import cells_helpers
from tests.conftest import git

cell_env = cells_helpers.cell_env


@pytest.fixture
def repo(factory_repo: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A factory repo with the sample project, as gptme's workspace (cwd)."""
    paths = write_sample_project(factory_repo)
    git(factory_repo, "add", *paths)
    git(factory_repo, "commit", "-q", "-m", "add sample project")
    monkeypatch.chdir(factory_repo)
    return factory_repo


def clean(repo: Path) -> None:
    assert [str(p) for p in verify_ledger(Ledger.open(repo))] == []


def scout_memo(aid: str) -> dict[str, Any]:
    return {
        "kind": "scout_memo", "artifact": aid,
        "files": [{"path": f"{SAMPLE_DIR}/durations.py", "why": "parse_duration lives here"}],
        "approach": "parse (number, unit) pairs with a regex and sum them",
        "verification_plan": verification_plan(),
        "criteria": [{"criterion": 0, "plan": "new test_compound"},
                     {"criterion": 1, "plan": "existing tests"}],
    }


def intake() -> str:
    r = f.factory_intake(DEMAND["title"], demand=DEMAND["demand"], consumers=DEMAND["consumers"],
                         acceptance=DEMAND["acceptance"], problem=DEMAND["problem"])
    assert r.ok, r
    return r.artifact  # type: ignore[attr-defined,no-any-return]


def test_intake_status_show_start_submit_advance(repo: Path) -> None:
    aid = intake()
    clean(repo)
    status = f.factory_status()
    assert aid in status and "scout:pending" in status and "factory_spawn" in status
    started = f.factory_start(aid[:12])
    assert started.ok and started.cell.startswith(f"{aid}.scout.")  # type: ignore[attr-defined]
    cell = started.cell  # type: ignore[attr-defined]
    assert started == cell and f"cell {cell}" in repr(started)  # the id as data, shown in words
    assert f.factory_intake("Second", demand="d", consumers=["c"], acceptance=["a"]).startswith(
        "second-")  # intake returns the new artifact's id
    assert f"cell {cell}" in f.factory_status()
    assert f.factory_progress(cell, "read durations.py").ok
    accepted = f.factory_submit(cell, scout_memo(aid))
    assert accepted.ok and accepted.startswith("accepted: factory/artifacts/")
    assert "factory_advance" in accepted
    advanced = f.factory_advance(aid)
    assert advanced.startswith(f"{aid}: gate scout passed -> state designed")
    assert "stage build needs a cell" in advanced
    shown = f.factory_show(aid)
    assert "handoff [scout]:" in shown and "kind: scout_memo" in shown
    handoff_event = Ledger.open(repo).read(aid).events[1].event
    assert handoff_event.last_progress == "read durations.py"
    log = f.factory_log(aid)
    assert "#0     intake " in log and "handoff_submitted" in log and "gate_passed" in log
    assert f.factory_verify().startswith("ledger ok: 2 artifact(s)")
    clean(repo)


def test_submit_accepts_yaml_text_and_file_path(repo: Path, tmp_path: Path) -> None:
    import yaml

    aid = intake()
    cell = f.factory_start(aid).cell  # type: ignore[attr-defined]
    path = tmp_path / "handoff.yaml"
    path.write_text(yaml.safe_dump(scout_memo(aid)))
    assert f.factory_submit(cell, str(path)).ok
    aid2 = intake()
    cell2 = f.factory_start(aid2).cell  # type: ignore[attr-defined]
    assert f.factory_submit(cell2, json.dumps(scout_memo(aid2))).ok
    clean(repo)


def test_errors_are_sentences_not_tracebacks(repo: Path) -> None:
    aid = intake()
    missing = f.factory_show("no-such-artifact")
    assert not missing.ok
    assert missing.startswith("error: no artifact matches 'no-such-artifact'")
    assert "gptme-factory status" in missing
    bad_cell = f.factory_submit("not-a-cell", {"kind": "scout_memo"})
    assert bad_cell.startswith("error: ") and "cell id" in bad_cell
    cell = f.factory_start(aid).cell  # type: ignore[attr-defined]
    invalid = f.factory_submit(cell, {**scout_memo(aid), "criteria": [], "bogus": 1})
    assert not invalid.ok
    assert "criteria" in invalid and "bogus" in invalid and "attempt(s) left" in invalid
    assert f.factory_advance(aid).startswith("error: nothing to advance")
    closing = f.factory_close(aid, terminal="done")
    assert not closing.ok and closing.startswith("error: ")
    assert f.factory_close(aid).startswith("error: done is not a handoff")
    clean(repo)


def test_no_ledger_says_run_init(brain: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(brain)
    r = f.factory_status()
    assert not r.ok and "gptme-factory init" in r


def test_inside_a_cell_worktree_the_main_ledger_is_used(repo: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A cell's worktree holds a stale ledger copy on its branch: the tools never write there."""
    from gptme_factory.plugin.tools._session import briefing_for

    wt = repo / ".git" / "factory-worktrees" / "cell-x"
    git(repo, "worktree", "add", "-q", "--detach", str(wt), "HEAD")
    monkeypatch.chdir(wt)
    aid = intake()  # created after the worktree: only the main ledger has it
    assert (repo / "factory" / "artifacts" / fanned(aid)).is_dir()
    assert not (wt / "factory" / "artifacts" / fanned(aid)).exists()
    assert aid in f.factory_status()
    assert briefing_for(wt) == ""  # cells get their brief, not the operator's board
    assert aid in briefing_for(repo)


def test_reply_shows_as_plain_text() -> None:
    from IPython.lib.pretty import pretty

    r = f.Reply("two\nlines", artifact="x")
    assert repr(r) == "two\nlines" and pretty(r) == "two\nlines"
    assert r.artifact == "x" and r.ok  # type: ignore[attr-defined]


def test_reject_and_abandon(repo: Path) -> None:
    a, b = intake(), intake()
    assert f.factory_reject(a, "duplicate of #12") == f"{a} rejected: duplicate of #12"
    assert f.factory_abandon(b, "consumer left").endswith("abandoned: consumer left")
    assert "2 final" in f.factory_status()
    assert a in f.factory_status(include_final=True) and a not in f.factory_status()
    clean(repo)


# -- execute: ```factory blocks and native tool calls -----------------------------------


def run_execute(code: str | None = None, args: list[str] | None = None,
                kwargs: dict[str, Any] | None = None) -> str:
    msgs = list(execute(code, args, kwargs))
    assert len(msgs) == 1 and msgs[0].role == "system"
    return msgs[0].content


def test_execute_block_and_native_payloads(repo: Path) -> None:
    out = run_execute(
        "action: intake\ntitle: Compound durations\ndemand: gh:acme/deploy-bot#17\n"
        "consumers: [erik]\nacceptance: [2m30s parses, old tests pass]\n", ["factory"])
    aid = out.split()[0]
    assert f"{aid}  idea" in out
    assert aid in run_execute("", ["status"])
    assert f"{aid}: Compound durations" in run_execute(None, None, {"action": "show", "artifact": aid})
    native = run_execute(None, None, {"action": "start", "artifact": aid, "payload": ""})
    cell_id = re.search(r"cell (\S+)\. Do the work", native).group(1)
    payload = json.dumps({"handoff": {**scout_memo(aid)}})
    assert run_execute(None, None, {"action": "submit", "cell": cell_id, "payload": payload}
                       ).startswith("accepted: ")
    clean(repo)


def test_execute_errors(repo: Path) -> None:
    assert run_execute("action: fly").startswith("error: unknown action 'fly'")
    assert "missing demand, consumers, acceptance" in run_execute("action: intake\ntitle: x")
    assert "unknown argument(s) colour" in run_execute("action: status\ncolour: red")
    assert run_execute("action: [unclosed").startswith("error: the factory payload is not valid")
    assert set(ACTIONS) >= {"intake", "status", "show", "spawn", "progress", "submit",
                            "advance", "collect", "run", "close", "package", "measure"}


# -- gptme's view of the tool -----------------------------------------------------------


def test_gptme_discovers_one_factory_tool_with_documented_functions() -> None:
    from gptme.tools import _discover_tools

    found = [t for t in _discover_tools(["gptme.tools", "gptme_factory.plugin.tools"])
             if t.name == "factory"]
    assert found == [tool]
    assert tool.execute is not None and tool.block_types == ["factory"]
    for fn in tool.functions or []:
        assert fn.name.startswith("factory_")
        assert fn.description and len(fn.description) < 200, fn.name


def test_ipython_tool_registers_the_functions(monkeypatch: pytest.MonkeyPatch) -> None:
    """With TOOL_MODULES as `init` writes it, gptme loads the tool and ipython gets the functions."""
    from gptme.tools import clear_tools, get_tool, init_tools
    from gptme.tools.python import registered_functions

    monkeypatch.setenv("TOOL_MODULES", "gptme.tools,gptme_factory.plugin.tools")
    clear_tools()
    try:
        init_tools(["ipython", "factory"])
        assert get_tool("factory") is not None
        assert {fn.name for fn in tool.functions or []} <= set(registered_functions)
    finally:
        clear_tools()


# -- the real gptme CLI -----------------------------------------------------------------


def gptme_env(home: Path, max_steps: int = 4) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"GPTME_TIKTOKEN_TIMEOUT": "0", "GPTME_MAX_STEPS": str(max_steps),
                "HOME": str(home)})
    return env


def run_gptme(repo: Path, prompt: str, name: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["gptme", "--model", "mock/echo", "--no-stream", "-n", "--name", name, prompt],
        cwd=repo, env=gptme_env(home), capture_output=True, text=True, timeout=180,
    )


def conversation(home: Path, name: str) -> list[dict[str, Any]]:
    path = Path(os.environ["XDG_DATA_HOME"]) / "gptme" / "logs" / name / "conversation.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.slow
def test_real_gptme_session_calls_factory_functions(factory_repo: Path,
                                                   isolated_env: Path) -> None:
    from click.testing import CliRunner

    from gptme_factory.cli import main

    repo = factory_repo
    paths = write_sample_project(repo)
    git(repo, "add", *paths)
    git(repo, "commit", "-q", "-m", "add sample project")
    res = CliRunner().invoke(main, ["init", "--repo", str(repo)])
    assert res.exit_code == 0, res.output
    (repo / "notes.txt").write_text("the user's unstaged work\n")
    memo = scout_memo("AID")
    prompt = f"""Drive the factory:
```ipython
aid = factory_intake({DEMAND['title']!r}, demand={DEMAND['demand']!r}, consumers={DEMAND['consumers']!r}, acceptance={DEMAND['acceptance']!r})
print(repr(aid))
print(factory_status())
cell = factory_start(aid)
memo = {json.dumps(memo)}
memo["artifact"] = aid
print(factory_submit(cell, memo))
print(factory_advance(aid))
```
```complete
```"""
    proc = run_gptme(repo, prompt, "factory-e2e", isolated_env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ledger = Ledger.open(repo)
    [aid] = ledger.artifact_ids()
    kinds = [e.event.kind for e in ledger.read(aid).events]
    assert kinds == ["stage_started", "handoff_submitted", "contract_fixed", "gate_passed"]
    assert verify_ledger(ledger) == []
    subjects = git(repo, "log", "--format=%s", "-5").splitlines()
    sid = short_id(aid)
    assert subjects[:4] == [f"factory({sid}): scout passed -> designed",
                            f"factory({sid}): scout handoff (scout_memo)",
                            f"factory({sid}): scout started",
                            f"factory({sid}): intake: {DEMAND['title']}"]
    assert git(repo, "status", "--porcelain").splitlines() == ["?? notes.txt"]
    msgs = conversation(isolated_env, "factory-e2e")
    outputs = "\n".join(m["content"] for m in msgs
                        if m["role"] == "system" and "Executed code block" in m["content"])
    assert f"{aid}: gate scout passed -> state designed" in outputs
    assert "error:" not in outputs and "Traceback" not in outputs


# -- cells through the tool functions (real gptodo + tmux + gptme on mock/echo) ----------


@pytest.fixture
def cells_repo(repo: Path, cell_env: Path) -> Iterator[Path]:
    """`repo` with a private tmux server, and cells that run gptme on mock/echo."""
    from gptme_factory.plugin.settings import configure

    configure({"model": "mock/echo", "timeout_s": 120, "max_tokens": 50_000})
    yield repo
    configure({})


@pytest.mark.slow
def test_spawn_status_kill_collect_through_the_tools(cells_repo: Path) -> None:
    from tests.cells_helpers import no_cells_left, wait_for

    aid = intake()
    spawned = f.factory_spawn(aid)
    assert spawned.ok, spawned
    cell = spawned.cell  # type: ignore[attr-defined]
    assert spawned == cell  # it returns the cell id, and shows the agent a sentence
    assert cell.startswith(f"{aid}.scout.") and "budget 120 s, 50,000 tokens" in spawned.shown
    status = f.factory_status()
    assert "running cells (1):" in status and f"- {cell} (scout)" in status
    killed = f.factory_kill(cell, "the test stops it")
    assert killed.ok and killed.startswith(f"{cell}: killed"), killed
    # a second attempt: an unscripted mock/echo cell never hands off (gptme keeps auto-replying)
    # and burns tokens, so the budget from [plugin.gptme_factory] stops it
    second = f.factory_spawn(aid).cell  # type: ignore[attr-defined]
    collected = wait_for(lambda: (t := f.factory_collect(aid)) and "over_budget" in t and t,
                         timeout=90)
    assert f"{second}: over_budget" in collected and "over its budget of 50,000" in collected
    assert "stage scout needs a cell" in collected  # the attempt failed; the stage is pending
    outcomes = [e.event.outcome for e in Ledger.open(cells_repo).read(aid).events
                if e.event.kind == "cell_finished"]
    assert outcomes == ["killed", "over_budget"]
    no_cells_left(Ledger.open(cells_repo))
    clean(cells_repo)


@pytest.mark.slow
def test_run_returns_within_its_window_and_resumes(cells_repo: Path) -> None:
    from tests.cells_helpers import no_cells_left

    aid = intake()
    out = f.factory_run(aid, max_wait_s=2)
    assert out.ok and not out.done  # type: ignore[attr-defined]
    assert f"{aid}: spawned {aid}.scout." in out and "still running after 2 s" in out
    assert f"factory_run({aid!r}) to go on" in out
    [cell] = [ln.split()[2] for ln in out.splitlines() if " spawned " in ln]
    assert f.factory_kill(cell, "test over").ok
    no_cells_left(Ledger.open(cells_repo))
