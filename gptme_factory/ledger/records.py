"""Persisted ledger records: the intake record, every event's payload, and the event header.

Records are values: pydantic models with `extra="forbid"`, frozen, no I/O and no clock.

- `Intake` is the immutable root of an artifact's stream.
- An event is a payload (`StageStarted`, `GatePassed`, `LineParked`, ...) under a header the
  ledger writes (`EventHeader`: seq, parent hash, time, author; ledger/stream.py): callers
  build payloads only (`StageStarted(stage=..., cell=...)`, or `StageStarted.build(...)` for
  values from outside, which turns a bad value into an InvalidRecord naming the field).
- Each stream's payloads form a discriminated union on `kind` (`ArtifactEvent`, `LineEvent`).

The on-disk format is documented in docs/ledger-format.md.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    TypeAdapter,
    ValidationError,
    model_serializer,
)

from ..errors import InvalidRecord

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
    target: Name | None = Field(
        default=None, description="The project repository it changes (factory.yaml targets); "
        "none: the brain repo itself.")
    classification: Classification = Field(
        default="factory_run",
        description="factory_run, factory_maintenance or manual_follow_on (for metrics).",
    )
    created_at: datetime
    created_by: ShortText

    @model_serializer(mode="wrap")
    def _omit_brain_target(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # An intake on the brain stays byte-for-byte what it was before targets existed.
        data: dict[str, Any] = handler(self)
        if data.get("target") is None:
            data.pop("target", None)
        return data


SCHEMA_VERSION: Literal[1] = 1
"""The version every record is written with (records carry it as `schema_version`)."""

_P = TypeVar("_P", bound="Payload")


class Payload(Record):
    """Base of every event payload: the fields a caller gives; the ledger adds the header."""

    # Declared here so that `kind` leads every event file; each kind narrows it to a Literal.
    kind: str

    @classmethod
    def build(cls: type[_P], **fields: Any) -> _P:
        """Validate `fields` into this payload; InvalidRecord naming each bad field."""
        try:
            return cls.model_validate(fields)
        except ValidationError as exc:
            kind = cls.model_fields["kind"].default
            raise InvalidRecord(f"{kind} event", format_validation_error(exc)) from None


class EventHeader(Record):
    """What the ledger writes above every payload (the stream's own id sits beside it)."""

    kind: str
    schema_version: Literal[1] = SCHEMA_VERSION
    seq: int = Field(ge=1, description="Position in the stream: a root record is 0.")
    parent: Sha256 = Field(description="sha256 of the parent record's file bytes.")
    at: datetime = Field(description="Wall-clock time, for display only (never for ordering).")
    by: ShortText = Field(description="Who appended it: a cell id, an agent or a person.")


HEADER_FIELDS = frozenset(EventHeader.model_fields)


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


class TargetRef(Record):
    """The project repository a piece of evidence is about, as another machine finds it."""

    name: Name = Field(description="The target's name in factory.yaml.")
    url: ShortText | None = Field(default=None, description="Its remote's URL.")
    slug: ShortText | None = Field(default=None, description="GitHub OWNER/NAME.")


# -- evidence: the validation contract and what the factory observed ----------------------

EvidenceMode = Literal["fail-to-pass", "pass-to-pass"]
CheckSource = Literal["line", "target", "plan", "verifier"]
RowVerdict = Literal["fail-to-pass", "pass-to-pass", "fail-to-fail", "pass-to-fail", "flaky",
                     "timed-out", "passes", "fails", "reproduces"]


def _check_subdir(value: str) -> str:
    parts = value.split("/")
    if value != "." and (value.startswith("/") or "\\" in value
                         or any(p in ("", ".", "..") for p in parts)):
        raise ValueError("a directory relative to the project's root (`.` for the root)")
    return value


SubDir = Annotated[str, AfterValidator(_check_subdir)]


class ContractCheck(Record):
    """One check of a validation contract: a command, where it runs, its limit, what it covers.

    Its identity is (command, cwd): a report that keeps the id but changes the command
    weakens it; a longer time limit does not.
    """

    id: Name = Field(description="Stable within the contract (line-1, target-1, plan-2, ...).")
    command: ShortText
    cwd: SubDir = Field(default=".", description="Where it runs, relative to the checkout.")
    timeout_s: float = Field(gt=0, description="Its time limit when the contract was fixed.")
    source: CheckSource = Field(description="line or target (required), plan (the scout's) "
                                "or verifier (added at the verify gate).")
    criteria: list[int] = Field(default_factory=list, description="0-based indices of the "
                                "acceptance criteria it covers.")
    proves: str = Field(default="", max_length=500)

    @property
    def required(self) -> bool:
        """True for the line's and the target's own checks (pass-to-pass must hold)."""
        return self.source in ("line", "target")


class ContractFixed(Payload):
    """The validation contract, fixed at the planning gate before anything is built.

    Later gates run exactly these checks (a verifier may add, never drop or weaken one).
    """

    kind: Literal["contract_fixed"] = "contract_fixed"
    stage: Name
    cell: CellId
    evidence: EvidenceMode = Field(description="fail-to-pass: a check must fail at the base "
                                   "and pass at the built commit; pass-to-pass: none must.")
    checks: list[ContractCheck] = Field(min_length=1)
    base_commit: str | None = Field(default=None, description="Where it was tried first.")


class Observation(Record):
    """What one check did at one commit, run by the factory (one entry per run)."""

    exit_codes: list[int | None] = Field(
        min_length=1, description="One per run; none: the run timed out.")
    duration_s: float = Field(ge=0, description="The first run's duration.")
    reused: int = Field(default=0, ge=0,
                        description="How many of the runs were made earlier on this machine.")
    output_tail: OutputTail = Field(default="", description="Tail of a failing run.")

    @property
    def timed_out(self) -> bool:
        """Some run hit the time limit (neither pass nor fail)."""
        return any(c is None for c in self.exit_codes)

    @property
    def flaky(self) -> bool:
        """The runs disagree: some passed and some failed."""
        codes = {c == 0 for c in self.exit_codes if c is not None}
        return len(codes) > 1

    @property
    def passed(self) -> bool:
        """Every run exited 0."""
        return all(c == 0 for c in self.exit_codes)

    @property
    def failed(self) -> bool:
        """Every run finished and none exited 0."""
        return all(c is not None and c != 0 for c in self.exit_codes)


class EvidenceRow(Record):
    """One check's line in the evidence table: its criteria, base and head, and the verdict."""

    check: Name
    command: ShortText
    source: CheckSource
    criteria: list[int] = Field(default_factory=list)
    base: Observation | None = None
    head: Observation | None = None
    verdict: RowVerdict


class Evidence(Record):
    """What a gate saw, check by check, at the base and at the commit it judged."""

    mode: EvidenceMode
    base_commit: str | None = None
    base_tree: str | None = None
    head_commit: str | None = None
    head_tree: str | None = None
    rows: list[EvidenceRow] = Field(default_factory=list)
    contract_fixed: bool = Field(default=True, description="false: no contract was fixed "
                                 "before the build; the gate derived it from the plan.")


class StageStarted(Payload):
    """A stage began; the factory issued `cell`, the only id allowed to hand off for it."""

    kind: Literal["stage_started"] = "stage_started"
    stage: Name
    role: Name
    cell: CellId
    attempt: int = Field(ge=1)
    retry_note: str = Field(default="", max_length=20_000)
    base_commit: str | None = Field(
        default=None, description="Commit builders start from, in the artifact's target.")
    host: ShortText | None = Field(
        default=None, description="The machine that claimed the stage (a shared ledger).")
    lease_until: datetime | None = Field(
        default=None, description="The claim holds until then unless renewed (shared ledger).")


class LeaseRenewed(Payload):
    """The running cell's claim on its stage holds longer (its progress renewed it)."""

    kind: Literal["lease_renewed"] = "lease_renewed"
    cell: CellId
    until: datetime


class ClaimTakenOver(Payload):
    """A running cell's claim expired unrenewed (its holder is gone); its attempt ends here."""

    kind: Literal["claim_taken_over"] = "claim_taken_over"
    cell: CellId = Field(description="The cell whose claim was taken over.")
    host: ShortText | None = Field(default=None, description="Where that cell was claimed.")
    lease_until: datetime = Field(description="When its lease expired.")


class CellSpawned(Payload):
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
    workdir: str | None = Field(
        default=None, description="Where the cell runs, relative to the brain repo.")


class HandoffSubmitted(Payload):
    """A cell's typed handoff, validated against `contract` before it was appended."""

    kind: Literal["handoff_submitted"] = "handoff_submitted"
    stage: Name
    cell: CellId
    contract: Name
    handoff: dict[str, Any]
    last_progress: str | None = Field(default=None, max_length=2_000)


class GatePassed(Payload):
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
    target: TargetRef | None = Field(
        default=None, description="Where commit and tree are (none: the brain repo).")
    evidence: Evidence | None = Field(
        default=None, description="Check by check, base and head (gates that run checks).")


class GateFailed(Payload):
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
    target: TargetRef | None = Field(
        default=None, description="Where commit and tree are (none: the brain repo).")
    evidence: Evidence | None = Field(
        default=None, description="Check by check, base and head (gates that run checks).")


class Rework(Payload):
    """The artifact goes back to an earlier stage with a retry note."""

    kind: Literal["rework"] = "rework"
    from_stage: Name
    to_stage: Name
    retry_note: Text


class AttemptsExhausted(Payload):
    """A stage used its whole attempt budget; the artifact waits for a person."""

    kind: Literal["attempts_exhausted"] = "attempts_exhausted"
    stage: Name
    attempts: int = Field(ge=1)


class ContractViolation(Payload):
    """A cell's handoffs stayed invalid past the repair budget."""

    kind: Literal["contract_violation"] = "contract_violation"
    stage: Name
    cell: CellId
    attempts: int = Field(ge=1)
    errors: list[Text] = Field(min_length=1)


class EnvironmentFailed(Payload):
    """The machine, not the work, stopped the stage: a check or a cell could not run.

    No attempt is spent and no rework starts: the stage waits, with the exact cause and the
    fix, until a person fixes the environment and retries (`advance` re-runs a gate whose
    checks could not run; `run`, `spawn` or `start` start a cell again).
    """

    kind: Literal["environment_failed"] = "environment_failed"
    stage: Name
    cell: CellId
    what: Literal["check", "cell"] = Field(
        description="check: a gate's command could not run; cell: the cell died before working.")
    failure: ShortText = Field(description="What kind of failure (envcheck.FailureKind).")
    cause: ShortText = Field(description="The exact line observed.")
    fix: ShortText = Field(description="What to install or set.")
    command: ShortText | None = Field(default=None, description="The check that could not run.")


class CellFinished(Payload):
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
    conversation: str | None = Field(
        default=None, description="gptme conversation: its log dir's name under gptme's logs.")
    output_tail: OutputTail = ""
    last_progress: str | None = Field(default=None, max_length=2_000)


class ApprovalRequested(Payload):
    """The line asks a person to approve the stage's result before moving on."""

    kind: Literal["approval_requested"] = "approval_requested"
    stage: Name


class Reviewed(Payload):
    """A person's review: approve, request changes (rework) or reject."""

    kind: Literal["reviewed"] = "reviewed"
    stage: Name
    reviewer: ShortText
    decision: Literal["approve", "request_changes", "reject"]
    comments: str = Field(default="", max_length=20_000)


class Rejected(Payload):
    """The artifact will not be made."""

    kind: Literal["rejected"] = "rejected"
    reason: Text


class Abandoned(Payload):
    """Work stopped without a verdict on the artifact itself."""

    kind: Literal["abandoned"] = "abandoned"
    reason: Text


class Published(Payload):
    """The release package went somewhere real (PR, tag, pushed branch, path)."""

    kind: Literal["published"] = "published"
    target: Literal["pr", "release", "branch", "note"]
    where: ShortText
    commit: str | None = None


class Closed(Payload):
    """Done is not a handoff: closing names a successor or declares the line terminal."""

    kind: Literal["closed"] = "closed"
    successor: ArtifactId | None = None
    terminal: str | None = Field(default=None, max_length=2_000)


class ForkChoice(Record):
    """At one fork: the child event kept and the children discarded (sha256 of each)."""

    parent: Sha256 = Field(description="The event (or root) two or more events name as parent.")
    kept: Sha256 = Field(description="The child whose branch the stream follows.")
    discarded: list[Sha256] = Field(min_length=1, description="The other children.")


class ForkResolved(Payload):
    """A fork is settled: the stream follows the kept branches; the others stay, discarded.

    Appended after the kept branch's tip, so the stream stays one chain; the discarded
    events keep their files and their history (nothing is lost), and are no longer a fork.
    """

    kind: Literal["fork_resolved"] = "fork_resolved"
    choices: list[ForkChoice] = Field(min_length=1)
    reason: str = Field(default="", max_length=2_000)


ArtifactEvent = Annotated[
    StageStarted
    | LeaseRenewed
    | ClaimTakenOver
    | ForkResolved
    | CellSpawned
    | HandoffSubmitted
    | ContractFixed
    | GatePassed
    | GateFailed
    | Rework
    | AttemptsExhausted
    | ContractViolation
    | EnvironmentFailed
    | CellFinished
    | ApprovalRequested
    | Reviewed
    | Rejected
    | Abandoned
    | Published
    | Closed,
    Field(discriminator="kind"),
]
"""The payload of any event in an artifact's stream."""

ARTIFACT_EVENTS: TypeAdapter[ArtifactEvent] = TypeAdapter(ArtifactEvent)
EVENT_KINDS: tuple[str, ...] = tuple(
    m.model_fields["kind"].default for m in get_args(get_args(ArtifactEvent)[0])
)


# -- line lifecycle events (factory/lines/<line>/) ------------------------------------------


class LineParked(Payload):
    """The line stops taking intake until one of its restart triggers fires."""

    kind: Literal["line_parked"] = "line_parked"
    triggers: list[ShortText] = Field(min_length=1, description="What would restart it, in words.")
    reason: str = Field(default="", max_length=2_000, description="Why it is parked.")


class LineUnparked(Payload):
    """The line takes intake again; `because` says which trigger fired."""

    kind: Literal["line_unparked"] = "line_unparked"
    because: ShortText


class LineArchived(Payload):
    """The line is retired for good: it never takes intake again."""

    kind: Literal["line_archived"] = "line_archived"
    reason: ShortText


LineEvent = Annotated[LineParked | LineUnparked | LineArchived | ForkResolved,
                     Field(discriminator="kind")]
"""The payload of any event in a line's lifecycle stream."""

LINE_EVENTS: TypeAdapter[LineEvent] = TypeAdapter(LineEvent)


def check_name(value: str) -> str:
    """A line, stage or role name, or ValueError (what `Name` fields accept)."""
    return _check_name(value)


def check_artifact_id(value: str) -> str:
    """An artifact id, or ValueError (what `ArtifactId` fields accept)."""
    return _check_id(value)


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
