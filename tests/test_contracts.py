"""Handoff contracts: the models, their JSON Schemas and the YAML a handoff produces (snapshots).

Snapshot files live in tests/snapshots/. A test compares against its file and fails with a
diff; `UPDATE_SNAPSHOTS=1 pytest tests/test_contracts.py` (re)writes them, so a format change
is a reviewed diff of those files.
"""

from __future__ import annotations

import difflib
import json
import os
import secrets
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from gptme_factory.cli import main
from gptme_factory.errors import InvalidHandoff
from gptme_factory.ledger import runtime
from gptme_factory.ledger.config import BUILTIN_ROLES, default_config
from gptme_factory.ledger.contracts import (
    BUILTIN_CONTRACTS,
    BuilderPatch,
    OutcomeReport,
    ScoutMemo,
    VerifierReport,
    build_contract,
)
from gptme_factory.ledger.gitstore import GitRepo
from gptme_factory.ledger.records import format_validation_error
from gptme_factory.ledger.schemas import schema_for
from gptme_factory.ledger.store import Ledger
from gptme_factory.ledger.stream import sha256
from gptme_factory.line import engine
from gptme_factory.line.intake import intake as new_intake
from gptme_factory.line.verify import verify_ledger
from tests.conftest import git

SNAPSHOTS = Path(__file__).parent / "snapshots"
FIXED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def assert_snapshot(name: str, actual: str) -> None:
    """Compare `actual` with tests/snapshots/NAME; UPDATE_SNAPSHOTS=1 writes it instead."""
    path = SNAPSHOTS / name
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(actual.encode("utf-8"))
        return
    if not path.exists():
        pytest.fail(f"snapshot {path} is missing: run with UPDATE_SNAPSHOTS=1 to write it")
    expected = path.read_bytes().decode("utf-8")
    if expected != actual:
        diff = "".join(difflib.unified_diff(
            expected.splitlines(keepends=True), actual.splitlines(keepends=True),
            f"snapshots/{name}", "actual"))
        pytest.fail(f"snapshot {name} changed (UPDATE_SNAPSHOTS=1 accepts it):\n{diff}")


# -- JSON Schemas ---------------------------------------------------------------------------

@pytest.mark.parametrize("role", sorted(BUILTIN_ROLES))
def test_schema_of_each_role_is_pinned(role: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["schema", role, "--repo", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert_snapshot(f"schema-{role}.json", result.stdout)
    schema = json.loads(result.stdout)
    contract = BUILTIN_ROLES[role].contract
    assert schema["title"] == BUILTIN_CONTRACTS[contract].__name__
    assert schema["properties"]["kind"]["const"] == contract
    assert schema["additionalProperties"] is False


def test_snapshot_files_match_the_roles() -> None:
    pinned = {p.name for p in SNAPSHOTS.glob("schema-*.json")}
    assert pinned == {f"schema-{r}.json" for r in BUILTIN_ROLES}


@pytest.mark.parametrize("contract", sorted(BUILTIN_CONTRACTS))
def test_every_field_is_documented_and_strict(contract: str) -> None:
    schema = BUILTIN_CONTRACTS[contract].model_json_schema()
    objects = [(contract, schema), *schema.get("$defs", {}).items()]
    for name, obj in objects:
        assert obj.get("additionalProperties") is False, f"{name} must forbid extra fields"
        assert obj.get("description"), f"{name} has no description"
        for field, prop in obj["properties"].items():
            assert prop.get("description"), f"{name}.{field} has no description for the brief"
    assert list(schema["properties"])[:3] == ["kind", "schema_version", "artifact"]


def test_schema_by_contract_name_equals_schema_by_role() -> None:
    for role, cfg in BUILTIN_ROLES.items():
        assert schema_for(cfg.contract) == schema_for(role)


def test_schema_unknown_role_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["schema", "wizard", "--repo", str(tmp_path)])
    assert result.exit_code == 2
    assert "unknown role or contract 'wizard'" in result.stderr
    assert "analyst, builder, packager, reproducer, scout, verifier" in result.stderr


# -- the YAML a handoff produces ------------------------------------------------------------

FIXED_CONFIG = """\
kind: factory_config
schema_version: 1
lines:
  default:
    stages:
    - {name: scout, role: scout, produces: designed}
    - {name: build, role: builder, gate: patch, produces: patched}
"""


@pytest.fixture
def fixed_ledger(brain: Path, monkeypatch: pytest.MonkeyPatch) -> Ledger:
    """A ledger whose every byte is reproducible: own config, fixed clock, ids and actor."""
    (brain / "factory").mkdir()
    (brain / "factory" / "factory.yaml").write_text(FIXED_CONFIG)
    (brain / "factory" / ".gitignore").write_text("/.runtime/\n")
    git(brain, "add", "factory")
    git(brain, "commit", "-q", "-m", "factory")
    monkeypatch.setattr(secrets, "token_hex", lambda n: "ab" * n)
    monkeypatch.setenv("GPTME_FACTORY_ACTOR", "tester")
    return Ledger(GitRepo.discover(brain), clock=lambda: FIXED)


def memo(aid: str) -> dict[str, Any]:
    return {
        "kind": "scout_memo", "artifact": aid,
        "files": [{"path": "sample/durations.py", "why": "parse_duration lives here"}],
        "constraints": ["keep the public signature"],
        "approach": "Parse (number, unit) pairs with a regex\nand sum them.",
        "verification_plan": [{"command": "cd sample && python -m pytest -q",
                               "proves": "old and new behaviour", "criteria": [0],
                               "cwd": "."}],
        "risks": ["'5m: 30s' style input: colons must survive YAML"],
        "criteria": [{"criterion": 0, "plan": "new test_compound"}],
    }


def test_handoff_submitted_yaml_is_pinned(fixed_ledger: Ledger) -> None:
    aid = new_intake(fixed_ledger, title="Accept compound durations", demand="gh:acme/bot#17",
                              consumers=["erik"], acceptance=["2m30s parses"]).artifact
    assert aid == "accept-compound-durations-ababab"
    started = engine.start_stage(fixed_ledger, aid)
    assert started.cell == f"{aid}.scout.abab"
    stored = engine.submit(fixed_ledger, started.cell, json.dumps(memo(aid)))
    raw = (fixed_ledger.repo.root / stored.path).read_bytes()
    assert_snapshot("handoff_submitted.yaml", raw.decode("utf-8"))
    name = Path(stored.path).name
    assert name == f"0002-handoff_submitted-{sha256(raw)[:12]}.yaml"
    # Submitted as JSON, recorded as YAML: the handoff survives the round trip unchanged.
    assert stored.event.handoff == memo(aid) | {"schema_version": 1}
    assert [str(p) for p in verify_ledger(fixed_ledger)] == []


# -- validation errors as `field: problem` lines ----------------------------------------------

def problems(model: type[Any], data: dict[str, Any]) -> list[str]:
    with pytest.raises(ValidationError) as err:
        model.model_validate(data)
    return format_validation_error(err.value)


def test_validation_errors_are_field_problem_lines() -> None:
    bad = {**memo("a-1"), "colour": "blue", "files": [{"path": ""}],
           "criteria": [{"criterion": "first", "plan": "p"}]}
    del bad["approach"]
    assert problems(ScoutMemo, bad) == [
        "files.0.path: String should have at least 1 character",
        "files.0.why: required field is missing",
        "approach: required field is missing",
        "criteria.0.criterion: Input should be a valid integer, unable to parse string as an integer",
        "colour: unknown field (remove it, or check its spelling)",
    ]


def test_cross_field_rules_name_their_field() -> None:
    report = {"artifact": "a-1", "commit": "abc", "verdict": "fail",
              "checks": [{"command": "pytest", "exit_code": 1}],
              "criteria": [{"criterion": 0, "verdict": "fail", "evidence": "pytest"}]}
    assert problems(VerifierReport, report) == ["failure_summary: required when verdict is fail"]
    assert VerifierReport.model_validate({**report, "failure_summary": "x"}).verdict == "fail"
    outcome = {"artifact": "a-1", "adoption": [{"consumer": "erik", "status": "used",
                                                 "evidence": "said so"}]}
    expected = ["terminal: name a successor artifact or declare terminal (done is not a handoff)"]
    assert problems(OutcomeReport, outcome) == expected
    assert problems(OutcomeReport, {**outcome, "terminal": "   "}) == expected
    assert OutcomeReport.model_validate({**outcome, "successor": "next-1"}).terminal is None


def test_submit_reports_field_problem_lines(fixed_ledger: Ledger) -> None:
    aid = new_intake(fixed_ledger, title="t", demand="d", consumers=["erik"],
                              acceptance=["a", "b"]).artifact
    cell = engine.start_stage(fixed_ledger, aid).cell
    bad = memo(aid)
    del bad["files"]
    with pytest.raises(InvalidHandoff) as err:
        engine.submit(fixed_ledger, cell, bad)
    # every problem in one round: the contract's and the intake's (criterion 1 is not covered)
    assert err.value.problems == ["files: required field is missing",
                                  "criteria: no entry for acceptance criteria [1] (b)"]
    assert str(err.value).splitlines() == [
        f"invalid handoff from {cell} (attempt 1; fix these fields and submit again, "
        "2 attempt(s) left):",
        *(f"  {p}" for p in err.value.problems),
    ]
    with pytest.raises(InvalidHandoff) as err:
        engine.submit(fixed_ledger, cell, memo(aid))  # valid, but misses criterion 1
    assert err.value.problems == ["criteria: no entry for acceptance criteria [1] (b)"]
    checked = {**memo(aid), "criteria": [{"criterion": 0, "plan": "x"}, {"criterion": 1,
                                                                        "plan": "y"}]}
    assert engine.submit(fixed_ledger, cell, checked, check=True) is None  # valid: recorded
    assert runtime.repairs(fixed_ledger, cell) == 2  # nothing, and spent no repair
    with pytest.raises(InvalidHandoff) as err:
        engine.submit(fixed_ledger, cell, b"kind: scout_memo\nfiles: [unclosed\n")
    assert err.value.problems[0].startswith("malformed YAML (line 3, column 1)")
    assert "contract_violation was recorded" in str(err.value)


# -- the models ------------------------------------------------------------------------------

def test_contracts_are_strict_frozen_and_versioned() -> None:
    m = ScoutMemo.model_validate(memo("a-1"))
    with pytest.raises(ValidationError):
        m.approach = "other"
    assert problems(ScoutMemo, {**memo("a-1"), "schema_version": 2})[0].startswith(
        "schema_version: Input should be 1")
    assert problems(ScoutMemo, {**memo("a-1"), "kind": "builder_patch"})[0].startswith("kind: ")
    assert ScoutMemo.model_validate({k: v for k, v in memo("a-1").items() if k != "kind"}) == m


def test_builder_patch_defaults_and_limits() -> None:
    patch = BuilderPatch.model_validate({"artifact": "a-1", "status": "blocked", "branch": "b",
                                         "base": "x", "head": "y", "summary": "cannot"})
    assert patch.files_changed == [] and patch.claims == [] and patch.notes_for_verifier == ""
    assert problems(BuilderPatch, {**patch.model_dump(), "status": "done"}) == [
        "status: Input should be 'success' or 'blocked'"]
    assert problems(BuilderPatch, {**patch.model_dump(), "summary": "x" * 20_001}) == [
        "summary: String should have at most 20000 characters"]


def test_custom_contract_extends_a_builtin() -> None:
    model = build_contract("deep_memo", "scout_memo", {
        "risk_level": ("string", "low, medium or high", True),
        "effort_days": ("number", "estimated effort", False),
        "owners": ("list[string]", "who reviews", False),
    })
    assert issubclass(model, ScoutMemo)
    assert build_contract("deep_memo", "scout_memo", {
        "risk_level": ("string", "low, medium or high", True),
        "effort_days": ("number", "estimated effort", False),
        "owners": ("list[string]", "who reviews", False),
    }) is model  # cached: submit and advance rebuild it on every call
    ok = model.model_validate({**memo("a-1"), "kind": "deep_memo", "risk_level": "low"})
    assert ok.kind == "deep_memo" and ok.effort_days is None  # type: ignore[attr-defined]
    assert problems(model, {**memo("a-1"), "kind": "deep_memo"}) == [
        "risk_level: required field is missing"]
    assert problems(model, {**memo("a-1"), "risk_level": "", "owners": ["a", ""]}) == [
        "kind: Input should be 'deep_memo'",
        "risk_level: String should have at least 1 character",
        "owners.1: String should have at least 1 character",
    ]
    schema = model.model_json_schema()
    assert schema["properties"]["risk_level"]["description"] == "low, medium or high"
    assert "risk_level" in schema["required"] and "effort_days" not in schema["required"]
    assert schema["description"] == "Custom contract deep_memo, extending scout_memo."


def test_default_config_roles_name_builtin_contracts() -> None:
    cfg = default_config()
    for st in cfg.line("default").stages:
        assert cfg.contract_model(cfg.contract_name(st)) in BUILTIN_CONTRACTS.values()
