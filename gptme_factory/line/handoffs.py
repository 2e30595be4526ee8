"""Handoffs: a cell hands over its typed result for the stage it was issued.

`submit` accepts a handoff only from the cell the factory issued for the artifact's current
stage, for that artifact and that stage's contract; anything else is refused
(HandoffRefused) and recorded nowhere. An invalid handoff comes back as `field: problem`
lines — every problem in one round, the contract's and the intake's alike — and is counted
(runtime, not a commit); past the stage's repair budget a `contract_violation` event is
committed and the artifact waits for a person. `check=True` validates the same way but
records nothing and spends no repair (`submit --check`). On a shared ledger an accepted
handoff is pushed at once, a builder's branch first (claims.after_handoff).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from ..errors import HandoffRefused, InvalidHandoff, InvalidRecord
from ..ledger import runtime, yamlio
from ..ledger.config import StageConfig, base_contract
from ..ledger.contracts import BUILTIN_CONTRACTS, Contract
from ..ledger.kinds import ArtifactChain, StoredEvent
from ..ledger.records import (
    ContractViolation,
    HandoffSubmitted,
    format_validation_error,
    parse_cell_id,
)
from ..ledger.store import Ledger
from . import claims
from .gates import consistency_problems
from .replay import ArtifactView
from .transitions import clip, load, record


def parse_handoff(raw: bytes | str | Mapping[str, Any], source: str = "handoff") -> dict[str, Any]:
    """A handoff given as YAML/JSON text or a mapping, as a plain dict."""
    if isinstance(raw, Mapping):
        return dict(raw)
    data = raw.encode("utf-8") if isinstance(raw, str) else raw
    return yamlio.loads_any(data, source)


def submit(
    ledger: Ledger, cell: str, handoff: bytes | str | Mapping[str, Any], *,
    by: str | None = None, check: bool = False,
) -> StoredEvent | None:
    """Validate a cell's handoff and record it (`check`: validate only; returns None then).

    See the module docstring for the rules.
    """
    try:
        artifact, stage_name = parse_cell_id(cell)
    except ValueError as exc:
        raise HandoffRefused(
            f"{exc}; use the cell id from your brief; nothing was recorded") from None
    if not (ledger.artifact_dir(artifact) / "intake.yaml").is_file():
        raise HandoffRefused(
            f"cell {cell} names artifact {artifact}, which does not exist; nothing was recorded")
    with ledger.locked():
        chain, view = load(ledger, artifact)
        stage = _refuse_unless_current(view, cell, stage_name)
        contract = ledger.config.contract_name(stage)
        try:
            data = parse_handoff(handoff, f"handoff from {cell}")
        except InvalidRecord as exc:
            raise _repair(ledger, chain, view, stage, cell, exc.problems, by, check) from None
        kind = data.get("kind")
        if kind != contract and isinstance(kind, str) and (
            kind in BUILTIN_CONTRACTS or kind in ledger.config.contracts
        ):
            raise HandoffRefused(
                f"cell {cell} is a {stage.role} for stage {stage.name}: it must hand over a "
                f"{contract}, not a {kind}; nothing was recorded"
            )
        if data.get("artifact") not in (None, artifact):
            raise HandoffRefused(
                f"the handoff names artifact {data.get('artifact')!r}, but cell {cell} works on "
                f"{artifact}; nothing was recorded"
            )
        model = ledger.config.contract_model(contract)
        problems: list[str] = []
        parsed: Contract | None = None
        try:
            parsed = model.model_validate(data)
        except ValidationError as exc:
            problems += format_validation_error(exc)
        problems += consistency_problems(data, base_contract(ledger.config, contract) or "",
                                         view.intake)
        if problems or parsed is None:
            raise _repair(ledger, chain, view, stage, cell, problems, by, check)
        if check:
            return None
        note = runtime.last_progress(ledger, cell)
        event = HandoffSubmitted(stage=stage.name, cell=cell, contract=contract,
                                 handoff=parsed.model_dump(mode="json"),
                                 last_progress=note[0] if note else None)
        stored = record(ledger, chain, view, event, by=by or cell)
    if not ledger.in_transaction:
        claims.after_handoff(ledger, stored)
    return stored


def _refuse_unless_current(view: ArtifactView, cell: str, stage_name: str) -> StageConfig:
    aid = view.intake.artifact
    if view.is_final:
        raise HandoffRefused(f"{aid} is {view.state}; no handoff is accepted; nothing was recorded")
    stage = view.stage
    if stage is None or stage.name != stage_name:
        current = stage.name if stage else "none (line complete)"
        raise HandoffRefused(
            f"cell {cell} is for stage {stage_name}, but the current stage of {aid} is "
            f"{current}; nothing was recorded"
        )
    if view.cell != cell:
        known = view.cells.get(cell)
        why = "is finished" if known else "was never issued"
        raise HandoffRefused(
            f"cell {cell} {why}; the stage's current cell is {view.cell or 'none'} "
            f"(stage {stage.name} is {view.status}); nothing was recorded"
        )
    if view.status != "running":
        raise HandoffRefused(
            f"cell {cell} already handed off (stage {stage.name} is {view.status}); "
            "one handoff per cell; nothing was recorded"
        )
    return stage


def _repair(ledger: Ledger, chain: ArtifactChain, view: ArtifactView, stage: StageConfig,
            cell: str, problems: list[str], by: str | None, check: bool) -> InvalidHandoff:
    """The error for an invalid handoff; counts the repair (past the budget: a violation)."""
    if check:
        used = runtime.repairs(ledger, cell)
        return InvalidHandoff(cell, problems, f"checked only: nothing was recorded and no "
                              f"repair was spent ({stage.repairs - used + 1} attempt(s) left)")
    count = runtime.bump_repairs(ledger, cell)
    budget = stage.repairs
    if count > budget:
        errors = [clip(p) for p in problems[:20]] or ["invalid handoff"]
        record(ledger, chain, view, ContractViolation(stage=stage.name, cell=cell,
                                                      attempts=count, errors=errors),
               by=by or cell)
        return InvalidHandoff(
            cell, problems,
            f"attempt {count}; repair budget of {budget} spent — a contract_violation was "
            "recorded and the artifact waits for a person")
    left = budget - count + 1
    return InvalidHandoff(
        cell, problems,
        f"attempt {count}; fix these fields and submit again, {left} attempt(s) left")
