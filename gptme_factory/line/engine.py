"""The line engine: stages, gates and people — the public API for moving an artifact.

Every mutation reads the chain under the ledger's writer lock, replays it, checks that each
new event is legal (transitions.record), and records it; what one call decides lands as one
commit (a gate verdict with the rework it triggers, a start with the attempt budget it
exhausts). Gates that run commands do so *outside* the lock: `judge` reads the chain and runs
the gate, writing nothing; `record_verdict` then re-checks, under the lock, that the chain tip
did not move meanwhile (a compare-and-swap on the tip), so a long test run never blocks
other artifacts' writers and a concurrent advance is detected, not lost. `advance` is both.

How an event is checked and recorded lives in transitions.py; how a cell's handoff is accepted
or refused lives in handoffs.py (`submit` is re-exported here, so `engine` stays the one module
callers use).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from ..envcheck import EnvironmentFailure
from ..errors import (
    AwaitingReview,
    IllegalTransition,
    LedgerConflict,
    NothingToAdvance,
    NotPublished,
    UsageError,
)
from ..ledger import runtime
from ..ledger.config import StageConfig
from ..ledger.kinds import StoredEvent
from ..ledger.records import (
    Abandoned,
    ApprovalRequested,
    AttemptsExhausted,
    Budget,
    CellFinished,
    CellSpawned,
    Closed,
    ContractFixed,
    EnvironmentFailed,
    GateFailed,
    GatePassed,
    Published,
    Rejected,
    Reviewed,
    Rework,
    StageStarted,
    parse_cell_id,
)
from ..ledger.store import Ledger
from ..ledger.stream import sha256
from ..targets.bases import base_commit, refresh
from ..targets.registry import of_intake
from . import claims
from .evaluate import evaluate
from .gates import GateOutcome, handoff_model
from .handoffs import parse_handoff, submit
from .transitions import MAX_TEXT, clip, current_stage, load, record

__all__ = [
    "MAX_TEXT", "AdvanceResult", "Judgement", "StartedStage", "advance", "clip", "close",
    "finish", "judge", "load", "parse_handoff", "record_cell_environment", "record_cell_finished",
    "record_cell_spawned", "record_published", "record_verdict", "refresh_base", "review",
    "start_stage", "submit",
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
class Judgement:
    """A gate's verdict on the current stage's handoff, not yet recorded."""

    artifact: str
    stage: StageConfig
    cell: str | None
    tip: str  # the chain tip the gate judged: recording refuses if it moved
    outcome: GateOutcome


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

    def headline(self) -> str:
        """The verdict in a line: `ID: gate build passed -> state patched`."""
        verdict = "passed" if self.passed else "FAILED"
        return f"{self.artifact}: gate {self.stage} {verdict} -> state {self.state}"


# -- stages -----------------------------------------------------------------------------


def refresh_base(ledger: Ledger, artifact: str) -> None:
    """Fetch the target's base from its remote, before a stage that starts from it.

    Call it before taking the ledger lock (it talks to the network): `start_stage` then
    fixes the freshly fetched commit. Nothing for the brain, or once a build has passed —
    then, on a shared ledger, the built commit is fetched if another clone built it.
    """
    _, view = load(ledger, artifact)
    target = of_intake(ledger, view.intake)
    built = view.branch_commit() is not None  # a reproduction or a build passed: fixed
    if not target.is_brain and not built and not view.is_final:
        refresh(target)
    if built and not view.is_final:
        claims.fetch_build(ledger, view)  # built on another clone of a shared ledger


def start_stage(
    ledger: Ledger, artifact: str, *, by: str | None = None, force: bool = False,
    take_over: bool = False,
) -> StartedStage:
    """Start the artifact's current stage and issue the cell id allowed to hand off for it.

    On a shared ledger the start is a claim (claims.py): it lands only once its commit is on
    the remote; ClaimLost when another clone holds the stage. `take_over` takes over a
    claim whose lease expired with no handoff (its holder is gone).
    """
    remote = claims.claim_remote(ledger)
    if take_over and remote is None:
        raise UsageError(
            "--take-over is for a shared ledger, whose claims carry leases: set `sync: "
            "{remote: origin}` in factory.yaml (an offline claim has no lease to expire)")
    outer = ledger.open_transaction
    alone = outer is None or not (outer.events or outer.roots)
    for attempt in range(1, claims.CLAIM_ATTEMPTS + 1):
        try:
            with ledger.transaction() as tx:
                try:
                    started = _start(ledger, artifact, by=by, force=force,
                                     take_over=take_over, shared=remote is not None)
                except IllegalTransition:
                    if remote is not None and tx.events:  # a takeover, a block: theirs too
                        claims.publish(ledger, remote)
                    raise
                if remote is not None:
                    claims.publish(ledger, remote)
                return started
        except claims.StreamMoved:
            # Another clone wrote to this artifact first; its commits are in now. Alone in
            # the transaction, start over on the new state (which may say who holds it).
            if not alone or attempt == claims.CLAIM_ATTEMPTS:
                raise claims.lost(ledger, artifact) from None
    raise AssertionError("unreachable")  # pragma: no cover


def _start(ledger: Ledger, artifact: str, *, by: str | None, force: bool, take_over: bool,
           shared: bool) -> StartedStage:
    chain, view = load(ledger, artifact)
    stage = current_stage(view)
    now = ledger.clock()
    if view.status == "running" and shared:
        record(ledger, chain, view, claims.check_running(ledger, view, take_over=take_over,
                                                         now=now), by=by)
    if view.status == "blocked" and view.blocked_by == "environment_gate" and not force:
        raise IllegalTransition(
            f"{artifact} waits for its {stage.name} gate ({view.blocked_reason}); once the "
            f"environment is fixed, `gptme-factory advance {artifact}` runs the gate again"
        )
    if view.status == "blocked" and view.blocked_by != "environment" and not force:
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
            record(ledger, chain, view, AttemptsExhausted(stage=stage.name, attempts=used),
                   by=by)
        raise IllegalTransition(
            f"stage {stage.name} of {artifact} used its {stage.attempts} attempts; "
            "it waits for a person (`start --force` to retry anyway)"
        )
    cell = f"{artifact}.{stage.name}.{secrets.token_hex(2)}"
    # In the artifact's target (the brain: its HEAD); fixed here for the whole stage. After
    # a passed reproduction, the build starts on top of it.
    base = (view.branch_commit(("reproduce",))
            or base_commit(of_intake(ledger, view.intake)))
    retry_note = clip(view.retry_note)
    lease = dict(host=ledger.host,
                 lease_until=now + timedelta(seconds=claims.lease_s(ledger))) if shared else {}
    record(ledger, chain, view, StageStarted(
        stage=stage.name, role=stage.role, cell=cell, attempt=used + 1,
        retry_note=retry_note, base_commit=base, **lease), by=by)
    return StartedStage(artifact, stage.name, stage.role, cell, used + 1, retry_note, base)


# -- gates ------------------------------------------------------------------------------


def judge(ledger: Ledger, artifact: str) -> Judgement:
    """Run the current stage's gate on its handoff; records nothing (the checks run unlocked)."""
    with ledger.locked():
        chain, view = load(ledger, artifact)
        stage = current_stage(view)
        if view.status == "awaiting_approval":
            raise AwaitingReview(
                f"stage {stage.name} of {artifact} waits for a person's review: "
                f"`gptme-factory review {artifact} --approve|--request-changes|--reject`"
            )
        if not (view.status == "submitted" or view.blocked_by == "environment_gate"):
            raise NothingToAdvance(
                f"nothing to advance: stage {stage.name} of {artifact} is {view.status}"
                + ("; spawn or start a cell for it" if view.status == "pending" else "")
            )
        tip = chain.tip
        cell = view.cell
        handoff = handoff_model(ledger, stage, view.handoffs[stage.name])
    outcome = evaluate(ledger, view, stage, handoff)  # may run commands: outside the lock
    return Judgement(artifact, stage, cell, tip, outcome)


def record_verdict(ledger: Ledger, judgement: Judgement, *,
                   by: str | None = None) -> AdvanceResult:
    """Record a judgement's verdict and what it triggers, if the artifact did not move since.

    NotPublished when the package gate waits for a publication (nothing is recorded then);
    LedgerConflict when another writer moved the artifact while the gate ran.
    """
    aid, stage, outcome = judgement.artifact, judgement.stage, judgement.outcome
    if outcome.unpublished:
        raise NotPublished(
            f"{aid} has a release package but it is not published yet: "
            f"run `gptme-factory package {aid} --target pr|release|branch|note`"
        )
    with ledger.transaction():
        chain, view = load(ledger, aid)
        if chain.tip != judgement.tip:
            raise LedgerConflict(
                f"{aid} changed while its {stage.name} gate ran; nothing was recorded: "
                "run advance again"
            )
        result = AdvanceResult(aid, stage.name, outcome.passed, view.state, outcome.reasons,
                               [], outcome)
        cell = judgement.cell or ""
        events: list[StoredEvent] = []
        if outcome.environment is not None:
            env = outcome.environment
            events.append(record(ledger, chain, view, EnvironmentFailed(
                stage=stage.name, cell=cell, what="check", failure=env.kind, cause=env.cause,
                fix=env.fix, command=clip(outcome.environment_command or "", 500) or None),
                by=by))
        elif outcome.passed:
            if outcome.contract is not None:  # fixed before anything is built, with the verdict
                events.append(record(ledger, chain, view, ContractFixed(
                    stage=stage.name, cell=cell, evidence=view.line.evidence_mode(),
                    checks=outcome.contract, base_commit=outcome.commit), by=by))
            events.append(record(ledger, chain, view, GatePassed(
                stage=stage.name, cell=cell, gate=stage.gate, state=stage.produces,
                commit=outcome.commit, tree=outcome.tree, checks=outcome.checks,
                notes=[clip(n, 2000) for n in outcome.notes], target=outcome.target,
                evidence=outcome.evidence), by=by))
            if stage.approval:
                events.append(record(ledger, chain, view, ApprovalRequested(stage=stage.name),
                                     by=by))
        else:
            summary = clip(outcome.failure_summary or "; ".join(outcome.reasons))
            events.append(record(ledger, chain, view, GateFailed(
                stage=stage.name, cell=cell, gate=stage.gate,
                reasons=[clip(r) for r in outcome.reasons], failure_summary=summary,
                commit=outcome.commit, tree=outcome.tree, checks=outcome.checks,
                target=outcome.target, evidence=outcome.evidence), by=by))
            target = stage
            if outcome.rework_to and outcome.rework_to != stage.name:
                events.append(record(ledger, chain, view, Rework(
                    from_stage=stage.name, to_stage=outcome.rework_to, retry_note=summary),
                    by=by))
                target = ledger.config.stage(view.intake.line, outcome.rework_to)
            used = view.attempts.get(target.name, 0)
            if used >= target.attempts:
                events.append(record(ledger, chain, view, AttemptsExhausted(
                    stage=target.name, attempts=used), by=by))
        result.events = [e.path for e in events]
        result.state = view.state
        return result


def advance(ledger: Ledger, artifact: str, *, by: str | None = None) -> AdvanceResult:
    """Evaluate the current stage's gate on its handoff and record the verdict."""
    return record_verdict(ledger, judge(ledger, artifact), by=by)


# -- people -----------------------------------------------------------------------------


def review(ledger: Ledger, artifact: str, reviewer: str, decision: str, comments: str = "",
           *, by: str | None = None) -> StoredEvent:
    """Record a person's review of a stage awaiting approval."""
    with ledger.transaction():
        chain, view = load(ledger, artifact)
        stage = current_stage(view)
        event = Reviewed.build(stage=stage.name, reviewer=reviewer, decision=decision,
                               comments=comments)
        return record(ledger, chain, view, event, by=by or reviewer)


def close(ledger: Ledger, artifact: str, *, successor: str | None = None,
          terminal: str | None = None, by: str | None = None) -> StoredEvent:
    """Close a finished artifact, naming its successor or declaring it terminal."""
    if bool(successor) == bool(terminal and terminal.strip()):
        raise UsageError(
            "done is not a handoff: give exactly one of --successor ARTIFACT or --terminal REASON"
        )
    if successor:
        successor = ledger.resolve(successor)
        if successor == artifact:
            raise UsageError("an artifact cannot be its own successor")
    with ledger.transaction():
        chain, view = load(ledger, artifact)
        event = Closed.build(successor=successor) if successor else Closed.build(
            terminal=terminal)
        return record(ledger, chain, view, event, by=by)


def finish(ledger: Ledger, artifact: str, kind: str, reason: str, *,
           by: str | None = None) -> StoredEvent:
    """Reject or abandon an artifact, with a reason."""
    if kind not in ("rejected", "abandoned"):
        raise UsageError(f"unknown final kind {kind!r}: rejected or abandoned")
    if not reason.strip():
        raise UsageError(f"say why the artifact is {kind} (a reason is required)")
    with ledger.transaction():
        chain, view = load(ledger, artifact)
        event = (Rejected if kind == "rejected" else Abandoned).build(reason=reason)
        return record(ledger, chain, view, event, by=by)


# -- cells and publishing (used by cells/ and outcomes/packaging.py) ----------------------


def _artifact_of(cell: str) -> str:
    try:
        return parse_cell_id(cell)[0]
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def record_cell_spawned(
    ledger: Ledger, cell: str, *, backend: str, budget: Budget, brief_path: str,
    brief: bytes, model: str | None = None, session: str | None = None,
    workdir: str | None = None, by: str | None = None,
) -> StoredEvent:
    """Record that a cell was launched; commits the brief alongside the event."""
    artifact = _artifact_of(cell)
    with ledger.transaction():
        chain, view = load(ledger, artifact)
        cv = view.cells.get(cell)
        if cv is None:
            raise IllegalTransition(
                f"cell {cell} was never issued for {artifact}: start the stage first "
                "(`gptme-factory start`), then spawn the cell it issues"
            )
        event = CellSpawned(cell=cell, role=cv.role, backend=backend, model=model,
                            budget=budget, brief=brief_path, brief_digest=sha256(brief),
                            session=session, workdir=workdir)
        return record(ledger, chain, view, event, by=by, extra_files={brief_path: brief})


def record_cell_environment(ledger: Ledger, cell: str, failure: EnvironmentFailure, *,
                            by: str | None = None) -> StoredEvent:
    """Record that a running cell died before working because of its environment.

    Its attempt is given back and no retry starts: the stage waits for a person to fix the
    environment (the failure's `fix`) and run it again.
    """
    artifact = _artifact_of(cell)
    with ledger.transaction():
        chain, view = load(ledger, artifact)
        stage = current_stage(view)
        return record(ledger, chain, view, EnvironmentFailed(
            stage=stage.name, cell=cell, what="cell", failure=failure.kind, cause=failure.cause,
            fix=failure.fix), by=by)


def record_cell_finished(
    ledger: Ledger, cell: str, *, outcome: str, wall_s: float, reason: str = "",
    exit_code: int | None = None, tokens_in: int | None = None, tokens_out: int | None = None,
    cost_usd: float | None = None, conversation: str | None = None, output_tail: str = "",
    by: str | None = None,
) -> StoredEvent:
    """Record a cell's end and measured cost; a cell without a handoff fails its attempt."""
    artifact = _artifact_of(cell)
    note = runtime.last_progress(ledger, cell)
    with ledger.transaction():
        chain, view = load(ledger, artifact)
        event = CellFinished.build(
            cell=cell, outcome=outcome, reason=reason, exit_code=exit_code,
            wall_s=round(wall_s, 3), tokens_in=tokens_in, tokens_out=tokens_out,
            cost_usd=cost_usd, conversation=conversation, output_tail=output_tail[-8000:],
            last_progress=note[0] if note else None)
        stored = record(ledger, chain, view, event, by=by)
        stage = view.stage
        if stage is not None and view.status == "pending" and not view.is_final:
            used = view.attempts.get(stage.name, 0)
            if used >= stage.attempts:
                record(ledger, chain, view, AttemptsExhausted(stage=stage.name, attempts=used),
                       by=by)
        return stored


def record_published(ledger: Ledger, artifact: str, *, target: str, where: str,
                     commit: str | None = None, by: str | None = None,
                     extra_files: Mapping[str, bytes] | None = None) -> StoredEvent:
    """Record where a release package was published (the package gate needs it).

    `extra_files` (the rendered package, under the ledger dir) are committed with the event.
    """
    with ledger.transaction():
        chain, view = load(ledger, artifact)
        return record(ledger, chain, view,
                      Published.build(target=target, where=where, commit=commit), by=by,
                      extra_files=extra_files)
