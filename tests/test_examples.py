"""Example handoffs: each one validates, answers its intake, and is what `schema --example` shows."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from click.testing import CliRunner

from gptme_factory.cli import main
from gptme_factory.ledger import yamlio
from gptme_factory.ledger.config import BUILTIN_ROLES, parse_config
from gptme_factory.ledger.contracts import BUILTIN_CONTRACTS
from gptme_factory.ledger.examples import example
from gptme_factory.ledger.records import Intake
from gptme_factory.line.gates import consistency_problems

INTAKE = Intake(artifact="fix-it-abc123", title="t", demand="d", consumers=["erik", "ops"],
                acceptance=["one", "two", "three"], created_at=datetime.now(timezone.utc),
                created_by="t")


@pytest.mark.parametrize("name", sorted(BUILTIN_CONTRACTS))
def test_every_builtin_example_validates_and_answers_its_intake(name: str) -> None:
    data = example(None, name, artifact=INTAKE.artifact, criteria=3, consumers=INTAKE.consumers)
    model = BUILTIN_CONTRACTS[name].model_validate(data)
    assert model.artifact == INTAKE.artifact
    assert consistency_problems(data, name, INTAKE) == []
    # and the default example is valid on its own, before a cell makes it its own
    BUILTIN_CONTRACTS[name].model_validate(example(None, name))


def test_custom_contract_examples_carry_the_extra_fields() -> None:
    cfg = parse_config({
        "lines": {"default": {"stages": [{"name": "scout", "role": "scout",
                                          "contract": "scout_plus", "produces": "designed"}]}},
        "contracts": {"scout_plus": {"extends": "scout_memo", "fields": {
            "estimate_hours": {"type": "number", "description": "how long"},
            "owners": {"type": "list[string]", "description": "who"}}}},
    }, "factory.yaml")
    data = example(cfg, "scout_plus", artifact="a-1")
    model = cfg.contract_model("scout_plus").model_validate(data)
    assert model.kind == "scout_plus" and data["estimate_hours"] == 1.0


def test_schema_example_prints_valid_yaml_for_every_role() -> None:
    for role, spec in BUILTIN_ROLES.items():
        result = CliRunner().invoke(main, ["schema", role, "--example"])
        assert result.exit_code == 0, result.output
        data = yamlio.loads(result.output.encode(), "example")
        BUILTIN_CONTRACTS[spec.contract].model_validate(data)
