"""The line engine: the only way events enter an artifact's chain.

Every mutation reads the chain under the ledger's writer lock, replays it, checks that the
new event is legal (replay.apply on a copy), and appends it as one commit. Gates that run
commands do so *outside* the lock and re-check, under the lock, that the chain tip did not
move meanwhile (a compare-and-swap on the tip), so a long test run never blocks other
artifacts' writers and a concurrent advance is detected, not lost.

Handoffs: `submit` accepts a handoff only from the cell the factory issued for the current
stage, for the right artifact and contract; anything else is refused and recorded nowhere.
Invalid handoffs are counted (runtime) and after the stage's repair budget a
`contract_violation` event is committed.
"""

from __future__ import annotations

import copy
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

from pydantic import ValidationError

from . import runtime, yamlio
from .config import StageConfig
from .contracts import BUILTIN_CONTRACTS, Contract
from .errors import (
    FactoryError,
    HandoffRefused,
    IllegalTransition,
    InvalidHandoff,
    InvalidRecord,
    LedgerConflict,
    UsageError,
)
from .gates import GateOutcome, consistency_problems, evaluate, handoff_model
from .ledger import Chain, Ledger, StoredRecord
from .records import EVENT_ADAPTER, Budget, format_validation_error, parse_cell_id
from .replay import ArtifactView, apply, replay

# Longest free text an event holds (records.Text): longer summaries and notes are clipped.
MAX_TEXT = 20_000
_CLIPPED = "\n[... clipped]"


def clip(text: str, limit: int = MAX_TEXT) -> str:
    """`text`, cut to at most `limit` characters with a visible marker."""
    return text if len(text) <= limit else text[: limit - len(_CLIPPED)] + _CLIPPED


@dataclass
class StartedStage:
    """What `start_stage` issued."""

    artifact: str
    stage: str
    role: str
    cell: str
    attempt: int
    retry_note: str
    base_commit: str | None


@dataclass
class AdvanceResult:
    """What `advance` decided and recorded."""

    artifact: str
    stage: str
    passed: bool
    state: str
    reasons: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    outcome: GateOutcome | None = None


def load(ledger: Ledger, artifact: str) -> tuple[Chain, ArtifactView]:
    """Read and replay an artifact (strict)."""
    chain = ledger.read(artifact)
    if chain.problems:
        raise LedgerConflict(
            f"artifact {artifact} has ledger problems: {chain.problems[0]} "
            "(run `gptme-factory verify`); nothing was recorded"
        )
    line = ledger.config.line(chain.intake.record.line)  # type: ignore[union-attr]
    return chain, replay(chain.intake.record, line, chain.models())  # type: ignore[arg-type]


def _append(
    ledger: Ledger,
    chain: Chain,
    view: ArtifactView,
    payload: dict[str, Any],
    by: str | None,
    extra_files: Mapping[str, bytes] | None = None,
) -> StoredRecord:
    """Append (legality already checked) and fold the event into `view`."""
    stored = ledger.append(chain, payload, by=by, extra_files=extra_files)
    apply(view, stored.record)  # type: ignore[arg-type]
    return stored


def _check_legal(view: ArtifactView, ledger: Ledger, chain: Chain, payload: dict[str, Any]) -> None:
    """Raise InvalidRecord or IllegalTransition unless `payload` replays on `view`."""
    data = {
        "schema_version": 1, "artifact": chain.artifact, "seq": len(chain.events) + 1,
        "parent": chain.tip.digest, "at": ledger.clock(), "by": "check", **payload,
    }
    try:
        event = EVENT_ADAPTER.validate_python(data)
    except ValidationError as exc:
        # A bad argument (an unknown review decision, an empty reviewer, an overlong reason):
        # a FactoryError naming the field, never a traceback.
        tag = f"{payload['kind']}."  # the union's tag leads each location: drop it
        lines = [p.removeprefix(tag) for p in format_validation_error(exc)]
        raise InvalidRecord(f"{payload['kind']} event", lines) from None
    apply(copy.deepcopy(view), event)


def _record(ledger: Ledger, chain: Chain, view: ArtifactView, payload: dict[str, Any],
            by: str | None, extra_files: Mapping[str, bytes] | None = None) -> StoredRecord:
    _check_legal(view, ledger, chain, payload)
    return _append(ledger, chain, view, payload, by, extra_files)


# -- stages -----------------------------------------------------------------------------


def start_stage(
    ledger: Ledger, artifact: str, *, by: str | None = None, force: bool = False
) -> StartedStage:
    """Start the artifact's current stage and issue the cell id allowed to hand off for it."""
    with ledger.locked():
        chain, view = load(ledger, artifact)
        stage = _current(view)
        if view.status == "blocked" and not force:
            raise IllegalTransition(
                f"{artifact} is blocked ({view.blocked_reason}); a person decides: "
                "`gptme-factory start --force` to retry, or abandon/reject it"
            )
        if view.status not in ("pending", "blocked"):
            raise IllegalTransition(
                f"stage {stage.name} of {artifact} is {view.status}"
                + (f" (cell {view.cell})" if view.cell else "")
                + ": collect or advance it before starting another cell"
            )
        used = view.attempts.get(stage.name, 0)
        if used >= stage.attempts and not force:
            if view.status != "blocked":
                _record(ledger, chain, view, {"kind": "attempts_exhausted", "stage": stage.name,
                                              "attempts": used}, by)
            raise IllegalTransition(
                f"stage {stage.name} of {artifact} used its {stage.attempts} attempts; "
                "it waits for a person (`start --force` to retry anyway)"
            )
        cell = f"{artifact}.{stage.name}.{secrets.token_hex(2)}"
        base = ledger.repo.head()
        retry_note = clip(view.retry_note)
        payload = {"kind": "stage_started", "stage": stage.name, "role": stage.role,
                   "cell": cell, "attempt": used + 1, "retry_note": retry_note,
                   "base_commit": base}
        _record(ledger, chain, view, payload, by)
        return StartedStage(artifact, stage.name, stage.role, cell, used + 1, retry_note, base)


def _current(view: ArtifactView) -> StageConfig:
    aid = view.intake.artifact
    if view.is_final:
        raise IllegalTransition(f"{aid} is {view.state}: nothing more can happen to it")
    stage = view.stage
    if stage is None:
        raise IllegalTransition(
            f"every stage of {aid} has passed: close it with "
            "`gptme-factory close ARTIFACT --successor ID` or `--terminal REASON`"
        )
    return stage


# -- handoffs ---------------------------------------------------------------------------


def parse_handoff(raw: bytes | str | Mapping[str, Any], source: str = "handoff") -> dict[str, Any]:
    """A handoff given as YAML/JSON text or a mapping, as a plain dict."""
    if isinstance(raw, Mapping):
        return dict(raw)
    data = raw.encode("utf-8") if isinstance(raw, str) else raw
    return yamlio.loads_any(data, source)


def submit(
    ledger: Ledger, cell: str, handoff: bytes | str | Mapping[str, Any], *, by: str | None = None
) -> StoredRecord:
    """Validate a cell's handoff and record it. See the module docstring for the rules."""
    try:
        artifact, stage_name = parse_cell_id(cell)
    except ValueError as exc:
        raise HandoffRefused(
            f"{exc}; use the cell id from your brief; nothing was recorded") from None
    if not (ledger.artifacts_dir / artifact / "intake.yaml").is_file():
        raise HandoffRefused(
            f"cell {cell} names artifact {artifact}, which does not exist; nothing was recorded")
    with ledger.locked():
        chain, view = load(ledger, artifact)
        stage = _refuse_unless_current(view, cell, stage_name)
        contract = ledger.config.contract_name(stage)
        try:
            data = parse_handoff(handoff, f"handoff from {cell}")
        except InvalidRecord as exc:
            _count_repair(ledger, chain, view, stage, cell, exc.problems, by)
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
        try:
            parsed: Contract = model.model_validate(data)
        except ValidationError as exc:
            _count_repair(ledger, chain, view, stage, cell, format_validation_error(exc), by)
        problems = consistency_problems(parsed, view.intake)
        if problems:
            _count_repair(ledger, chain, view, stage, cell, problems, by)
        note = runtime.last_progress(ledger, cell)
        payload = {"kind": "handoff_submitted", "stage": stage.name, "cell": cell,
                   "contract": contract, "handoff": parsed.model_dump(mode="json"),
                   "last_progress": note[0] if note else None}
        return _record(ledger, chain, view, payload, by or cell)


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


def _count_repair(ledger: Ledger, chain: Chain, view: ArtifactView, stage: StageConfig,
                  cell: str, problems: list[str], by: str | None) -> NoReturn:
    count = runtime.bump_repairs(ledger, cell)
    budget = stage.repairs
    if count > budget:
        errors = [clip(p) for p in problems[:20]] or ["invalid handoff"]
        _record(ledger, chain, view, {"kind": "contract_violation", "stage": stage.name,
                                      "cell": cell, "attempts": count, "errors": errors},
                by or cell)
        raise InvalidHandoff(
            cell, problems,
            f"attempt {count}; repair budget of {budget} spent — a contract_violation was "
            "recorded and the artifact waits for a person")
    left = budget - count + 1
    raise InvalidHandoff(
        cell, problems,
        f"attempt {count}; fix these fields and submit again, {left} attempt(s) left")


# -- gates ------------------------------------------------------------------------------


def advance(ledger: Ledger, artifact: str, *, by: str | None = None) -> AdvanceResult:
    """Evaluate the current stage's gate on its handoff and record the verdict."""
    with ledger.locked():
        chain, view = load(ledger, artifact)
        stage = _current(view)
        if view.status == "awaiting_approval":
            raise IllegalTransition(
                f"stage {stage.name} of {artifact} waits for a person's review: "
                f"`gptme-factory review {artifact} --approve|--request-changes|--reject`"
            )
        if view.status != "submitted":
            raise IllegalTransition(
                f"nothing to advance: stage {stage.name} of {artifact} is {view.status}"
                + ("; spawn or start a cell for it" if view.status == "pending" else "")
            )
        tip = chain.tip.digest
        cell = view.cell
        handoff = handoff_model(ledger, stage, view.handoffs[stage.name])
    outcome = evaluate(ledger, view, stage, handoff)  # may run commands: outside the lock
    if not outcome.passed and outcome.reasons == ["not published yet"]:
        raise IllegalTransition(
            f"{artifact} has a release package but it is not published yet: "
            f"run `gptme-factory package {artifact} --target pr|release|note`"
        )
    with ledger.locked():
        chain, view = load(ledger, artifact)
        if chain.tip.digest != tip:
            raise LedgerConflict(
                f"{artifact} changed while its {stage.name} gate ran; nothing was recorded: "
                "run advance again"
            )
        result = AdvanceResult(artifact, stage.name, outcome.passed, view.state,
                               outcome.reasons, [], outcome)
        gate_fields = {"stage": stage.name, "cell": cell, "gate": stage.gate,
                       "commit": outcome.commit, "tree": outcome.tree,
                       "checks": [c.model_dump(mode="json") for c in outcome.checks]}
        if outcome.passed:
            ev = _record(ledger, chain, view, {"kind": "gate_passed", "state": stage.produces,
                                               "notes": outcome.notes, **gate_fields}, by)
            result.events.append(ev.path)
            if stage.approval:
                ev = _record(ledger, chain, view, {"kind": "approval_requested",
                                                   "stage": stage.name}, by)
                result.events.append(ev.path)
        else:
            summary = clip(outcome.failure_summary or "; ".join(outcome.reasons))
            ev = _record(ledger, chain, view, {"kind": "gate_failed",
                                               "reasons": [clip(r) for r in outcome.reasons],
                                               "failure_summary": summary, **gate_fields}, by)
            result.events.append(ev.path)
            target = stage
            if outcome.rework_to and outcome.rework_to != stage.name:
                ev = _record(ledger, chain, view, {"kind": "rework", "from_stage": stage.name,
                                                   "to_stage": outcome.rework_to,
                                                   "retry_note": summary}, by)
                result.events.append(ev.path)
                target = ledger.config.stage(view.intake.line, outcome.rework_to)
            used = view.attempts.get(target.name, 0)
            if used >= target.attempts:
                ev = _record(ledger, chain, view, {"kind": "attempts_exhausted",
                                                   "stage": target.name, "attempts": used}, by)
                result.events.append(ev.path)
        result.state = view.state
        return result


# -- people -----------------------------------------------------------------------------


def review(ledger: Ledger, artifact: str, reviewer: str, decision: str, comments: str = "",
           *, by: str | None = None) -> StoredRecord:
    """Record a person's review of a stage awaiting approval."""
    with ledger.locked():
        chain, view = load(ledger, artifact)
        stage = _current(view)
        return _record(ledger, chain, view, {"kind": "reviewed", "stage": stage.name,
                                             "reviewer": reviewer, "decision": decision,
                                             "comments": comments}, by or reviewer)


def close(ledger: Ledger, artifact: str, *, successor: str | None = None,
          terminal: str | None = None, by: str | None = None) -> StoredRecord:
    """Close a finished artifact, naming its successor or declaring it terminal."""
    if bool(successor) == bool(terminal and terminal.strip()):
        raise FactoryError(
            "done is not a handoff: give exactly one of --successor ARTIFACT or --terminal REASON"
        )
    if successor:
        successor = ledger.resolve(successor)
        if successor == artifact:
            raise FactoryError("an artifact cannot be its own successor")
    with ledger.locked():
        chain, view = load(ledger, artifact)
        payload: dict[str, Any] = {"kind": "closed"}
        payload["successor" if successor else "terminal"] = successor or terminal
        return _record(ledger, chain, view, payload, by)


def finish(ledger: Ledger, artifact: str, kind: str, reason: str, *,
           by: str | None = None) -> StoredRecord:
    """Reject or abandon an artifact, with a reason."""
    if kind not in ("rejected", "abandoned"):
        raise FactoryError(f"unknown final kind {kind!r}")
    if not reason.strip():
        raise FactoryError(f"say why the artifact is {kind} (a reason is required)")
    with ledger.locked():
        chain, view = load(ledger, artifact)
        return _record(ledger, chain, view, {"kind": kind, "reason": reason}, by)


# -- cells and publishing (used by cells.py and packaging.py) ---------------------------


def _artifact_of(cell: str) -> str:
    try:
        return parse_cell_id(cell)[0]
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def record_cell_spawned(
    ledger: Ledger, cell: str, *, backend: str, budget: Budget, brief_path: str,
    brief: bytes, model: str | None = None, session: str | None = None,
    workdir: str | None = None, by: str | None = None,
) -> StoredRecord:
    """Record that a cell was launched; commits the brief alongside the event."""
    from .ledger import sha256

    artifact = _artifact_of(cell)
    with ledger.locked():
        chain, view = load(ledger, artifact)
        cv = view.cells.get(cell)
        if cv is None:
            raise IllegalTransition(
                f"cell {cell} was never issued for {artifact}: start the stage first "
                "(`gptme-factory start`), then spawn the cell it issues"
            )
        payload = {"kind": "cell_spawned", "cell": cell, "role": cv.role,
                   "backend": backend, "model": model, "budget": budget.model_dump(),
                   "brief": brief_path, "brief_digest": sha256(brief), "session": session,
                   "workdir": workdir}
        return _record(ledger, chain, view, payload, by, extra_files={brief_path: brief})


def record_cell_finished(
    ledger: Ledger, cell: str, *, outcome: str, wall_s: float, reason: str = "",
    exit_code: int | None = None, tokens_in: int | None = None, tokens_out: int | None = None,
    cost_usd: float | None = None, conversation: str | None = None, output_tail: str = "",
    by: str | None = None,
) -> StoredRecord:
    """Record a cell's end and measured cost; a cell without a handoff fails its attempt."""
    artifact = _artifact_of(cell)
    note = runtime.last_progress(ledger, cell)
    with ledger.locked():
        chain, view = load(ledger, artifact)
        payload = {"kind": "cell_finished", "cell": cell, "outcome": outcome, "reason": reason,
                   "exit_code": exit_code, "wall_s": round(wall_s, 3), "tokens_in": tokens_in,
                   "tokens_out": tokens_out, "cost_usd": cost_usd,
                   "conversation": conversation, "output_tail": output_tail[-8000:],
                   "last_progress": note[0] if note else None}
        stored = _record(ledger, chain, view, payload, by)
        stage = view.stage
        if stage is not None and view.status == "pending" and not view.is_final:
            used = view.attempts.get(stage.name, 0)
            if used >= stage.attempts:
                _record(ledger, chain, view, {"kind": "attempts_exhausted", "stage": stage.name,
                                              "attempts": used}, by)
        return stored


def record_published(ledger: Ledger, artifact: str, *, target: str, where: str,
                     commit: str | None = None, by: str | None = None,
                     extra_files: Mapping[str, bytes] | None = None) -> StoredRecord:
    """Record where a release package was published (the package gate needs it).

    `extra_files` (the rendered package, under the ledger dir) are committed with the event.
    """
    with ledger.locked():
        chain, view = load(ledger, artifact)
        return _record(ledger, chain, view, {"kind": "published", "target": target,
                                             "where": where, "commit": commit}, by,
                       extra_files)
