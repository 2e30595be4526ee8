"""The stage state machine: an artifact's current state, derived by replaying its events.

Nothing about an artifact's state is stored; `replay` folds the chain's events over the line
config. `apply` raises IllegalTransition for an event that is not legal in the current state,
which is how the engine refuses an event before appending it, and how `verify` reports a
ledger whose history is impossible. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from ..errors import IllegalTransition
from ..ledger.config import COMMIT_GATES, FINAL_STATES, LineConfig, StageConfig
from ..ledger.records import (
    Abandoned,
    ApprovalRequested,
    ArtifactEvent,
    AttemptsExhausted,
    CellFinished,
    CellSpawned,
    ClaimTakenOver,
    Closed,
    ContractFixed,
    ContractViolation,
    EnvironmentFailed,
    ForkResolved,
    GateFailed,
    GatePassed,
    HandoffSubmitted,
    Intake,
    LeaseRenewed,
    Published,
    Rejected,
    Reviewed,
    Rework,
    StageStarted,
)

if TYPE_CHECKING:
    from ..ledger.kinds import StoredEvent

StageStatus = Literal[
    "pending", "running", "submitted", "awaiting_approval", "blocked", "done"
]


@dataclass
class CellView:
    """What the ledger knows of one cell."""

    cell: str
    stage: str
    role: str
    attempt: int
    started_at: datetime
    backend: str | None = None
    model: str | None = None
    session: str | None = None
    workdir: str | None = None
    budget: dict[str, Any] | None = None
    brief: str | None = None
    base_commit: str | None = None
    outcome: str | None = None
    finished_at: datetime | None = None
    wall_s: float | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    cost_usd: float | None = None
    last_progress: str | None = None
    host: str | None = None  # where it was claimed (a shared ledger)
    lease_until: datetime | None = None  # its claim holds until then unless renewed


@dataclass
class ArtifactView:
    """An artifact's derived state."""

    intake: Intake
    line: LineConfig
    state: str = "idea"
    stage_index: int = 0
    status: StageStatus = "pending"
    cell: str | None = None
    attempts: dict[str, int] = field(default_factory=dict)
    retry_note: str = ""
    blocked_reason: str = ""
    # Why the stage is blocked: attempts, contract, environment (a cell that could not run),
    # or environment_gate (a gate's checks could not run; its handoff stands, `advance` retries).
    blocked_by: str = ""
    handoffs: dict[str, dict[str, Any]] = field(default_factory=dict)
    cells: dict[str, CellView] = field(default_factory=dict)
    gates: dict[str, GatePassed] = field(default_factory=dict)
    # The validation contract fixed by a planning gate (None: not fixed, or reworked away).
    contract: ContractFixed | None = None
    published: list[Published] = field(default_factory=list)
    # True once the current stage's handoff has been published (a package gate needs that:
    # an older publication does not cover a newer package).
    published_current: bool = False
    closed: Closed | None = None
    final_reason: str = ""
    last_kind: str = "intake"
    last_at: datetime | None = None
    events: int = 0
    first_pass: bool = True
    stage_entered_at: dict[str, datetime] = field(default_factory=dict)
    stage_passed_at: dict[str, datetime] = field(default_factory=dict)
    # When the artifact arrived at its current stage (a pass or a rework moved it there);
    # None: it is still at the first stage it entered at intake.
    stage_since: datetime | None = None

    @property
    def stage(self) -> StageConfig | None:
        """The current stage, or None when the line is complete or the artifact is final."""
        if self.state in FINAL_STATES or self.stage_index >= len(self.line.stages):
            return None
        return self.line.stages[self.stage_index]

    @property
    def is_final(self) -> bool:
        """Closed, rejected or abandoned."""
        return self.state in FINAL_STATES

    def needs_person(self) -> str | None:
        """What a person must do before the artifact can move on, or None."""
        aid = self.intake.artifact
        stage = self.stage
        if self.is_final or stage is None:
            return None
        if self.status == "awaiting_approval":
            return (f"review stage {stage.name}: `gptme-factory review {aid} "
                    "--approve|--request-changes|--reject`")
        if self.status != "blocked":
            return None
        if self.blocked_by.startswith("environment"):
            again = (f"`gptme-factory advance {aid}`" if self.blocked_by == "environment_gate"
                     else f"`gptme-factory run {aid}`")
            return f"fix the environment ({self.blocked_reason}), then {again}"
        return (f"decide on stage {stage.name} ({self.blocked_reason}): `gptme-factory start "
                f"{aid} --force` to retry, or reject or abandon it")

    def branch_commit(self, gates: tuple[str, ...] = COMMIT_GATES) -> str | None:
        """The latest commit a passed gate of kind `gates` accepted, before the current stage.

        The built one, else the reproduction.
        """
        found = None
        for st in self.line.stages[: self.stage_index]:
            gate = self.gates.get(st.name)
            if st.gate in gates and gate is not None and gate.commit:
                found = gate.commit
        return found

    @property
    def cost_usd(self) -> float:
        """Total measured money cost of the artifact's cells."""
        return sum(c.cost_usd or 0.0 for c in self.cells.values())

    @property
    def tokens(self) -> int:
        """Total measured tokens of the artifact's cells."""
        return sum((c.tokens_in or 0) + (c.tokens_out or 0) for c in self.cells.values())


def _illegal(view: ArtifactView, event: ArtifactEvent, why: str) -> IllegalTransition:
    stage = view.stage.name if view.stage else "-"
    return IllegalTransition(
        f"{event.kind} is not allowed for {view.intake.artifact} "
        f"(state {view.state}, stage {stage}, {view.status}): {why}"
    )


def _require_stage(view: ArtifactView, event: ArtifactEvent, stage: str, *statuses: str) -> StageConfig:
    current = view.stage
    if view.is_final:
        raise _illegal(view, event, f"the artifact is {view.state}")
    if current is None:
        raise _illegal(view, event, "every stage of the line has passed")
    if current.name != stage:
        raise _illegal(view, event, f"the current stage is {current.name}, not {stage}")
    if statuses and view.status not in statuses:
        raise _illegal(view, event, f"the stage must be {' or '.join(statuses)}")
    return current


def _require_gate_ready(view: ArtifactView, event: ArtifactEvent, stage: str) -> StageConfig:
    """The stage has a handoff for its gate: submitted, or blocked by checks that could not run."""
    current = _require_stage(view, event, stage)
    if not (view.status == "submitted"
            or (view.status == "blocked" and view.blocked_by == "environment_gate")):
        raise _illegal(view, event, "the stage must be submitted")
    return current


def _require_cell(view: ArtifactView, event: ArtifactEvent, cell: str) -> None:
    if view.cell != cell:
        raise _illegal(view, event, f"cell {cell} is not the cell assigned to this stage")


def _state_before(view: ArtifactView, index: int) -> str:
    return view.line.stages[index - 1].produces if index > 0 else "idea"


def apply(view: ArtifactView, event: ArtifactEvent, at: datetime) -> None:
    """Fold one event (appended at `at`) into `view`, or raise IllegalTransition."""
    if isinstance(event, StageStarted):
        current = _require_stage(view, event, event.stage, "pending", "blocked")
        if event.role != current.role:
            raise _illegal(view, event, f"stage {current.name} is done by role {current.role}")
        expected = view.attempts.get(event.stage, 0) + 1
        if event.attempt != expected:
            raise _illegal(view, event, f"this would be attempt {expected}, not {event.attempt}")
        view.attempts[event.stage] = event.attempt
        view.status, view.cell, view.blocked_reason = "running", event.cell, ""
        view.blocked_by = ""
        view.cells[event.cell] = CellView(
            cell=event.cell, stage=event.stage, role=event.role, attempt=event.attempt,
            started_at=at, base_commit=event.base_commit, host=event.host,
            lease_until=event.lease_until,
        )
        view.stage_entered_at.setdefault(event.stage, at)
    elif isinstance(event, LeaseRenewed):
        cv = view.cells.get(event.cell)
        if cv is None or view.cell != event.cell or view.status != "running":
            raise _illegal(view, event, f"cell {event.cell} is not the running cell")
        if cv.lease_until is None:
            raise _illegal(view, event, f"cell {event.cell} was claimed without a lease")
        cv.lease_until = max(cv.lease_until, event.until)
    elif isinstance(event, ClaimTakenOver):
        cv = view.cells.get(event.cell)
        if cv is None or view.cell != event.cell or view.status != "running":
            raise _illegal(view, event, f"cell {event.cell} is not the running cell")
        cv.outcome, cv.finished_at = "taken_over", at
        view.status, view.cell = "pending", None
        where = f" on {event.host}" if event.host else ""
        view.retry_note = (f"previous attempt's cell {event.cell}{where} stopped renewing its "
                           f"claim (lease expired {event.lease_until.isoformat()}): taken over")
        view.first_pass = False
    elif isinstance(event, ForkResolved):
        pass  # the chain already follows the kept branch (ledger/stream.py)
    elif isinstance(event, CellSpawned):
        cv = view.cells.get(event.cell)
        if cv is None or view.cell != event.cell or view.status != "running":
            raise _illegal(view, event, f"cell {event.cell} is not the running cell")
        if event.role != cv.role:
            raise _illegal(view, event, f"cell {event.cell} was issued for role {cv.role}")
        cv.backend, cv.model, cv.session = event.backend, event.model, event.session
        cv.workdir, cv.brief = event.workdir, event.brief
        cv.budget = event.budget.model_dump()
    elif isinstance(event, HandoffSubmitted):
        _require_stage(view, event, event.stage, "running")
        _require_cell(view, event, event.cell)
        view.status = "submitted"
        view.handoffs[event.stage] = event.handoff
        view.published_current = False
        if event.last_progress:
            view.cells[event.cell].last_progress = event.last_progress
    elif isinstance(event, ContractViolation):
        _require_stage(view, event, event.stage, "running")
        _require_cell(view, event, event.cell)
        view.status, view.cell, view.blocked_by = "blocked", None, "contract"
        view.blocked_reason = f"contract violation by {event.cell}: {event.errors[0]}"
        view.first_pass = False
    elif isinstance(event, EnvironmentFailed):
        why = f"environment: {event.cause} — fix: {event.fix}"
        if event.what == "check":
            # The gate could not judge: its handoff stands, and `advance` retries it.
            _require_gate_ready(view, event, event.stage)
            _require_cell(view, event, event.cell)
            view.status, view.blocked_by, view.blocked_reason = "blocked", "environment_gate", why
        else:
            # The cell died before working: its attempt is given back, no retry starts.
            _require_stage(view, event, event.stage, "running")
            _require_cell(view, event, event.cell)
            left = view.attempts.get(event.stage, 1) - 1
            if left > 0:
                view.attempts[event.stage] = left
            else:
                view.attempts.pop(event.stage, None)
            view.status, view.cell = "blocked", None
            view.blocked_by, view.blocked_reason = "environment", why
    elif isinstance(event, CellFinished):
        cv = view.cells.get(event.cell)
        if cv is None or cv.outcome is not None:
            raise _illegal(view, event, f"cell {event.cell} is unknown or already finished")
        cv.outcome, cv.finished_at, cv.wall_s = event.outcome, at, event.wall_s
        cv.tokens_in, cv.tokens_out, cv.cost_usd = event.tokens_in, event.tokens_out, event.cost_usd
        if event.last_progress:
            cv.last_progress = event.last_progress
        if view.cell == event.cell and view.status == "running":
            # The cell ended without a handoff: the attempt failed; the stage may be retried.
            view.status, view.cell = "pending", None
            view.retry_note = f"previous attempt ended without a handoff: {event.outcome} {event.reason}".strip()
            view.first_pass = False
    elif isinstance(event, GatePassed):
        current = _require_gate_ready(view, event, event.stage)
        _require_cell(view, event, event.cell)
        if event.state != current.produces:
            raise _illegal(view, event, f"stage {current.name} produces {current.produces}")
        view.blocked_by, view.blocked_reason = "", ""  # only once it is legal: a refusal changes nothing
        view.gates[event.stage] = event
        view.cell = None
        if current.approval:
            view.status = "awaiting_approval"
        else:
            _pass_stage(view, current, at)
    elif isinstance(event, ContractFixed):
        # Recorded with the planning gate's verdict, just before it: the handoff stands.
        _require_gate_ready(view, event, event.stage)
        _require_cell(view, event, event.cell)
        view.contract = event
    elif isinstance(event, ApprovalRequested):
        _require_stage(view, event, event.stage, "awaiting_approval")
    elif isinstance(event, Reviewed):
        current = _require_stage(view, event, event.stage, "awaiting_approval")
        if event.decision == "approve":
            _pass_stage(view, current, at)
        elif event.decision == "request_changes":
            # The stage is redone: its passed gate (and a contract it fixed) no longer stand.
            view.gates.pop(current.name, None)
            _drop_contract(view, view.stage_index)
            view.status, view.retry_note = "pending", f"review by {event.reviewer}: {event.comments}"
            view.first_pass = False
        else:
            view.state, view.final_reason = "rejected", f"rejected in review by {event.reviewer}"
    elif isinstance(event, GateFailed):
        _require_gate_ready(view, event, event.stage)
        _require_cell(view, event, event.cell)
        view.blocked_by, view.blocked_reason = "", ""
        view.status, view.cell = "pending", None
        view.retry_note = event.failure_summary
        view.first_pass = False
    elif isinstance(event, Rework):
        current = _require_stage(view, event, event.from_stage, "pending")
        names = [s.name for s in view.line.stages]
        if event.to_stage not in names or names.index(event.to_stage) >= view.stage_index:
            raise _illegal(view, event, f"{event.to_stage} is not an earlier stage of the line")
        del current
        view.stage_index = names.index(event.to_stage)
        view.state = _state_before(view, view.stage_index)
        view.status, view.retry_note = "pending", event.retry_note
        view.stage_since = at
        for st in view.line.stages[view.stage_index :]:
            view.gates.pop(st.name, None)
        _drop_contract(view, view.stage_index)
    elif isinstance(event, AttemptsExhausted):
        _require_stage(view, event, event.stage, "pending")
        used = view.attempts.get(event.stage, 0)
        if event.attempts != used:
            why = f"stage {event.stage} used {used} attempts, not {event.attempts}"
            raise _illegal(view, event, why)
        view.status, view.blocked_by = "blocked", "attempts"
        view.blocked_reason = f"stage {event.stage} used its {event.attempts} attempts"
    elif isinstance(event, Published):
        current = _require_stage(view, event, view.stage.name if view.stage else "", "submitted")
        if current.gate != "package":
            raise _illegal(view, event, "publishing belongs to a package stage")
        view.published.append(event)
        view.published_current = True
    elif isinstance(event, Closed):
        if view.is_final:
            raise _illegal(view, event, f"the artifact is already {view.state}")
        if view.stage is not None:
            raise _illegal(view, event, "close after the line's last stage has passed")
        if bool(event.successor) == bool(event.terminal):
            raise _illegal(view, event, "name exactly one of a successor or a terminal reason")
        view.state, view.closed = "closed", event
    elif isinstance(event, (Rejected, Abandoned)):
        if view.is_final:
            raise _illegal(view, event, f"the artifact is already {view.state}")
        view.state = event.kind
        view.final_reason = event.reason
        view.cell = None
    else:  # pragma: no cover - the union is exhaustive
        raise _illegal(view, event, "unknown event kind")
    view.last_kind, view.last_at = event.kind, at
    view.events += 1


def _drop_contract(view: ArtifactView, index: int) -> None:
    """A contract fixed by the stage at `index` or later is redone with that stage."""
    if view.contract is None:
        return
    names = [s.name for s in view.line.stages]
    if view.contract.stage not in names or names.index(view.contract.stage) >= index:
        view.contract = None


def _pass_stage(view: ArtifactView, stage: StageConfig, at: datetime) -> None:
    view.state = stage.produces
    view.stage_passed_at[stage.name] = at
    view.stage_since = at
    view.stage_index += 1
    view.status = "pending" if view.stage_index < len(view.line.stages) else "done"
    view.retry_note = ""


def replay(intake: Intake, line: LineConfig, events: Iterable[StoredEvent]) -> ArtifactView:
    """Derive an artifact's state from its intake and events (IllegalTransition if impossible)."""
    view = ArtifactView(intake=intake, line=line, last_at=intake.created_at)
    for stored in events:
        apply(view, stored.event, stored.header.at)
    return view
