"""The line engine: stages, gates and people — the public API for moving an artifact.

Every mutation reads the chain under the ledger's writer lock, replays it, checks that the
new event is legal (replay.apply on a copy), and appends it as one commit. Gates that run
commands do so *outside* the lock and re-check, under the lock, that the chain tip did not
move meanwhile (a compare-and-swap on the tip), so a long test run never blocks other
artifacts' writers and a concurrent advance is detected, not lost.

How an event is checked and appended lives in transitions.py; how a cell's handoff is
accepted or refused lives in handoffs.py (`submit` is re-exported here, so `engine` stays the
one module callers use).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import FactoryError, IllegalTransition, LedgerConflict, UsageError
from ..ledger import runtime
from ..ledger.records import Budget, parse_cell_id
from ..ledger.store import Ledger, StoredRecord
from .gates import GateOutcome, evaluate, handoff_model
from .handoffs import parse_handoff, submit
from .transitions import MAX_TEXT, clip, current_stage, load, record_event

__all__ = [
    "MAX_TEXT", "AdvanceResult", "StartedStage", "advance", "clip", "close",
    "finish", "load", "parse_handoff", "record_cell_finished", "record_cell_spawned",
    "record_published", "review", "start_stage", "submit",
]


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


# -- stages -----------------------------------------------------------------------------


def start_stage(
    ledger: Ledger, artifact: str, *, by: str | None = None, force: bool = False
) -> StartedStage:
    """Start the artifact's current stage and issue the cell id allowed to hand off for it."""
    with ledger.locked():
        chain, view = load(ledger, artifact)
        stage = current_stage(view)
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
                record_event(ledger, chain, view, {"kind": "attempts_exhausted", "stage": stage.name,
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
        record_event(ledger, chain, view, payload, by)
        return StartedStage(artifact, stage.name, stage.role, cell, used + 1, retry_note, base)


# -- handoffs ---------------------------------------------------------------------------


# -- gates ------------------------------------------------------------------------------


def advance(ledger: Ledger, artifact: str, *, by: str | None = None) -> AdvanceResult:
    """Evaluate the current stage's gate on its handoff and record the verdict."""
    with ledger.locked():
        chain, view = load(ledger, artifact)
        stage = current_stage(view)
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
            ev = record_event(ledger, chain, view, {"kind": "gate_passed", "state": stage.produces,
                                               "notes": outcome.notes, **gate_fields}, by)
            result.events.append(ev.path)
            if stage.approval:
                ev = record_event(ledger, chain, view, {"kind": "approval_requested",
                                                   "stage": stage.name}, by)
                result.events.append(ev.path)
        else:
            summary = clip(outcome.failure_summary or "; ".join(outcome.reasons))
            ev = record_event(ledger, chain, view, {"kind": "gate_failed",
                                               "reasons": [clip(r) for r in outcome.reasons],
                                               "failure_summary": summary, **gate_fields}, by)
            result.events.append(ev.path)
            target = stage
            if outcome.rework_to and outcome.rework_to != stage.name:
                ev = record_event(ledger, chain, view, {"kind": "rework", "from_stage": stage.name,
                                                   "to_stage": outcome.rework_to,
                                                   "retry_note": summary}, by)
                result.events.append(ev.path)
                target = ledger.config.stage(view.intake.line, outcome.rework_to)
            used = view.attempts.get(target.name, 0)
            if used >= target.attempts:
                ev = record_event(ledger, chain, view, {"kind": "attempts_exhausted",
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
        stage = current_stage(view)
        return record_event(ledger, chain, view, {"kind": "reviewed", "stage": stage.name,
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
        return record_event(ledger, chain, view, payload, by)


def finish(ledger: Ledger, artifact: str, kind: str, reason: str, *,
           by: str | None = None) -> StoredRecord:
    """Reject or abandon an artifact, with a reason."""
    if kind not in ("rejected", "abandoned"):
        raise FactoryError(f"unknown final kind {kind!r}")
    if not reason.strip():
        raise FactoryError(f"say why the artifact is {kind} (a reason is required)")
    with ledger.locked():
        chain, view = load(ledger, artifact)
        return record_event(ledger, chain, view, {"kind": kind, "reason": reason}, by)


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
    from ..ledger.store import sha256

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
        return record_event(ledger, chain, view, payload, by, extra_files={brief_path: brief})


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
        stored = record_event(ledger, chain, view, payload, by)
        stage = view.stage
        if stage is not None and view.status == "pending" and not view.is_final:
            used = view.attempts.get(stage.name, 0)
            if used >= stage.attempts:
                record_event(ledger, chain, view, {"kind": "attempts_exhausted", "stage": stage.name,
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
        return record_event(ledger, chain, view, {"kind": "published", "target": target,
                                             "where": where, "commit": commit}, by,
                       extra_files)
