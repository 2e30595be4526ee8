"""Metrics on a ledger generated through the real Ledger/engine API with a fixed clock, so
every expected number below is worked out by hand from the timeline in `history`."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from gptme_factory.cli import main
from gptme_factory.errors import InvalidRecord
from gptme_factory.ledger import yamlio
from gptme_factory.ledger.config import FactoryConfig, LineConfig, default_config
from gptme_factory.ledger.gitstore import GitRepo
from gptme_factory.ledger.store import Ledger
from gptme_factory.line import engine
from gptme_factory.line.intake import intake as new_intake
from gptme_factory.line.verify import verify_ledger
from gptme_factory.outcomes.metrics import metrics, percentile
from gptme_factory.outcomes.selfplay import is_self_play, ledger_self_names
from tests.conftest import git

T0 = datetime(2026, 1, 5, tzinfo=timezone.utc)  # a Monday: ISO week 2026-W02
CHECK = "grep -q fixed app.txt"
H = 3600.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def at(self, hours: float) -> None:
        self.now = T0 + timedelta(hours=hours)

    def __call__(self) -> datetime:
        return self.now


def intake(ledger: Ledger, title: str, consumers: list[str], **kw: Any) -> str:
    return new_intake(ledger, title=title, demand="gh:acme/app#1", consumers=consumers,
                         acceptance=["app.txt says fixed"], **kw).artifact


def scout(ledger: Ledger, clock: Clock, aid: str, start: float, done: float) -> None:
    clock.at(start)
    s = engine.start_stage(ledger, aid)
    engine.submit(ledger, s.cell, {
        "kind": "scout_memo", "artifact": aid, "files": [{"path": "app.txt", "why": "it"}],
        "approach": "write fixed", "criteria": [{"criterion": 0, "plan": "grep"}],
        "verification_plan": [{"command": CHECK, "proves": "fixed", "criteria": [0]}]})
    clock.at(done)
    assert engine.advance(ledger, aid).passed


def build(ledger: Ledger, clock: Clock, aid: str, start: float, done: float, text: str) -> str:
    clock.at(start)
    s = engine.start_stage(ledger, aid)
    root = ledger.repo.root
    wt = root.parent / f"wt-{s.cell}"
    git(root, "worktree", "add", "-q", "-b", f"factory/{s.cell}", str(wt), s.base_commit or "HEAD")
    (wt / "app.txt").write_text(text + "\n")
    git(wt, "commit", "-qam", f"app: {text}")
    head = git(wt, "rev-parse", "HEAD").strip()
    engine.submit(ledger, s.cell, {
        "kind": "builder_patch", "artifact": aid, "status": "success", "branch": f"factory/{s.cell}",
        "base": s.base_commit, "head": head, "summary": text, "files_changed": ["app.txt"],
        "claims": [{"criterion": 0, "claim": text, "evidence": CHECK}]})
    clock.at(done)
    assert engine.advance(ledger, aid).passed
    return head


def verify(ledger: Ledger, clock: Clock, aid: str, start: float, done: float, head: str,
           ok: bool) -> None:
    clock.at(start)
    s = engine.start_stage(ledger, aid)
    engine.submit(ledger, s.cell, {
        "kind": "verifier_report", "artifact": aid, "commit": head,
        "checks": [{"command": CHECK, "exit_code": 0 if ok else 1}],
        "verdict": "pass" if ok else "fail", "failure_summary": "" if ok else "not fixed",
        "criteria": [{"criterion": 0, "verdict": "pass" if ok else "fail", "evidence": CHECK}]})
    clock.at(done)
    assert engine.advance(ledger, aid).passed is ok


def package(ledger: Ledger, clock: Clock, aid: str, start: float, done: float) -> None:
    clock.at(start)
    s = engine.start_stage(ledger, aid)
    engine.submit(ledger, s.cell, {
        "kind": "release_package", "artifact": aid, "change_type": "fix", "version_bump": "patch",
        "changelog_entry": "fixed", "release_notes": "fixed", "pr_title": "fix: app",
        "pr_description": "fixes it", "announcement": "fixed"})
    clock.at(done)
    engine.record_published(ledger, aid, target="note", where=f"notes/{aid}.md")
    assert engine.advance(ledger, aid).passed


def measure_stage(ledger: Ledger, clock: Clock, aid: str, at: float, status: str) -> None:
    clock.at(at)
    s = engine.start_stage(ledger, aid)
    _, view = engine.load(ledger, aid)
    engine.submit(ledger, s.cell, {
        "kind": "outcome_report", "artifact": aid, "terminal": "done",
        "adoption": [{"consumer": c, "status": status, "evidence": "asked"}
                     for c in view.intake.consumers]})
    assert engine.advance(ledger, aid).passed


def finish(ledger: Ledger, aid: str, stage: str, index: int, tin: int, tout: int, usd: float,
           wall: float) -> None:
    _, view = engine.load(ledger, aid)
    cell = [c for c in view.cells.values() if c.stage == stage][index].cell
    engine.record_cell_finished(ledger, cell, outcome="handoff", wall_s=wall, tokens_in=tin,
                                tokens_out=tout, cost_usd=usd)


def two_line_brain(root: Path, ops: LineConfig, message: str) -> tuple[Ledger, Clock]:
    """A new brain repo at `root` (app.txt committed) whose factory has a second line `ops`,
    and its ledger on a fixed clock."""
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "master")
    (root / "app.txt").write_text("todo\n")
    git(root, "add", "app.txt")
    git(root, "commit", "-q", "-m", "app")
    Ledger.init(root)
    cfg = default_config()
    two = FactoryConfig(lines={**cfg.lines, "ops": ops})
    (root / "factory" / "factory.yaml").write_bytes(
        yamlio.dumps(two.model_dump(mode="json", exclude_none=True)))
    git(root, "commit", "-qam", message)
    clock = Clock()
    return Ledger(GitRepo.discover(root), clock=clock), clock


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Six artifacts on two lines (the timeline is in hours from T0)."""
    mp = pytest.MonkeyPatch()
    home = tmp_path_factory.mktemp("mhome")
    for var, value in (("HOME", str(home)), ("GIT_CONFIG_GLOBAL", str(home / ".gitconfig")),
                       ("GIT_CONFIG_NOSYSTEM", "1"), ("GPTME_FACTORY_ACTOR", "tester"),
                       ("GIT_AUTHOR_NAME", "T"), ("GIT_AUTHOR_EMAIL", "t@x.invalid"),
                       ("GIT_COMMITTER_NAME", "T"), ("GIT_COMMITTER_EMAIL", "t@x.invalid"),
                       ("GIT_AUTHOR_DATE", "2026-01-02T03:04:05+00:00"),
                       ("GIT_COMMITTER_DATE", "2026-01-02T03:04:05+00:00")):
        mp.setenv(var, value)
    root = tmp_path_factory.mktemp("metrics") / "brain"
    ledger, clock = two_line_brain(root, default_config().lines["default"], "second line")
    ids: dict[str, str] = {}

    # A: clean first pass, published in W02, measured (used), closed
    clock.at(0)
    a = ids["A"] = intake(ledger, "A", ["erik"])
    scout(ledger, clock, a, 1, 2)
    finish(ledger, a, "scout", 0, 1000, 200, 0.10, 60)
    head = build(ledger, clock, a, 2, 6, "fixed")
    finish(ledger, a, "build", 0, 2000, 500, 0.30, 300)
    verify(ledger, clock, a, 6, 7, head, True)
    finish(ledger, a, "verify", 0, 500, 100, 0.05, 30)
    package(ledger, clock, a, 7, 9)
    finish(ledger, a, "package", 0, 300, 300, 0.05, 20)
    measure_stage(ledger, clock, a, 12, "used")
    finish(ledger, a, "measure", 0, 100, 50, 0.0, 10)
    clock.at(13)
    engine.close(ledger, a, terminal="done")

    # B: self-play maintenance, reworked once, published W02, measured W03 (not used)
    clock.at(24)
    b = ids["B"] = intake(ledger, "B", ["factory"], classification="factory_maintenance")
    scout(ledger, clock, b, 25, 26)
    bad = build(ledger, clock, b, 26, 28, "broken")
    finish(ledger, b, "build", 0, 1000, 1000, 0.20, 100)
    verify(ledger, clock, b, 28, 29, bad, False)
    good = build(ledger, clock, b, 29, 32, "fixed")
    finish(ledger, b, "build", 1, 1000, 1000, 0.20, 100)
    verify(ledger, clock, b, 32, 33, good, True)
    package(ledger, clock, b, 33, 34)
    measure_stage(ledger, clock, b, 24 * 7 + 2, "not_used")

    # C: manual follow-on, contract violation at scout, abandoned
    clock.at(48)
    c = ids["C"] = intake(ledger, "C", ["erik", "self"], classification="manual_follow_on")
    clock.at(49)
    cell = engine.start_stage(ledger, c).cell
    clock.at(50)
    for _ in range(3):
        with pytest.raises(InvalidRecord):
            engine.submit(ledger, cell, {"kind": "scout_memo", "artifact": c})
    finish(ledger, c, "scout", 0, 200, 20, 0.02, 5)
    clock.at(51)
    engine.finish(ledger, c, "abandoned", "nobody needs it")

    # D waits at scout, E is being scouted, F waits on the ops line
    clock.at(72)
    ids["D"] = intake(ledger, "D", ["ops team"])
    clock.at(73)
    ids["E"] = intake(ledger, "E", ["erik"])
    clock.at(74)
    engine.start_stage(ledger, ids["E"])
    clock.at(75)
    ids["F"] = intake(ledger, "F", ["erik"], line="ops")
    assert [str(p) for p in verify_ledger(ledger)] == []
    yield {"ledger": ledger, "ids": ids, "root": root}
    mp.undo()


def test_all_lines(history: dict[str, Any]) -> None:
    ids = history["ids"]
    m = metrics(history["ledger"])
    assert m["artifacts"] == 6 and m["broken"] == []
    assert m["classification"] == {
        "factory_run": {"artifacts": 4, "published": 1},
        "factory_maintenance": {"artifacts": 1, "published": 1},
        "manual_follow_on": {"artifacts": 1, "published": 0},
    }
    assert m["throughput"] == {"published": 2, "measured": 2, "per_week": [
        {"week": "2026-W02", "published": 2, "measured": 1},
        {"week": "2026-W03", "published": 0, "measured": 1}]}
    lt = m["lead_time_s"]
    assert lt["stages"] == {
        "scout": {"n": 2, "median": 2 * H, "p90": 2 * H},
        "build": {"n": 2, "median": 5 * H, "p90": 6 * H},
        "verify": {"n": 2, "median": 1 * H, "p90": 1 * H},
        "package": {"n": 2, "median": 1.5 * H, "p90": 2 * H},
        "measure": {"n": 2, "median": 69.5 * H, "p90": 136 * H},
    }
    assert lt["to_published"] == {"n": 2, "median": 9.5 * H, "p90": 10 * H}
    assert lt["end_to_end"] == {"n": 2, "median": 79 * H, "p90": 146 * H}
    assert m["first_pass_yield"] == {"rate": 0.5, "first_pass": 1, "verified": 2}
    assert m["rework"] == {"rate": 0.25, "artifacts": 1, "started": 4, "events": 1}
    assert m["contract_violations"] == {"rate": 0.0769, "violations": 1, "handoffs": 12}
    total = {"cells": 14, "unmeasured": 6, "cells_without_cost": 0, "tokens_in": 6100,
             "tokens_out": 3170, "tokens": 9270, "usd": 0.92, "wall_s": 625.0}
    zero = {"cells": 0, "unmeasured": 0, "cells_without_cost": 0, "tokens_in": 0,
            "tokens_out": 0, "tokens": 0, "usd": 0.0, "wall_s": 0.0}
    assert m["cost"] == {"total": total, "per_published_usd": 0.46,
                         "per_published_tokens": 4635.0, "per_published_wall_s": 312.5,
                         "per_line": {"default": total, "ops": zero}}
    assert m["adoption"] == {"rate": 0.5, "adopted": 1, "published": 2, "measured": 2}
    assert m["self_play"] == {"rate": 0.1667, "count": 1, "artifacts": [ids["B"]]}
    assert m["queue"] == {"stages": {"scout": {"total": 3, "pending": 2, "running": 1}},
                          "unclosed": 1}


def test_line_and_since_filters(history: dict[str, Any]) -> None:
    ledger = history["ledger"]
    m = metrics(ledger, line="default")
    assert (m["artifacts"], m["filters"]) == (5, {"line": "default", "since": None})
    assert m["queue"]["stages"] == {"scout": {"total": 2, "pending": 1, "running": 1}}
    assert list(m["cost"]["per_line"]) == ["default"]
    late = metrics(ledger, since=date(2026, 1, 7))
    assert late["artifacts"] == 4  # C, D, E, F
    assert late["throughput"]["published"] == 0
    assert late["cost"]["per_published_usd"] is None
    assert late["first_pass_yield"]["rate"] is None
    assert late["rework"] == {"rate": 0.0, "artifacts": 0, "started": 2, "events": 0}
    assert late["contract_violations"] == {"rate": 1.0, "violations": 1, "handoffs": 0}
    assert late["self_play"]["rate"] == 0.0
    per = {a["artifact"]: a for a in metrics(ledger, per_artifact=True)["per_artifact"]}
    a = per[history["ids"]["A"]]
    assert (a["state"], a["end_to_end_s"], a["first_pass_verified"], a["adopted"]) == (
        "closed", 12 * H, True, True)
    assert a["stage_lead_s"] == {"scout": 2 * H, "build": 4 * H, "verify": H,
                                 "package": 2 * H, "measure": 3 * H}


def test_cli_json_is_the_same_numbers_and_tables_render(history: dict[str, Any]) -> None:
    root = history["root"]
    runner = CliRunner()
    result = runner.invoke(main, ["metrics", "--json", "--repo", str(root)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == metrics(history["ledger"])
    result = runner.invoke(main, ["metrics", "--line", "default", "--since", "2026-01-05",
                                  "--repo", str(root)])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Factory metrics (line default, since 2026-01-05): 5 artifact(s)" in out
    for needle in ("first-pass yield", "50.0%", "rework rate", "25.0%", "$0.4600",
                   "2026-W03", "5.0h", "6.1d", "self-play share", "factory_maintenance"):
        assert needle in out, needle
    bad = runner.invoke(main, ["metrics", "--line", "nope", "--repo", str(root)])
    assert bad.exit_code == 4 and "unknown line 'nope'" in bad.output


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 90) is None
    assert percentile([5.0], 90) == 5.0
    assert percentile([float(x) for x in range(1, 11)], 90) == 9.0
    assert percentile([float(x) for x in range(1, 12)], 90) == 10.0


def test_self_play_rule(ledger: Ledger, tmp_path: Path) -> None:
    root = ledger.repo.root
    (root / "gptme.toml").write_text('[agent]\nname = "Bob"\n')
    cfg = ledger.config.model_copy(update={"self_names": ["bob-the-builder"]})
    ledger.__dict__["config"] = cfg
    names = ledger_self_names(ledger)
    assert is_self_play(["@bob", "Factory", "bob-the-builder", " the  agent "], names)
    assert not is_self_play(["bob", "erik"], names)
    assert not is_self_play([], names)
    result = CliRunner().invoke(main, ["intake", "Tune my own prompts", "--demand", "self",
                                       "--consumer", "bob", "--accept", "x", "--json",
                                       "--repo", str(root)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["self_play"] is True
