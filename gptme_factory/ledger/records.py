"""Persisted ledger records: the intake record and every event kind.

Records are values: pydantic models with `extra="forbid"`, frozen, no I/O and no clock. Each
carries `kind` and `schema_version`; events form a discriminated union on `kind`. Ids, sequence
numbers, parent hashes and timestamps are filled in by the ledger, never by the models.
The on-disk format is documented in docs/ledger-format.md.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
)

_ID_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,78}[a-z0-9])?$")
_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
_CELL_RE = re.compile(r"^([a-z0-9-]+)\.([a-z][a-z0-9_-]*)\.([0-9a-f]{4,12})$")
_HASH_RE = re.compile(r"^[0-9a-f]{64}$")


def _check_id(value: str) -> str:
    if not _ID_RE.match(value):
        raise ValueError(
            "artifact ids are lowercase letters, digits and '-', at most 80 characters "
            "(no '/', '..' or absolute paths)"
        )
    return value


def _check_name(value: str) -> str:
    if not _NAME_RE.match(value):
        raise ValueError("names start with a lowercase letter: [a-z][a-z0-9_-], at most 40")
    return value


def _check_cell(value: str) -> str:
    if not _CELL_RE.match(value):
        raise ValueError("cell ids look like ARTIFACT.STAGE.HEX, as issued by `spawn`/`start`")
    return value


def _check_hash(value: str) -> str:
    if not _HASH_RE.match(value):
        raise ValueError("expected a 64-character lowercase sha256 hex digest")
    return value


ArtifactId = Annotated[str, AfterValidator(_check_id)]
Name = Annotated[str, AfterValidator(_check_name)]
CellId = Annotated[str, AfterValidator(_check_cell)]
Sha256 = Annotated[str, AfterValidator(_check_hash)]
Text = Annotated[str, Field(min_length=1, max_length=20_000)]
ShortText = Annotated[str, Field(min_length=1, max_length=500)]
OutputTail = Annotated[str, Field(max_length=8_000)]


def parse_cell_id(cell: str) -> tuple[str, str]:
    """Split a cell id into (artifact id, stage name)."""
    m = _CELL_RE.match(cell)
    if not m:
        raise ValueError(f"{cell!r} is not a cell id (expected ARTIFACT.STAGE.HEX)")
    return m.group(1), m.group(2)


class Record(BaseModel):
    """Base of every persisted record: strict, immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


Classification = Literal["factory_run", "factory_maintenance", "manual_follow_on"]


class Intake(Record):
    """The immutable intake record: the demand an artifact answers. Root of its event chain."""

    kind: Literal["intake"] = "intake"
    schema_version: Literal[1] = 1
    artifact: ArtifactId = Field(description="The artifact's id (also its directory name).")
    title: ShortText = Field(description="What is to be delivered, in a line.")
    problem: str = Field(default="", max_length=20_000, description="Why: the problem it solves.")
    demand: ShortText = Field(
        description="Where the demand comes from: an issue (gh:owner/repo#N), a task, a person."
    )
    consumers: list[ShortText] = Field(
        min_length=1, description="Who will use the result; each is asked about adoption later."
    )
    acceptance: list[Text] = Field(
        min_length=1, description="Acceptance criteria; later handoffs map to them by index."
    )
    line: Name = Field(default="default", description="The production line it runs on.")
    classification: Classification = Field(
        default="factory_run",
        description="factory_run, factory_maintenance or manual_follow_on (for metrics).",
    )
    created_at: datetime
    created_by: ShortText


class EventBase(Record):
    """Header common to every event; the ledger fills it in when it appends."""

    # Declared here so that `kind` leads every event file; each kind narrows it to a Literal.
    kind: str
    schema_version: Literal[1] = 1
    artifact: ArtifactId
    seq: int = Field(ge=1, description="Position in the chain: intake is 0.")
    parent: Sha256 = Field(description="sha256 of the parent record's file bytes.")
    at: datetime = Field(description="Wall-clock time, for display only (never for ordering).")
    by: ShortText = Field(description="Who appended it: a cell id, an agent or a person.")


class Budget(Record):
    """Bounds on one cell."""

    timeout_s: float = Field(gt=0, description="Wall-clock limit in seconds.")
    max_tokens: int | None = Field(default=None, gt=0, description="Input+output token limit.")
    max_cost_usd: float | None = Field(default=None, ge=0, description="Money limit in USD.")


class CheckResult(Record):
    """One verification command the factory itself ran."""

    command: ShortText
    exit_code: int | None = Field(default=None, description="None when the command timed out.")
    duration_s: float = Field(ge=0)
    timed_out: bool = False
    output_tail: OutputTail = ""


class StageStarted(EventBase):
    """A stage began; the factory issued `cell`, the only id allowed to hand off for it."""

    kind: Literal["stage_started"] = "stage_started"
    stage: Name
    role: Name
    cell: CellId
    attempt: int = Field(ge=1)
    retry_note: str = Field(default="", max_length=20_000)
    base_commit: str | None = Field(default=None, description="Commit builders start from.")


class CellSpawned(EventBase):
    """A cell process was launched for a started stage."""

    kind: Literal["cell_spawned"] = "cell_spawned"
    cell: CellId
    role: Name
    backend: Name
    model: str | None = None
    budget: Budget
    brief: ShortText = Field(description="Repo-relative path of the committed brief.")
    brief_digest: Sha256
    session: str | None = Field(default=None, description="Backend session id (gptodo, pid).")
    workdir: str | None = Field(default=None, description="Where the cell runs.")


class HandoffSubmitted(EventBase):
    """A cell's typed handoff, validated against `contract` before it was appended."""

    kind: Literal["handoff_submitted"] = "handoff_submitted"
    stage: Name
    cell: CellId
    contract: Name
    handoff: dict[str, Any]
    last_progress: str | None = Field(default=None, max_length=2_000)


class GatePassed(EventBase):
    """The stage's gate accepted the handoff; the artifact moves to `state`."""

    kind: Literal["gate_passed"] = "gate_passed"
    stage: Name
    cell: CellId
    gate: Name
    state: Name
    commit: str | None = None
    tree: str | None = None
    checks: list[CheckResult] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)


class GateFailed(EventBase):
    """The stage's gate refused the handoff; `failure_summary` is what the next cell reads."""

    kind: Literal["gate_failed"] = "gate_failed"
    stage: Name
    cell: CellId
    gate: Name
    reasons: list[Text] = Field(min_length=1)
    failure_summary: Text
    commit: str | None = None
    tree: str | None = None
    checks: list[CheckResult] = Field(default_factory=list)


class Rework(EventBase):
    """The artifact goes back to an earlier stage with a retry note."""

    kind: Literal["rework"] = "rework"
    from_stage: Name
    to_stage: Name
    retry_note: Text


class AttemptsExhausted(EventBase):
    """A stage used its whole attempt budget; the artifact waits for a person."""

    kind: Literal["attempts_exhausted"] = "attempts_exhausted"
    stage: Name
    attempts: int = Field(ge=1)


class ContractViolation(EventBase):
    """A cell's handoffs stayed invalid past the repair budget."""

    kind: Literal["contract_violation"] = "contract_violation"
    stage: Name
    cell: CellId
    attempts: int = Field(ge=1)
    errors: list[Text] = Field(min_length=1)


class CellFinished(EventBase):
    """A cell's process ended; cost measured from its own gptme log."""

    kind: Literal["cell_finished"] = "cell_finished"
    cell: CellId
    outcome: Literal["handoff", "no_handoff", "timed_out", "over_budget", "crashed", "killed"]
    reason: str = Field(default="", max_length=2_000)
    exit_code: int | None = None
    wall_s: float = Field(ge=0)
    tokens_in: int | None = Field(default=None, ge=0)
    tokens_out: int | None = Field(default=None, ge=0)
    cost_usd: float | None = Field(default=None, ge=0)
    conversation: str | None = Field(default=None, description="gptme conversation log dir.")
    output_tail: OutputTail = ""
    last_progress: str | None = Field(default=None, max_length=2_000)


class ApprovalRequested(EventBase):
    """The line asks a person to approve the stage's result before moving on."""

    kind: Literal["approval_requested"] = "approval_requested"
    stage: Name


class Reviewed(EventBase):
    """A person's review: approve, request changes (rework) or reject."""

    kind: Literal["reviewed"] = "reviewed"
    stage: Name
    reviewer: ShortText
    decision: Literal["approve", "request_changes", "reject"]
    comments: str = Field(default="", max_length=20_000)


class Rejected(EventBase):
    """The artifact will not be made."""

    kind: Literal["rejected"] = "rejected"
    reason: Text


class Abandoned(EventBase):
    """Work stopped without a verdict on the artifact itself."""

    kind: Literal["abandoned"] = "abandoned"
    reason: Text


class Published(EventBase):
    """The release package went somewhere real (PR, tag, path)."""

    kind: Literal["published"] = "published"
    target: Literal["pr", "release", "note"]
    where: ShortText
    commit: str | None = None


class Closed(EventBase):
    """Done is not a handoff: closing names a successor or declares the line terminal."""

    kind: Literal["closed"] = "closed"
    successor: ArtifactId | None = None
    terminal: str | None = Field(default=None, max_length=2_000)


Event = Annotated[
    StageStarted
    | CellSpawned
    | HandoffSubmitted
    | GatePassed
    | GateFailed
    | Rework
    | AttemptsExhausted
    | ContractViolation
    | CellFinished
    | ApprovalRequested
    | Reviewed
    | Rejected
    | Abandoned
    | Published
    | Closed,
    Field(discriminator="kind"),
]

EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)
EVENT_KINDS: tuple[str, ...] = tuple(
    m.model_fields["kind"].default
    for m in (
        StageStarted,
        CellSpawned,
        HandoffSubmitted,
        GatePassed,
        GateFailed,
        Rework,
        AttemptsExhausted,
        ContractViolation,
        CellFinished,
        ApprovalRequested,
        Reviewed,
        Rejected,
        Abandoned,
        Published,
        Closed,
    )
)


def format_validation_error(exc: ValidationError) -> list[str]:
    """Turn a pydantic error into `field: problem` lines a person or a model can act on."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(record)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field (remove it, or check its spelling)"
        elif err["type"] == "missing":
            msg = "required field is missing"
        elif err["type"] == "union_tag_invalid":
            msg = f"unknown kind: {msg}"
        elif err["type"] == "value_error":
            msg = msg.removeprefix("Value error, ")
        lines.append(f"{loc}: {msg}")
    return lines
