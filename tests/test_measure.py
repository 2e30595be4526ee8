"""Outcome measurement end to end: intake → … → published → measured (→ closed), adoption
read from (fake) gh, the outcome report put through the measure stage, cost rolled up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from gptme_factory.cli import main
from gptme_factory.errors import IllegalTransition, InvalidRecord, UsageError
from gptme_factory.ledger.store import Ledger, short_id
from gptme_factory.line import engine
from gptme_factory.line.verify import verify_ledger
from gptme_factory.outcomes.measure import measure, parse_adoption
from gptme_factory.outcomes.packaging import publish
from tests import fake_gh
from tests.conftest import git
from tests.flow_helpers import add_origin, sample_artifact, to_package

PR_URL = "https://github.com/acme/deploy-bot/pull/18"
ISSUE_CALL = ["issue", "view", "17", "--repo", "acme/deploy-bot", "--json",
              "state,stateReason,closedAt,url"]


def run(repo: Path, *args: str) -> Result:
    return CliRunner().invoke(main, [*args, "--repo", str(repo)])


def finish_cells(ledger: Ledger, aid: str) -> None:
    """Record each cell's end with a known measured cost (as the cell runner would)."""
    _, view = engine.load(ledger, aid)
    for i, cell in enumerate(view.cells):
        engine.record_cell_finished(ledger, cell, outcome="handoff", wall_s=10.0 * (i + 1),
                                    tokens_in=1000, tokens_out=100 * (i + 1),
                                    cost_usd=0.01 if i % 2 == 0 else None)


def published(ledger: Ledger, target: str = "note") -> str:
    aid = sample_artifact(ledger)
    to_package(ledger, aid)
    finish_cells(ledger, aid)  # scout, build, verify, package: 4 cells
    publish(ledger, aid, target=target)
    assert engine.advance(ledger, aid).passed
    return aid


def test_intake_to_closed_with_gh_evidence_and_cost(
    ledger: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    gh = fake_gh.install(tmp_path, monkeypatch)
    gh.respond_json("issue view", {"state": "CLOSED", "stateReason": "COMPLETED",
                                   "closedAt": "2026-01-09T10:00:00Z",
                                   "url": "https://github.com/acme/deploy-bot/issues/17"})
    aid = published(ledger)
    root = ledger.repo.root

    result = run(root, "measure", aid, "--adoption", "erik=used:confirmed in chat",
                 "--lesson", "the scout memo's check caught the regression",
                 "--terminal", "the demand is met", "--close")

    assert result.exit_code == 0, result.output
    assert gh.calls() == [["auth", "status"], ISSUE_CALL]
    assert result.output == (
        f"{aid}: measured -> closed (closed)\n"
        "  deploy-bot maintainers: used  "
        "(issue acme/deploy-bot#17 closed as completed at 2026-01-09T10:00:00Z)\n"
        "  erik: used  (confirmed in chat)\n"
        "  lesson: the scout memo's check caught the regression\n"
        "  cost: 5 cell(s), 4000 tokens in / 1000 out, $0.0200, 100 s wall\n"
    )
    chain, view = engine.load(ledger, aid)
    assert view.state == "closed" and view.closed.terminal == "the demand is met"
    assert view.handoffs["measure"] == {
        "schema_version": 1, "artifact": aid, "kind": "outcome_report",
        "adoption": [
            {"consumer": "deploy-bot maintainers", "status": "used",
             "evidence": "issue acme/deploy-bot#17 closed as completed at 2026-01-09T10:00:00Z"},
            {"consumer": "erik", "status": "used", "evidence": "confirmed in chat"},
        ],
        "lessons": ["the scout memo's check caught the regression"],
        "successor": None, "terminal": "the demand is met",
    }
    kinds = [r.event.kind for r in chain.events[-5:]]
    assert kinds == ["stage_started", "handoff_submitted", "gate_passed", "cell_finished", "closed"]
    cell = chain.events[-4].event.cell
    assert cell.startswith(f"{aid}.measure.")
    assert chain.events[-2].event.reason == (
        "measured in person with `gptme-factory measure`")
    assert [str(p) for p in verify_ledger(ledger)] == []
    # the whole measurement (start, handoff, gate, the cell's end, the close) is one commit
    subjects = git(root, "log", "--format=%s", "-2").splitlines()
    assert subjects[0] == f"factory({short_id(aid)}): measure passed -> measured; closed: terminal"
    assert git(root, "show", "--name-only", "--format=", "HEAD").count("factory/artifacts") == 5


def test_merged_pr_counts_as_use_and_json_output(
    ledger: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    gh = fake_gh.install(tmp_path, monkeypatch)
    add_origin(ledger, tmp_path / "origin.git")
    gh.respond("pr create", stdout=f"{PR_URL}\n")
    gh.respond_json("issue view", {"state": "OPEN", "stateReason": None, "closedAt": None})
    gh.respond_json("pr view", {"state": "MERGED", "mergedAt": "2026-01-08T12:00:00Z",
                                "url": PR_URL})
    aid = published(ledger, target="pr")
    other = sample_artifact(ledger, title="Document compound durations")
    result = run(ledger.repo.root, "measure", aid, "--successor", other, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert gh.calls()[-2:] == [ISSUE_CALL, ["pr", "view", PR_URL, "--json", "state,mergedAt,url"]]
    evidence = (f"issue acme/deploy-bot#17 is open; PR {PR_URL} merged at 2026-01-08T12:00:00Z")
    assert data["report"]["adoption"] == [
        {"consumer": "deploy-bot maintainers", "status": "used", "evidence": evidence},
        {"consumer": "erik", "status": "used", "evidence": evidence},
    ]
    assert data["report"]["successor"] == other
    assert (data["recorded"], data["state"], data["closed"]) == (True, "measured", False)
    total = data["cost"]["total"]
    assert 100.0 <= total.pop("wall_s") < 160.0  # 4 cells' 100 s plus the measuring itself
    assert total == {"cells": 5, "unmeasured": 0, "cells_without_cost": 3, "tokens_in": 4000,
                     "tokens_out": 1000, "tokens": 5000, "usd": 0.02}
    assert [c["stage"] for c in data["cost"]["cells"]] == [
        "scout", "build", "verify", "package", "measure"]
    engine.close(ledger, aid, successor=other)
    assert [str(p) for p in verify_ledger(ledger)] == []


def test_not_planned_issue_and_gh_unavailable(
    ledger: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    gh = fake_gh.install(tmp_path, monkeypatch)
    gh.respond_json("issue view", {"state": "CLOSED", "stateReason": "NOT_PLANNED"})
    aid = published(ledger)
    res = measure(ledger, aid, terminal="nobody wants it", dry_run=True)
    assert [a["status"] for a in res.report["adoption"]] == ["not_used", "not_used"]
    assert res.report["adoption"][0]["evidence"] == "issue acme/deploy-bot#17 closed as not planned"
    assert not res.recorded and engine.load(ledger, aid)[1].state == "published"
    gh.logged_out()
    res = measure(ledger, aid, terminal="nobody asked yet")
    assert [a["status"] for a in res.report["adoption"]] == ["unknown", "unknown"]
    assert res.report["adoption"][1]["evidence"] == (
        "not checked: `gh auth status` says gh is not logged in (run `gh auth login`)")
    assert res.recorded and res.state == "measured"
    assert [str(p) for p in verify_ledger(ledger)] == []


def test_measure_refusals(ledger: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_gh.install(tmp_path, monkeypatch).logged_out()
    early = sample_artifact(ledger)
    with pytest.raises(IllegalTransition, match="measuring comes after publishing"):
        measure(ledger, early, terminal="x")
    aid = published(ledger)
    with pytest.raises(UsageError, match="'bob', who is not a consumer"):
        measure(ledger, aid, adoption=[("bob", "used", "")], terminal="x")
    with pytest.raises(InvalidRecord, match="name a successor artifact or declare terminal"):
        measure(ledger, aid)
    with pytest.raises(UsageError, match="CONSUMER=STATUS"):
        parse_adoption("erik:used")
    assert parse_adoption("deploy-bot maintainers=not-used:went elsewhere") == (
        "deploy-bot maintainers", "not_used", "went elsewhere")
    # an analyst cell is running: a person does not submit over it, the cell itself may
    cell = engine.start_stage(ledger, aid).cell
    with pytest.raises(IllegalTransition, match=f"analyst cell {cell} is measuring"):
        measure(ledger, aid, terminal="x")
    res = measure(ledger, aid, cell=cell, use_gh=False, terminal="done",
                  adoption=[("erik", "used", "ran the new flag"),
                            ("deploy-bot maintainers", "unknown", "")])
    assert res.recorded and res.cell == cell
    assert res.facts == ["every consumer's adoption was stated"]
    assert res.report["adoption"][0]["evidence"] == "stated by the person recording the outcome"
    with pytest.raises(IllegalTransition, match="already measured"):
        measure(ledger, aid, terminal="again")
