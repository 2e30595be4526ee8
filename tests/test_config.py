"""factory.yaml: custom roles, lines and contracts; a custom line with human approval; bad keys."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from gptme_factory.cli import main
from gptme_factory.demo.sample import (
    CHECK_COMMAND,
    DEMAND,
    FIXED_SOURCE,
    REPRO_COMMAND,
    verification_plan,
    write_sample_project,
)
from gptme_factory.errors import (
    ConfigError,
    HandoffRefused,
    IllegalTransition,
    InvalidHandoff,
    InvalidRecord,
)
from gptme_factory.ledger.config import (
    FactoryConfig,
    LineConfig,
    StageConfig,
    default_config,
    parse_config,
)
from gptme_factory.ledger.contracts import ScoutMemo
from gptme_factory.ledger.store import Ledger
from gptme_factory.line import engine
from gptme_factory.line.intake import intake as new_intake
from gptme_factory.line.verify import verify_ledger
from tests.conftest import git
from tests.test_engine import build, report

IMPORT_CHECK = "cd sample && python -c 'import durations'"
CUSTOM = {
    "kind": "factory_config",
    "schema_version": 1,
    "default_line": "reviewed",
    "lines": {
        "reviewed": {
            "description": "design, build with a person's approval, verify",
            "stages": [
                {"name": "design", "role": "designer", "produces": "designed"},
                {"name": "build", "role": "builder", "gate": "patch", "produces": "patched",
                 "approval": True, "attempts": 2},
                {"name": "verify", "role": "verifier", "gate": "evidence",
                 "produces": "verified", "checks": [IMPORT_CHECK], "check_timeout_s": 120},
            ],
        },
        "signoff": {
            "stages": [{"name": "design", "role": "designer", "produces": "approved",
                        "approval": True, "attempts": 2}],
        },
    },
    "roles": {
        "designer": {"contract": "design_memo", "description": "Plans and rates the risk.",
                     "read_only": True, "gptodo_type": "plan"},
    },
    "contracts": {
        "design_memo": {
            "extends": "scout_memo",
            "fields": {
                "risk_level": {"type": "string", "description": "low, medium or high"},
                "effort_days": {"type": "number", "description": "estimated effort",
                                "required": False},
            },
        },
    },
}


def write_config(ledger: Ledger, data: dict[str, Any]) -> Ledger:
    (ledger.dir / "factory.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    git(ledger.repo.root, "commit", "-qam", "custom factory config")
    return Ledger.open(ledger.repo.root)


@pytest.fixture
def custom(ledger: Ledger) -> Ledger:
    root = ledger.repo.root
    git(root, "add", *write_sample_project(root))
    git(root, "commit", "-q", "-m", "add sample project")
    return write_config(ledger, CUSTOM)


def design_memo(aid: str, **extra: Any) -> dict[str, Any]:
    return {
        "kind": "design_memo", "artifact": aid, "risk_level": "low",
        "files": [{"path": "sample/durations.py", "why": "parse_duration lives here"}],
        "approach": "parse (number, unit) pairs with a regex and sum them",
        "verification_plan": verification_plan(),
        "criteria": [{"criterion": 0, "plan": "new test_compound"},
                     {"criterion": 1, "plan": "existing tests"}],
        **extra,
    }


def clean(ledger: Ledger) -> None:
    assert [str(p) for p in verify_ledger(ledger)] == []


def where(ledger: Ledger, aid: str) -> tuple[str, str | None, str]:
    _, view = engine.load(ledger, aid)
    return view.state, view.stage.name if view.stage else None, view.status


# -- loading ------------------------------------------------------------------------------------

def test_custom_roles_lines_and_contracts_load(custom: Ledger) -> None:
    cfg = custom.config
    assert cfg.default_line == "reviewed"
    assert [s.name for s in cfg.line("reviewed").stages] == ["design", "build", "verify"]
    design = cfg.stage("reviewed", "design")
    assert cfg.contract_name(design) == "design_memo"
    model = cfg.contract_model("design_memo")
    assert issubclass(model, ScoutMemo) and model is cfg.contract_model("design_memo")
    assert cfg.role("designer").gptodo_type == "plan" and cfg.role("builder").read_only is False
    with pytest.raises(ConfigError, match="unknown line 'nope': factory.yaml declares reviewed, signoff"):
        cfg.line("nope")
    with pytest.raises(ConfigError, match="line 'reviewed' has no stage 'package'"):
        cfg.stage("reviewed", "package")


def test_schema_of_a_custom_role(custom: Ledger) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["schema", "designer", "--repo", str(custom.repo.root)])
    assert result.exit_code == 0, result.output
    schema = json.loads(result.stdout)
    assert schema["title"] == "design_memo"
    assert schema["properties"]["kind"]["const"] == "design_memo"
    assert "risk_level" in schema["required"] and "effort_days" not in schema["required"]
    again = runner.invoke(main, ["schema", "design_memo", "--repo", str(custom.repo.root)])
    assert again.stdout == result.stdout
    outside = runner.invoke(main, ["schema", "designer", "--repo", str(custom.repo.root.parent)])
    assert outside.exit_code == 2 and "unknown role or contract 'designer'" in outside.stderr


def test_default_config_round_trips() -> None:
    cfg = default_config()
    assert parse_config(cfg.model_dump(mode="json"), "factory.yaml") == cfg
    assert [s.gate for s in cfg.line("default").stages] == [
        "plan", "patch", "evidence", "package", "outcome"]


# -- a custom line with human approval -----------------------------------------------------------

@pytest.mark.slow
def test_artifact_runs_through_a_custom_line_with_approval(custom: Ledger) -> None:
    led = custom
    aid = new_intake(led, **DEMAND).artifact
    assert led.read(aid).root.record.line == "reviewed"

    d = engine.start_stage(led, aid)
    assert (d.stage, d.role) == ("design", "designer")
    head = led.repo.head()
    with pytest.raises(HandoffRefused, match="must hand over a design_memo, not a scout_memo"):
        engine.submit(led, d.cell, {**design_memo(aid), "kind": "scout_memo"})
    with pytest.raises(InvalidHandoff) as err:
        engine.submit(led, d.cell, {k: v for k, v in design_memo(aid).items() if k != "risk_level"})
    assert err.value.problems == ["risk_level: required field is missing"]
    assert led.repo.head() == head
    engine.submit(led, d.cell, design_memo(aid, effort_days=0.5))
    assert engine.advance(led, aid).passed
    assert where(led, aid) == ("designed", "build", "pending")

    # build #1 passes its gate, then waits for a person, who asks for changes
    b = engine.start_stage(led, aid)
    engine.submit(led, b.cell, build(led, b, FIXED_SOURCE, add_test=False) | {
        "files_changed": ["sample/durations.py"]})
    res = engine.advance(led, aid)
    assert res.passed and len(res.events) == 2  # gate_passed + approval_requested
    assert where(led, aid) == ("designed", "build", "awaiting_approval")
    with pytest.raises(IllegalTransition, match="waits for a person's review"):
        engine.advance(led, aid)
    with pytest.raises(IllegalTransition, match="awaiting_approval"):
        engine.start_stage(led, aid)
    engine.review(led, aid, "erik", "request_changes", "add a test for 1h2m3s")
    assert where(led, aid) == ("designed", "build", "pending")

    # build #2 gets the review as its retry note; approved this time
    b2 = engine.start_stage(led, aid)
    assert b2.attempt == 2 and b2.retry_note == "review by erik: add a test for 1h2m3s"
    engine.submit(led, b2.cell, build(led, b2, FIXED_SOURCE))
    head = engine.advance(led, aid).outcome.commit
    engine.review(led, aid, "erik", "approve", "looks right")
    assert where(led, aid) == ("patched", "verify", "pending")

    # verify runs the line's check and the design memo's plan itself, on the approved commit
    v = engine.start_stage(led, aid)
    rep = report(aid, head, 0, "pass")
    with pytest.raises(InvalidHandoff):
        engine.submit(led, v.cell, {**rep, "verdict": "fail"})  # fail needs a summary
    rep["checks"].append({"command": IMPORT_CHECK, "exit_code": 0})
    engine.submit(led, v.cell, rep)
    res = engine.advance(led, aid)
    assert res.passed, res.reasons
    assert [c.command for c in res.outcome.checks] == [IMPORT_CHECK, REPRO_COMMAND, CHECK_COMMAND]
    assert where(led, aid) == ("verified", None, "done")
    engine.close(led, aid, terminal="demand met")
    _, view = engine.load(led, aid)
    assert view.state == "closed" and not view.first_pass
    clean(led)
    events = [m.kind for m in led.read(aid).payloads()]
    assert events.count("reviewed") == 2 and events.count("approval_requested") == 2


def signoff_artifact(led: Ledger) -> tuple[str, str]:
    aid = new_intake(led, **DEMAND, line="signoff").artifact
    s = engine.start_stage(led, aid)
    engine.submit(led, s.cell, design_memo(aid))
    res = engine.advance(led, aid)
    assert res.passed and res.state == "idea"  # passing the gate is not approval
    return aid, s.cell


def test_review_approve_passes_the_stage(custom: Ledger) -> None:
    aid, _ = signoff_artifact(custom)
    assert where(custom, aid) == ("idea", "design", "awaiting_approval")
    engine.review(custom, aid, "erik", "approve")
    assert where(custom, aid) == ("approved", None, "done")
    with pytest.raises(IllegalTransition, match="every stage of .* has passed"):
        engine.review(custom, aid, "erik", "approve")
    engine.close(custom, aid, terminal="signed off")
    clean(custom)


def test_review_request_changes_reruns_the_stage(custom: Ledger) -> None:
    aid, first = signoff_artifact(custom)
    engine.review(custom, aid, "erik", "request_changes", "rate the risk higher")
    assert where(custom, aid) == ("idea", "design", "pending")
    with pytest.raises(HandoffRefused, match="is finished"):
        engine.submit(custom, first, design_memo(aid))
    s = engine.start_stage(custom, aid)
    assert s.attempt == 2 and s.retry_note == "review by erik: rate the risk higher"
    engine.submit(custom, s.cell, design_memo(aid, risk_level="high"))
    assert engine.advance(custom, aid).passed
    engine.review(custom, aid, "erik", "approve")
    _, view = engine.load(custom, aid)
    assert view.state == "approved" and view.handoffs["design"]["risk_level"] == "high"
    clean(custom)


def test_review_reject_ends_the_artifact(custom: Ledger) -> None:
    aid, _ = signoff_artifact(custom)
    engine.review(custom, aid, "erik", "reject", "not worth it")
    _, view = engine.load(custom, aid)
    assert view.state == "rejected" and view.final_reason == "rejected in review by erik"
    with pytest.raises(IllegalTransition, match="is rejected: nothing more can happen"):
        engine.start_stage(custom, aid)
    clean(custom)


def test_review_arguments_are_validated(custom: Ledger) -> None:
    aid, _ = signoff_artifact(custom)
    head = custom.repo.head()
    with pytest.raises(InvalidRecord) as err:
        engine.review(custom, aid, "erik", "maybe")
    assert err.value.problems == [
        "decision: Input should be 'approve', 'request_changes' or 'reject'"]
    with pytest.raises(InvalidRecord, match="reviewer: String should have at least 1 character"):
        engine.review(custom, aid, "", "approve")
    assert custom.repo.head() == head
    other = new_intake(custom, **DEMAND, line="signoff").artifact
    with pytest.raises(IllegalTransition, match="the stage must be awaiting_approval"):
        engine.review(custom, other, "erik", "approve")
    clean(custom)


# -- invalid config names the key -------------------------------------------------------------

def with_changes(path: str, value: Any) -> dict[str, Any]:
    """CUSTOM with the value at dotted `path` replaced (None deletes it)."""
    data = json.loads(json.dumps(CUSTOM))
    *parents, last = path.split(".")
    node: Any = data
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is None:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return data


STAGES = "lines.reviewed.stages"
BAD_CONFIGS = [
    ("unknown-role", with_changes(f"{STAGES}.0.role", "wizard"),
     f"{STAGES}.0.role: unknown role 'wizard' (analyst, builder, designer, packager, "
     "reproducer, scout, verifier)"),
    ("unknown-role-contract", with_changes("roles.designer.contract", "nope"),
     "roles.designer.contract: unknown contract 'nope'"),
    ("unknown-stage-contract", with_changes(f"{STAGES}.0.contract", "nope"),
     f"{STAGES}.0.contract: unknown contract 'nope'"),
    ("duplicate-stage", with_changes(f"{STAGES}.1.name", "design"),
     f"{STAGES}.1.name: duplicate stage 'design'"),
    ("bad-extends", with_changes("contracts.design_memo.extends", "memo"),
     "contracts.design_memo.extends: unknown contract 'memo' (scout_memo, builder_patch, "
     "reproduction, verifier_report, release_package, outcome_report)"),
    ("extends-custom", with_changes("contracts.design_memo.extends", "design_memo"),
     "contracts.design_memo.extends: unknown contract 'design_memo'"),
    ("typo-stage-field", with_changes(f"{STAGES}.0.gaet", "patch"),
     f"{STAGES}.0.gaet: unknown field (remove it, or check its spelling)"),
    ("typo-top-level", with_changes("line", {}),
     "line: unknown field (remove it, or check its spelling)"),
    ("typo-field-spec", with_changes("contracts.design_memo.fields.risk_level.requierd", False),
     "contracts.design_memo.fields.risk_level.requierd: unknown field"),
    ("bad-field-type", with_changes("contracts.design_memo.fields.risk_level.type", "str"),
     "contracts.design_memo.fields.risk_level.type: Input should be 'string', 'integer', "
     "'number', 'boolean' or 'list[string]'"),
    ("missing-produces", with_changes(f"{STAGES}.0.produces", None),
     f"{STAGES}.0.produces: required field is missing"),
    ("bad-gate", with_changes(f"{STAGES}.0.gate", "vibes"), f"{STAGES}.0.gate: Input should be"),
    ("attempts-out-of-range", with_changes(f"{STAGES}.0.attempts", 0),
     f"{STAGES}.0.attempts: Input should be greater than or equal to 1"),
    ("no-stages", with_changes(f"{STAGES}", []),
     f"{STAGES}: List should have at least 1 item"),
    ("bad-stage-name", with_changes(f"{STAGES}.0.name", "Design Stage"),
     f"{STAGES}.0.name: names start with a lowercase letter"),
    ("default-line", with_changes("default_line", "fast"),
     "default_line: 'fast' is not one of lines"),
    ("shadow-builtin", with_changes("contracts.scout_memo", {"extends": "scout_memo"}),
     "contracts.scout_memo: shadows a built-in contract"),
    ("field-redefined", with_changes("contracts.design_memo.fields.approach",
                                     {"type": "string", "description": "again"}),
     "contracts.design_memo.fields.approach: already defined by scout_memo"),
    ("field-reserved", with_changes("contracts.design_memo.fields.json",
                                    {"type": "string", "description": "clash"}),
     "contracts.design_memo.fields.json: reserved name"),
    ("produces-reserved", with_changes(f"{STAGES}.0.produces", "closed"),
     f"{STAGES}.0.produces: 'closed' is reserved"),
    ("gate-contract-mismatch", with_changes(f"{STAGES}.1.role", "designer"),
     f"{STAGES}.1.gate: a patch gate needs a builder_patch handoff, but the stage's contract "
     "is design_memo"),
    ("package-without-verify", with_changes(f"{STAGES}.2", {
        "name": "package", "role": "packager", "gate": "package", "produces": "published"}),
     f"{STAGES}.2.gate: a package gate after a build stage needs an evidence (verify) stage"),
    ("wrong-schema-version", with_changes("schema_version", 2), "schema_version: Input should be 1"),
]


@pytest.mark.parametrize(("data", "needle"), [c[1:] for c in BAD_CONFIGS],
                         ids=[c[0] for c in BAD_CONFIGS])
def test_invalid_config_names_the_key(data: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(data, "factory/factory.yaml")
    message = str(err.value)
    assert message.startswith("invalid factory config:\n")
    assert f"  factory/factory.yaml: {needle}" in message, message


def test_custom_config_is_valid_as_written() -> None:
    assert isinstance(parse_config(CUSTOM, "factory.yaml"), FactoryConfig)


def test_invalid_config_in_the_repo_is_reported_everywhere(ledger: Ledger) -> None:
    aid = new_intake(ledger, title="t", demand="d", consumers=["c"], acceptance=["a"]).artifact
    led = write_config(ledger, with_changes(f"{STAGES}.0.role", "wizard"))
    with pytest.raises(ConfigError, match=r"factory/factory.yaml: lines.reviewed.stages.0.role"):
        led.config  # noqa: B018
    head = led.repo.head()
    result = CliRunner().invoke(main, ["start", aid, "--repo", str(led.repo.root)])
    assert result.exit_code == 4 and led.repo.head() == head
    assert "factory/factory.yaml: lines.reviewed.stages.0.role: unknown role 'wizard'" in result.stderr
    problems = verify_ledger(led)
    assert len(problems) == 1 and problems[0].where == "factory/factory.yaml"
    assert "unknown role 'wizard'" in problems[0].message


def test_intake_on_an_unknown_line_writes_nothing(custom: Ledger) -> None:
    head = custom.repo.head()
    with pytest.raises(ConfigError, match="unknown line 'default'"):
        new_intake(custom, **DEMAND, line="default")
    assert custom.repo.head() == head


def test_config_file_path_for_custom_roles(custom: Ledger, tmp_path: Path) -> None:
    """A role's read_only flag and gptodo type come from the config, not the built-ins."""
    data = with_changes("roles.builder", {"contract": "builder_patch", "description": "b",
                                          "read_only": False, "gptodo_type": "general"})
    cfg = parse_config(data, "factory.yaml")
    assert cfg.role("builder").gptodo_type == "general"  # a custom role overrides a built-in
    assert cfg.role("scout").gptodo_type == "explore"


def test_init_installs_the_builtin_bugfix_line(brain: Path) -> None:
    ledger, changed = Ledger.init(brain, lines=["bugfix"])
    assert changed == ["factory/.gitignore", "factory/factory.yaml"]
    line = ledger.config.line("bugfix")
    assert [(s.name, s.gate) for s in line.stages] == [
        ("scout", "plan"), ("reproduce", "reproduce"), ("build", "fix"),
        ("verify", "evidence"), ("package", "package"), ("measure", "outcome")]
    assert line.evidence_mode() == "fail-to-pass"
    assert ledger.config.line("default").evidence_mode() == "fail-to-pass"
    assert Ledger.init(brain, lines=["bugfix"])[1] == []  # idempotent
    with pytest.raises(ConfigError, match="unknown built-in line 'hotfix': the built-in lines "
                                          "are default, bugfix"):
        Ledger.init(brain, lines=["hotfix"])


def test_init_adds_a_builtin_line_to_an_existing_config(ledger: Ledger) -> None:
    assert "bugfix" not in ledger.config.lines
    again, changed = Ledger.init(ledger.repo.root, lines=["bugfix"])
    assert changed == ["factory/factory.yaml"]
    assert set(again.config.lines) == {"default", "bugfix"}


def test_a_line_without_a_build_needs_no_failing_check() -> None:
    line = LineConfig(stages=[StageConfig(name="write", role="scout", gate="plan",
                                          produces="designed")])
    assert line.evidence_mode() == "pass-to-pass"
    assert LineConfig(stages=line.stages, evidence="fail-to-pass").evidence_mode() == \
        "fail-to-pass"
