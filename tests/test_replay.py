"""The stage state machine: table-driven transitions and hypothesis properties of replay."""

from __future__ import annotations

import copy
from datetime import datetime, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gptme_factory.errors import (
    FactoryError,
    HandoffRefused,
    IllegalTransition,
    InvalidHandoff,
    InvalidRecord,
    UsageError,
)
from gptme_factory.ledger.config import (
    FINAL_STATES,
    PROGRESS_STATES,
    LineConfig,
    StageConfig,
    default_config,
)
from gptme_factory.ledger.kinds import StoredEvent as Event
from gptme_factory.ledger.records import ARTIFACT_EVENTS, EVENT_KINDS, Budget, EventHeader, Intake
from gptme_factory.ledger.store import Ledger
from gptme_factory.ledger.stream import Stored
from gptme_factory.line import engine
from gptme_factory.line.intake import intake as new_intake
from gptme_factory.line.replay import ArtifactView, apply, replay
from gptme_factory.line.verify import verify_artifact
from tests.conftest import git

AID = "art-1"
AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
DEFAULT = default_config().line("default")
# The default line with a person approving the scout's memo.
APPROVAL = LineConfig(stages=[
    DEFAULT.stages[0].model_copy(update={"approval": True}), *DEFAULT.stages[1:]])
ROLES = {st.name: st.role for st in DEFAULT.stages}
INTAKE = Intake(artifact=AID, title="t", demand="me", consumers=["erik"], acceptance=["works"],
                created_at=AT, created_by="tester")


def ev(kind: str, **fields: Any) -> Event:
    """An event of `kind` with a fixed header (replay ignores seq/parent: the ledger checks them)."""
    header = EventHeader(kind=kind, seq=1, parent="0" * 64, at=AT, by="t")
    return Stored("t.yaml", "0" * 64, header, ARTIFACT_EVENTS.validate_python({"kind": kind, **fields}))


def apply_ev(view: ArtifactView, stored: Event) -> None:
    apply(view, stored.event, stored.at)


def cell(stage: str, n: int = 1) -> str:
    return f"{AID}.{stage}.{n:04x}"


def started(stage: str, n: int = 1, attempt: int = 1) -> Event:
    return ev("stage_started", stage=stage, role=ROLES[stage], cell=cell(stage, n), attempt=attempt)


def submitted(stage: str, n: int = 1) -> Event:
    return ev("handoff_submitted", stage=stage, cell=cell(stage, n), contract="c",
              handoff={"kind": "c"})


def gate_passed(stage: str, n: int = 1, line: LineConfig = DEFAULT) -> Event:
    produces = next(s.produces for s in line.stages if s.name == stage)
    return ev("gate_passed", stage=stage, cell=cell(stage, n), gate="contract", state=produces)


def contract_fixed(stage: str, n: int = 1) -> Event:
    check = {"id": "plan-1", "command": "python3 -m unittest", "timeout_s": 60,
             "source": "plan", "criteria": [0]}
    return ev("contract_fixed", stage=stage, cell=cell(stage, n), evidence="fail-to-pass",
              checks=[check])


def gate_failed(stage: str, n: int = 1) -> Event:
    return ev("gate_failed", stage=stage, cell=cell(stage, n), gate="contract", reasons=["bad"],
              failure_summary="it broke")


def finished(stage: str, n: int = 1, outcome: str = "no_handoff") -> Event:
    return ev("cell_finished", cell=cell(stage, n), outcome=outcome, wall_s=1.0, reason="exited")


def env_failed(stage: str, what: str, n: int = 1) -> Event:
    return ev("environment_failed", stage=stage, cell=cell(stage, n), what=what,
              failure="missing_module", cause="/usr/bin/python3: No module named pytest",
              fix="install pytest")


def through(*stages: str) -> list[Event]:
    """Events that pass each of `stages` in order (default line, first cell of each)."""
    out: list[Event] = []
    for name in stages:
        out += [started(name), submitted(name), gate_passed(name)]
    return out


ALL = ("scout", "build", "verify", "package", "measure")
RUNNING = [started("scout")]
SUBMITTED = [started("scout"), submitted("scout")]
DONE = through(*ALL)
AWAITING = [started("scout"), submitted("scout"), gate_passed("scout", line=APPROVAL)]
EXHAUSTED = [started("scout"), finished("scout"),
             ev("attempts_exhausted", stage="scout", attempts=1)]
ABANDONED = [ev("abandoned", reason="gone")]
# A claim on a shared ledger: the start carries its host and lease.
LEASED = [ev("stage_started", stage="scout", role="scout", cell=cell("scout"), attempt=1,
             host="host-a", lease_until=AT)]
LATER = datetime(2026, 1, 2, 4, 0, 0, tzinfo=timezone.utc)


def view_after(events: list[Event], line: LineConfig = DEFAULT) -> ArtifactView:
    return replay(INTAKE, line, events)


def where(view: ArtifactView) -> tuple[str, str | None, str, str | None]:
    return view.state, view.stage.name if view.stage else None, view.status, view.cell


# -- legal transitions --------------------------------------------------------------------

LEGAL = [
    ("start", [], started("scout"), ("idea", "scout", "running", cell("scout"))),
    ("start-after-blocked", EXHAUSTED, started("scout", 2, attempt=2),
     ("idea", "scout", "running", cell("scout", 2))),
    ("start-after-violation",
     [*RUNNING, ev("contract_violation", stage="scout", cell=cell("scout"), attempts=3,
                   errors=["files: required"])],
     started("scout", 2, attempt=2), ("idea", "scout", "running", cell("scout", 2))),
    ("spawn", RUNNING,
     ev("cell_spawned", cell=cell("scout"), role="scout", backend="gptodo",
        budget={"timeout_s": 60}, brief="b.md", brief_digest="0" * 64),
     ("idea", "scout", "running", cell("scout"))),
    ("submit", RUNNING, submitted("scout"), ("idea", "scout", "submitted", cell("scout"))),
    ("violation", RUNNING,
     ev("contract_violation", stage="scout", cell=cell("scout"), attempts=3, errors=["x: bad"]),
     ("idea", "scout", "blocked", None)),
    ("finish-without-handoff", RUNNING, finished("scout"), ("idea", "scout", "pending", None)),
    ("finish-after-handoff", SUBMITTED, finished("scout", outcome="handoff"),
     ("idea", "scout", "submitted", cell("scout"))),
    ("finish-old-cell-after-abandon", [*RUNNING, *ABANDONED], finished("scout"),
     ("abandoned", None, "running", None)),
    ("gate-passed", SUBMITTED, gate_passed("scout"), ("designed", "build", "pending", None)),
    ("contract-fixed", SUBMITTED, contract_fixed("scout"),
     ("idea", "scout", "submitted", cell("scout"))),
    ("gate-failed", SUBMITTED, gate_failed("scout"), ("idea", "scout", "pending", None)),
    ("rework", [*through("scout", "build"), started("verify"), submitted("verify"),
                gate_failed("verify")],
     ev("rework", from_stage="verify", to_stage="build", retry_note="tests fail"),
     ("designed", "build", "pending", None)),
    ("rework-two-back", [*through("scout", "build"), started("verify"), submitted("verify"),
                         gate_failed("verify")],
     ev("rework", from_stage="verify", to_stage="scout", retry_note="rethink"),
     ("idea", "scout", "pending", None)),
    ("exhausted", [*RUNNING, finished("scout")], ev("attempts_exhausted", stage="scout", attempts=1),
     ("idea", "scout", "blocked", None)),
    ("published", [*through("scout", "build", "verify"), started("package"), submitted("package")],
     ev("published", target="note", where="notes/x.md"),
     ("verified", "package", "submitted", cell("package"))),
    ("close-terminal", DONE, ev("closed", terminal="demand met"), ("closed", None, "done", None)),
    ("close-successor", DONE, ev("closed", successor="next-1"), ("closed", None, "done", None)),
    ("reject", SUBMITTED, ev("rejected", reason="not wanted"), ("rejected", None, "submitted", None)),
    ("abandon-done", DONE, ev("abandoned", reason="gone"), ("abandoned", None, "done", None)),
    ("environment-cell", RUNNING, env_failed("scout", "cell"), ("idea", "scout", "blocked", None)),
    ("environment-check", SUBMITTED, env_failed("scout", "check"),
     ("idea", "scout", "blocked", cell("scout"))),
    ("gate-after-environment", [*SUBMITTED, env_failed("scout", "check")], gate_passed("scout"),
     ("designed", "build", "pending", None)),
    ("start-after-environment", [*RUNNING, env_failed("scout", "cell"), finished("scout")],
     started("scout", 2, attempt=1), ("idea", "scout", "running", cell("scout", 2))),
    ("renew-lease", LEASED, ev("lease_renewed", cell=cell("scout"), until=LATER),
     ("idea", "scout", "running", cell("scout"))),
    ("take-over", LEASED, ev("claim_taken_over", cell=cell("scout"), host="host-a",
                             lease_until=AT),
     ("idea", "scout", "pending", None)),
    ("fork-resolved", RUNNING,
     ev("fork_resolved", choices=[{"parent": "1" * 64, "kept": "2" * 64,
                                   "discarded": ["3" * 64]}]),
     ("idea", "scout", "running", cell("scout"))),
]


@pytest.mark.parametrize(("prefix", "event", "expected"), [c[1:] for c in LEGAL],
                         ids=[c[0] for c in LEGAL])
def test_legal_transition(prefix: list[Event], event: Event,
                          expected: tuple[str, str | None, str, str | None]) -> None:
    view = view_after(prefix)
    apply_ev(view, event)
    assert where(view) == expected
    assert view.last_kind == event.kind and view.events == len(prefix) + 1
    assert_legal(view)


LEGAL_APPROVAL = [
    ("gate-passed-awaits", SUBMITTED, gate_passed("scout", line=APPROVAL),
     ("idea", "scout", "awaiting_approval", None)),
    ("approval-requested", AWAITING, ev("approval_requested", stage="scout"),
     ("idea", "scout", "awaiting_approval", None)),
    ("approve", AWAITING, ev("reviewed", stage="scout", reviewer="erik", decision="approve"),
     ("designed", "build", "pending", None)),
    ("request-changes", AWAITING,
     ev("reviewed", stage="scout", reviewer="erik", decision="request_changes", comments="more"),
     ("idea", "scout", "pending", None)),
    ("review-reject", AWAITING, ev("reviewed", stage="scout", reviewer="erik", decision="reject"),
     ("rejected", None, "awaiting_approval", None)),
]


@pytest.mark.parametrize(("prefix", "event", "expected"), [c[1:] for c in LEGAL_APPROVAL],
                         ids=[c[0] for c in LEGAL_APPROVAL])
def test_legal_transition_with_approval(prefix: list[Event], event: Event,
                                        expected: tuple[str, str | None, str, str | None]) -> None:
    view = view_after(prefix, APPROVAL)
    apply_ev(view, event)
    assert where(view) == expected
    assert_legal(view)


def test_transition_details() -> None:
    view = view_after([*RUNNING, finished("scout")])
    assert view.retry_note == "previous attempt ended without a handoff: no_handoff exited"
    assert not view.first_pass and view.cells[cell("scout")].outcome == "no_handoff"
    view = view_after([*SUBMITTED, gate_failed("scout"), started("scout", 2, attempt=2)])
    assert view.attempts == {"scout": 2} and view.retry_note == "it broke"
    view = view_after([*EXHAUSTED])
    assert view.blocked_reason == "stage scout used its 1 attempts"
    view = view_after([*RUNNING, ev("contract_violation", stage="scout", cell=cell("scout"),
                                     attempts=3, errors=["files: required field is missing"])])
    assert view.blocked_reason == (
        f"contract violation by {cell('scout')}: files: required field is missing")
    view = view_after(through("scout"))
    assert view.handoffs == {"scout": {"kind": "c"}} and set(view.gates) == {"scout"}
    assert view.first_pass and view.stage_passed_at == {"scout": AT}
    view = view_after([*AWAITING, ev("reviewed", stage="scout", reviewer="erik",
                                     decision="request_changes", comments="more risks")],
                      APPROVAL)
    assert view.retry_note == "review by erik: more risks" and view.gates == {}
    view = view_after([*AWAITING, ev("reviewed", stage="scout", reviewer="erik",
                                     decision="reject")], APPROVAL)
    assert view.final_reason == "rejected in review by erik" and view.is_final
    view = view_after([*through("scout", "build"), started("verify"), submitted("verify"),
                       gate_failed("verify"),
                       ev("rework", from_stage="verify", to_stage="build", retry_note="fix it")])
    assert view.retry_note == "fix it" and set(view.gates) == {"scout"}
    assert view.attempts == {"scout": 1, "build": 1, "verify": 1}
    view = view_after([*DONE, ev("closed", successor="next-1")])
    assert view.closed is not None and view.closed.successor == "next-1"


def test_a_publication_covers_only_the_current_package() -> None:
    package = [*through("scout", "build", "verify"), started("package"), submitted("package")]
    view = view_after(package)
    assert not view.published_current
    view = view_after([*package, ev("published", target="note", where="a.md")])
    assert view.published_current and [p.where for p in view.published] == ["a.md"]
    # the package gate fails, a new package is submitted: the old publication does not cover it
    view = view_after([*package, ev("published", target="note", where="a.md"),
                       gate_failed("package"), started("package", 2, attempt=2),
                       submitted("package", 2)])
    assert not view.published_current and len(view.published) == 1


# -- illegal transitions: every event kind, with the exact message ------------------------

def msg(state: str, stage: str, status: str, kind: str, why: str) -> str:
    return f"{kind} is not allowed for {AID} (state {state}, stage {stage}, {status}): {why}"


ILLEGAL = [
    ("environment-cell-not-running", SUBMITTED, env_failed("scout", "cell"),
     msg("idea", "scout", "submitted", "environment_failed", "the stage must be running")),
    ("environment-check-not-submitted", RUNNING, env_failed("scout", "check"),
     msg("idea", "scout", "running", "environment_failed", "the stage must be submitted")),
    ("start-wrong-stage", [], started("build"),
     msg("idea", "scout", "pending", "stage_started", "the current stage is scout, not build")),
    ("start-while-running", RUNNING, started("scout", 2, attempt=2),
     msg("idea", "scout", "running", "stage_started", "the stage must be pending or blocked")),
    ("start-wrong-role", [],
     ev("stage_started", stage="scout", role="builder", cell=cell("scout"), attempt=1),
     msg("idea", "scout", "pending", "stage_started", "stage scout is done by role scout")),
    ("start-wrong-attempt", [], started("scout", attempt=2),
     msg("idea", "scout", "pending", "stage_started", "this would be attempt 1, not 2")),
    ("start-after-final", ABANDONED, started("scout"),
     msg("abandoned", "-", "pending", "stage_started", "the artifact is abandoned")),
    ("start-line-done", DONE, started("scout"),
     msg("measured", "-", "done", "stage_started", "every stage of the line has passed")),
    ("spawn-unknown-cell", RUNNING,
     ev("cell_spawned", cell=cell("scout", 9), role="scout", backend="gptodo",
        budget={"timeout_s": 60}, brief="b.md", brief_digest="0" * 64),
     msg("idea", "scout", "running", "cell_spawned", f"cell {cell('scout', 9)} is not the running cell")),
    ("spawn-wrong-role", RUNNING,
     ev("cell_spawned", cell=cell("scout"), role="builder", backend="gptodo",
        budget={"timeout_s": 60}, brief="b.md", brief_digest="0" * 64),
     msg("idea", "scout", "running", "cell_spawned", f"cell {cell('scout')} was issued for role scout")),
    ("spawn-after-handoff", SUBMITTED,
     ev("cell_spawned", cell=cell("scout"), role="scout", backend="gptodo",
        budget={"timeout_s": 60}, brief="b.md", brief_digest="0" * 64),
     msg("idea", "scout", "submitted", "cell_spawned", f"cell {cell('scout')} is not the running cell")),
    ("submit-pending", [], submitted("scout"),
     msg("idea", "scout", "pending", "handoff_submitted", "the stage must be running")),
    ("submit-twice", SUBMITTED, submitted("scout"),
     msg("idea", "scout", "submitted", "handoff_submitted", "the stage must be running")),
    ("submit-other-cell", RUNNING, submitted("scout", 2),
     msg("idea", "scout", "running", "handoff_submitted",
         f"cell {cell('scout', 2)} is not the cell assigned to this stage")),
    ("submit-other-stage", RUNNING,
     ev("handoff_submitted", stage="build", cell=cell("scout"), contract="c", handoff={}),
     msg("idea", "scout", "running", "handoff_submitted", "the current stage is scout, not build")),
    ("violation-after-handoff", SUBMITTED,
     ev("contract_violation", stage="scout", cell=cell("scout"), attempts=3, errors=["x: bad"]),
     msg("idea", "scout", "submitted", "contract_violation", "the stage must be running")),
    ("violation-other-cell", RUNNING,
     ev("contract_violation", stage="scout", cell=cell("scout", 2), attempts=3, errors=["x: bad"]),
     msg("idea", "scout", "running", "contract_violation",
         f"cell {cell('scout', 2)} is not the cell assigned to this stage")),
    ("finish-unknown-cell", [], finished("scout"),
     msg("idea", "scout", "pending", "cell_finished",
         f"cell {cell('scout')} is unknown or already finished")),
    ("finish-twice", [*RUNNING, finished("scout")], finished("scout"),
     msg("idea", "scout", "pending", "cell_finished",
         f"cell {cell('scout')} is unknown or already finished")),
    ("contract-fixed-not-submitted", RUNNING, contract_fixed("scout"),
     msg("idea", "scout", "running", "contract_fixed", "the stage must be submitted")),
    ("gate-passed-not-submitted", RUNNING, gate_passed("scout"),
     msg("idea", "scout", "running", "gate_passed", "the stage must be submitted")),
    ("gate-passed-wrong-cell", SUBMITTED, gate_passed("scout", 2),
     msg("idea", "scout", "submitted", "gate_passed",
         f"cell {cell('scout', 2)} is not the cell assigned to this stage")),
    ("gate-passed-wrong-state", SUBMITTED,
     ev("gate_passed", stage="scout", cell=cell("scout"), gate="contract", state="verified"),
     msg("idea", "scout", "submitted", "gate_passed", "stage scout produces designed")),
    ("gate-failed-running", RUNNING, gate_failed("scout"),
     msg("idea", "scout", "running", "gate_failed", "the stage must be submitted")),
    ("gate-failed-wrong-cell", SUBMITTED, gate_failed("scout", 2),
     msg("idea", "scout", "submitted", "gate_failed",
         f"cell {cell('scout', 2)} is not the cell assigned to this stage")),
    ("approval-not-awaiting", SUBMITTED, ev("approval_requested", stage="scout"),
     msg("idea", "scout", "submitted", "approval_requested", "the stage must be awaiting_approval")),
    ("review-not-awaiting", SUBMITTED,
     ev("reviewed", stage="scout", reviewer="erik", decision="approve"),
     msg("idea", "scout", "submitted", "reviewed", "the stage must be awaiting_approval")),
    ("rework-later-stage", [*SUBMITTED, gate_failed("scout")],
     ev("rework", from_stage="scout", to_stage="build", retry_note="x"),
     msg("idea", "scout", "pending", "rework", "build is not an earlier stage of the line")),
    ("rework-same-stage", [*SUBMITTED, gate_failed("scout")],
     ev("rework", from_stage="scout", to_stage="scout", retry_note="x"),
     msg("idea", "scout", "pending", "rework", "scout is not an earlier stage of the line")),
    ("rework-unknown-stage", [*through("scout"), started("build"), submitted("build"),
                              gate_failed("build")],
     ev("rework", from_stage="build", to_stage="design", retry_note="x"),
     msg("designed", "build", "pending", "rework", "design is not an earlier stage of the line")),
    ("rework-while-running", [*through("scout"), started("build")],
     ev("rework", from_stage="build", to_stage="scout", retry_note="x"),
     msg("designed", "build", "running", "rework", "the stage must be pending")),
    ("exhausted-while-running", RUNNING, ev("attempts_exhausted", stage="scout", attempts=1),
     msg("idea", "scout", "running", "attempts_exhausted", "the stage must be pending")),
    ("exhausted-wrong-count", [*RUNNING, finished("scout")],
     ev("attempts_exhausted", stage="scout", attempts=3),
     msg("idea", "scout", "pending", "attempts_exhausted", "stage scout used 1 attempts, not 3")),
    ("exhausted-never-started", [], ev("attempts_exhausted", stage="scout", attempts=1),
     msg("idea", "scout", "pending", "attempts_exhausted", "stage scout used 0 attempts, not 1")),
    ("renew-without-lease", RUNNING, ev("lease_renewed", cell=cell("scout"), until=LATER),
     msg("idea", "scout", "running", "lease_renewed",
         f"cell {cell('scout')} was claimed without a lease")),
    ("renew-not-running", [*LEASED, submitted("scout")],
     ev("lease_renewed", cell=cell("scout"), until=LATER),
     msg("idea", "scout", "submitted", "lease_renewed", f"cell {cell('scout')} is not the running cell")),
    ("take-over-after-handoff", [*LEASED, submitted("scout")],
     ev("claim_taken_over", cell=cell("scout"), lease_until=AT),
     msg("idea", "scout", "submitted", "claim_taken_over",
         f"cell {cell('scout')} is not the running cell")),
    ("publish-not-package", SUBMITTED, ev("published", target="pr", where="gh:x/y#1"),
     msg("idea", "scout", "submitted", "published", "publishing belongs to a package stage")),
    ("publish-package-running", [*through("scout", "build", "verify"), started("package")],
     ev("published", target="pr", where="gh:x/y#1"),
     msg("verified", "package", "running", "published", "the stage must be submitted")),
    ("close-early", SUBMITTED, ev("closed", terminal="x"),
     msg("idea", "scout", "submitted", "closed", "close after the line's last stage has passed")),
    ("close-neither", DONE, ev("closed"),
     msg("measured", "-", "done", "closed", "name exactly one of a successor or a terminal reason")),
    ("close-both", DONE, ev("closed", successor="next-1", terminal="x"),
     msg("measured", "-", "done", "closed", "name exactly one of a successor or a terminal reason")),
    ("close-twice", [*DONE, ev("closed", terminal="x")], ev("closed", terminal="y"),
     msg("closed", "-", "done", "closed", "the artifact is already closed")),
    ("reject-abandoned", ABANDONED, ev("rejected", reason="no"),
     msg("abandoned", "-", "pending", "rejected", "the artifact is already abandoned")),
    ("abandon-closed", [*DONE, ev("closed", terminal="x")], ev("abandoned", reason="no"),
     msg("closed", "-", "done", "abandoned", "the artifact is already closed")),
]


@pytest.mark.parametrize(("prefix", "event", "message"), [c[1:] for c in ILLEGAL],
                         ids=[c[0] for c in ILLEGAL])
def test_illegal_transition(prefix: list[Event], event: Event, message: str) -> None:
    view = view_after(prefix)
    before = copy.deepcopy(view)
    with pytest.raises(IllegalTransition) as err:
        apply_ev(view, event)
    assert str(err.value) == message
    assert view == before, "a refused event must leave the view untouched"


# A fork resolution changes no state (the chain already follows the kept branch): it is
# never illegal in an artifact's history.
ALWAYS_LEGAL = {"fork_resolved"}


def test_every_event_kind_is_in_the_tables() -> None:
    kinds = {c[2].kind for c in [*LEGAL, *LEGAL_APPROVAL]}
    assert kinds == set(EVENT_KINDS)
    assert {c[2].kind for c in ILLEGAL} == set(EVENT_KINDS) - ALWAYS_LEGAL


def test_review_after_approval_line_is_not_awaiting() -> None:
    view = view_after([*AWAITING, ev("reviewed", stage="scout", reviewer="e", decision="approve")],
                      APPROVAL)
    with pytest.raises(IllegalTransition, match="the current stage is build, not scout"):
        apply_ev(view, ev("reviewed", stage="scout", reviewer="e", decision="approve"))


def test_replay_raises_on_an_impossible_history() -> None:
    with pytest.raises(IllegalTransition, match="the stage must be running"):
        replay(INTAKE, DEFAULT, [started("scout"), submitted("scout"), submitted("scout")])


# -- invariants -------------------------------------------------------------------------

def assert_legal(view: ArtifactView) -> None:
    """What any replayable history must leave behind."""
    line = view.line
    names = [s.name for s in line.stages]
    produced = {s.produces for s in line.stages}
    assert view.state in {"idea", *produced, *FINAL_STATES}
    assert 0 <= view.stage_index <= len(names)
    assert view.status in ("pending", "running", "submitted", "awaiting_approval", "blocked", "done")
    assert set(view.attempts) <= set(names)
    assert all(n >= 1 for n in view.attempts.values())
    for c in view.cells.values():
        assert c.stage in names and c.attempt >= 1
    if view.state == "closed":
        assert view.closed is not None and view.stage_index == len(names)
        assert bool(view.closed.successor) != bool(view.closed.terminal)
    if view.is_final:
        assert view.cell is None and view.stage is None
        return
    assert view.state == (line.stages[view.stage_index - 1].produces if view.stage_index else "idea")
    assert (view.status == "done") == (view.stage_index == len(names))
    current = view.stage
    if view.status in ("running", "submitted") or view.blocked_by == "environment_gate":
        assert current is not None and view.cell is not None
        assert view.cells[view.cell].stage == current.name
        assert view.cells[view.cell].attempt == view.attempts[current.name]
    else:
        assert view.cell is None
    if view.status == "submitted" or view.blocked_by == "environment_gate":
        assert current is not None and current.name in view.handoffs
    awaiting = {current.name} if view.status == "awaiting_approval" and current else set()
    assert set(view.gates) == set(names[: view.stage_index]) | awaiting
    for name in names[: view.stage_index]:
        assert view.gates[name].state == line.stages[names.index(name)].produces


# -- hypothesis: guided random histories --------------------------------------------------

LINES = [DEFAULT, APPROVAL,
         LineConfig(stages=[StageConfig(name="plan", role="scout", produces="designed",
                                        approval=True),
                            StageConfig(name="make", role="builder", gate="patch",
                                        produces="patched", attempts=1)])]
OUTCOMES = ["handoff", "no_handoff", "timed_out", "over_budget", "crashed", "killed"]


LIKELY = {
    "pending": ["stage_started", "rework", "attempts_exhausted"],
    "blocked": ["stage_started", "gate_passed"],
    "running": ["handoff_submitted", "handoff_submitted", "cell_spawned", "cell_finished",
                "contract_violation", "environment_failed", "lease_renewed",
                "claim_taken_over"],
    "submitted": ["gate_passed", "gate_passed", "gate_failed", "published", "cell_finished",
                  "environment_failed"],
    "awaiting_approval": ["reviewed", "approval_requested"],
    "done": ["closed"],
}


def pick(data: st.DataObject, options: list[Any]) -> Any:
    """One of `options` (a single integer draw: cheaper than building a strategy per draw)."""
    return options[data.draw(st.integers(0, len(options) - 1))]


def draw_event(data: st.DataObject, view: ArtifactView) -> Event:
    """A mostly plausible next event: mostly what the view's status allows, plus noise."""
    names = [s.name for s in view.line.stages]
    current = view.stage.name if view.stage else names[-1]
    kind = pick(data, [*LIKELY[view.status] * 6, *EVENT_KINDS])
    if kind in ("rejected", "abandoned") and pick(data, [True] * 9 + [False]):
        # Final events end a history: keep them rare so that most histories go deep.
        kind = pick(data, LIKELY[view.status])
    stage = pick(data, [current] * 8 + [*names, "nope"])
    spec = next((s for s in view.line.stages if s.name == stage), None)
    used = view.attempts.get(stage, 0)

    def a_cell() -> str:
        choices = [*([view.cell] * 6 if view.cell else []), *sorted(view.cells), "new"]
        c = pick(data, choices)
        return f"{AID}.{stage}.{len(view.cells):04x}" if c == "new" else c

    f: dict[str, Any] = {}
    if kind == "stage_started":
        role = pick(data, [spec.role if spec else "scout"] * 6 + ["builder", "wizard"])
        f = {"stage": stage, "role": role, "cell": f"{AID}.{stage}.{len(view.cells):04x}",
             "attempt": pick(data, [used + 1] * 4 + [max(used, 1), used + 2])}
    elif kind == "cell_spawned":
        c = a_cell()
        cv = view.cells.get(c)
        f = {"cell": c, "role": pick(data, [cv.role if cv else "scout"] * 4 + ["wizard"]),
             "backend": "gptodo", "budget": {"timeout_s": 60}, "brief": "b.md",
             "brief_digest": "0" * 64}
    elif kind == "handoff_submitted":
        f = {"stage": stage, "cell": a_cell(), "contract": "c",
             "handoff": {"n": len(view.handoffs)}}
    elif kind == "gate_passed":
        produces = spec.produces if spec else "designed"
        f = {"stage": stage, "cell": a_cell(), "gate": "contract",
             "state": pick(data, [produces] * 4 + ["verified"])}
    elif kind == "contract_fixed":
        return contract_fixed(stage) if pick(data, [True, False]) else ev(
            "contract_fixed", stage=stage, cell=a_cell(), evidence="pass-to-pass",
            checks=[{"id": "line-1", "command": "true", "timeout_s": 1, "source": "line"}])
    elif kind == "gate_failed":
        f = {"stage": stage, "cell": a_cell(), "gate": "contract", "reasons": ["r"],
             "failure_summary": "s"}
    elif kind == "rework":
        earlier = names[: max(view.stage_index, 1)]
        f = {"from_stage": stage, "to_stage": pick(data, [*earlier * 3, *names]),
             "retry_note": "again"}
    elif kind == "attempts_exhausted":
        f = {"stage": stage, "attempts": pick(data, [max(used, 1)] * 3 + [used + 1])}
    elif kind == "contract_violation":
        f = {"stage": stage, "cell": a_cell(), "attempts": 3, "errors": ["x: bad"]}
    elif kind == "environment_failed":
        f = {"stage": stage, "cell": a_cell(), "what": pick(data, ["cell", "check"]),
             "failure": "command_not_found", "cause": "pytest: command not found",
             "fix": "install pytest"}
    elif kind == "cell_finished":
        f = {"cell": a_cell(), "outcome": pick(data, OUTCOMES), "wall_s": 1.5}
    elif kind == "lease_renewed":
        f = {"cell": a_cell(), "until": AT}
    elif kind == "claim_taken_over":
        f = {"cell": a_cell(), "host": pick(data, [None, "build-box"]), "lease_until": AT}
    elif kind == "fork_resolved":
        f = {"choices": [{"parent": "1" * 64, "kept": "2" * 64, "discarded": ["3" * 64]}]}
    elif kind == "approval_requested":
        f = {"stage": stage}
    elif kind == "reviewed":
        f = {"stage": stage, "reviewer": "erik",
             "decision": pick(data, ["approve", "approve", "request_changes", "reject"])}
    elif kind in ("rejected", "abandoned"):
        f = {"reason": "because"}
    elif kind == "published":
        f = {"target": "note", "where": "notes/x.md"}
    elif kind == "closed":
        f = pick(data, [{"terminal": "done"}, {"successor": "next-1"}, {},
                        {"successor": "next-1", "terminal": "done"}])
    return ev(kind, **f)


@pytest.mark.slow
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), line=st.sampled_from(LINES), steps=st.integers(1, 60))
def test_accepted_histories_replay_to_legal_states(data: st.DataObject, line: LineConfig,
                                                   steps: int) -> None:
    view = ArtifactView(intake=INTAKE, line=line, last_at=AT)
    accepted: list[Event] = []
    for _ in range(steps):
        event = draw_event(data, view)
        # The line and intake are immutable: share them instead of copying on every step.
        before = copy.deepcopy(view, {id(view.line): view.line, id(view.intake): view.intake})
        try:
            apply_ev(view, event)
        except IllegalTransition:
            assert view == before, f"refused {event.kind} changed the view"
            continue
        accepted.append(event)
        assert_legal(view)
    again = replay(INTAKE, line, accepted)
    assert again == view
    assert again.events == len(accepted)
    if line is DEFAULT:
        assert again.state in (*PROGRESS_STATES, *FINAL_STATES)


def _any_event() -> st.SearchStrategy[Event]:
    stages = st.sampled_from(["scout", "build", "verify", "package", "measure", "zzz"])
    cells = st.builds(lambda s, n: f"{AID}.{s}.{n:04x}", stages, st.integers(0, 3))
    text = st.sampled_from(["x", "because"])
    return st.one_of(
        st.builds(lambda s, r, c, a: ev("stage_started", stage=s, role=r, cell=c, attempt=a),
                  stages, st.sampled_from(["scout", "builder", "verifier", "packager", "analyst"]),
                  cells, st.integers(1, 4)),
        st.builds(lambda s, c: ev("handoff_submitted", stage=s, cell=c, contract="c", handoff={}),
                  stages, cells),
        st.builds(lambda s, c, p: ev("gate_passed", stage=s, cell=c, gate="g", state=p), stages,
                  cells, st.sampled_from(["designed", "patched", "verified", "published",
                                          "measured"])),
        st.builds(lambda s, n: contract_fixed(s, n), stages, st.integers(0, 3)),
        st.builds(lambda s, c: ev("gate_failed", stage=s, cell=c, gate="g", reasons=["r"],
                                  failure_summary="f"), stages, cells),
        st.builds(lambda a, b: ev("rework", from_stage=a, to_stage=b, retry_note="r"), stages,
                  stages),
        st.builds(lambda s, n: ev("attempts_exhausted", stage=s, attempts=n), stages,
                  st.integers(1, 4)),
        st.builds(lambda s, c: ev("contract_violation", stage=s, cell=c, attempts=3,
                                  errors=["e"]), stages, cells),
        st.builds(lambda c, o: ev("cell_finished", cell=c, outcome=o, wall_s=0), cells,
                  st.sampled_from(OUTCOMES)),
        st.builds(lambda c: ev("cell_spawned", cell=c, role="scout", backend="b",
                               budget={"timeout_s": 1}, brief="b", brief_digest="0" * 64), cells),
        st.builds(lambda s: ev("approval_requested", stage=s), stages),
        st.builds(lambda s, d: ev("reviewed", stage=s, reviewer="r", decision=d), stages,
                  st.sampled_from(["approve", "request_changes", "reject"])),
        st.builds(lambda r: ev("rejected", reason=r), text),
        st.builds(lambda r: ev("abandoned", reason=r), text),
        st.builds(lambda t: ev("published", target=t, where="w"),
                  st.sampled_from(["pr", "release", "note"])),
        st.builds(lambda s, t: ev("closed", successor=s, terminal=t),
                  st.sampled_from([None, "next-1"]), st.sampled_from([None, "t"])),
    )


@settings(max_examples=300, deadline=None)
@given(events=st.lists(_any_event(), max_size=40), line=st.sampled_from(LINES))
def test_random_sequences_only_ever_raise_illegal_transition(events: list[Event],
                                                             line: LineConfig) -> None:
    view = ArtifactView(intake=INTAKE, line=line, last_at=AT)
    accepted = []
    for event in events:
        try:
            apply_ev(view, event)
        except IllegalTransition:
            continue
        accepted.append(event)
        assert_legal(view)
    assert replay(INTAKE, line, accepted) == view


# -- hypothesis: random operations through the engine keep the ledger clean ---------------

QUICK_CONFIG = """\
kind: factory_config
schema_version: 1
default_line: quick
lines:
  quick:
    stages:
    - {name: plan, role: scout, produces: designed, attempts: 2, repairs: 1}
    - {name: signoff, role: scout, produces: approved, approval: true, attempts: 2, repairs: 0}
    - {name: measure, role: analyst, gate: outcome, produces: measured, attempts: 1}
"""


def _memo(aid: str) -> dict[str, Any]:
    return {"kind": "scout_memo", "artifact": aid,
            "files": [{"path": "README.md", "why": "it is the project"}],
            "approach": "write it down", "criteria": [{"criterion": 0, "plan": "read it"}],
            "verification_plan": [{"command": "true", "proves": "nothing much"}]}


def _outcome(aid: str) -> dict[str, Any]:
    return {"kind": "outcome_report", "artifact": aid, "terminal": "demand met",
            "adoption": [{"consumer": "erik", "status": "used", "evidence": "said so"}]}


ENGINE_OPS = ["start", "force", "submit", "invalid", "stale", "advance", "approve", "changes",
              "reject_review", "cell_finished", "finish", "close", "close_early"]
LIKELY_OPS = {
    "pending": ["start"], "blocked": ["force"], "running": ["submit", "submit", "invalid",
                                                           "cell_finished"],
    "submitted": ["advance", "advance", "cell_finished"],
    "awaiting_approval": ["approve", "changes", "advance"], "done": ["close"],
}


@pytest.fixture
def quick_ledger(ledger: Ledger) -> Ledger:
    (ledger.dir / "factory.yaml").write_text(QUICK_CONFIG)
    git(ledger.repo.root, "commit", "-qam", "quick line")
    return Ledger.open(ledger.repo.root)


def run_op(op: str, led: Ledger, aid: str, view: ArtifactView, issued: list[str],
           data: st.DataObject) -> object:
    """Call the engine for one operation of the random walk below."""
    stage = view.stage.name if view.stage else "measure"
    good = _outcome(aid) if stage == "measure" else _memo(aid)
    spare = [*issued, f"{aid}.plan.beef"]
    if op in ("start", "force"):
        return engine.start_stage(led, aid, force=op == "force")
    if op == "submit":
        return engine.submit(led, view.cell or pick(data, spare), good)
    if op == "invalid":
        return engine.submit(led, view.cell or spare[-1], {"kind": good["kind"], "artifact": aid})
    if op == "stale":
        return engine.submit(led, pick(data, spare), good)
    if op == "advance":
        return engine.advance(led, aid)
    if op in ("approve", "changes", "reject_review"):
        decision = {"approve": "approve", "changes": "request_changes"}.get(op, "reject")
        return engine.review(led, aid, "erik", decision, "more detail")
    if op == "cell_finished":
        cell = pick(data, [*([view.cell] * 3 if view.cell else []), *spare])
        outcome = pick(data, ["no_handoff", "timed_out", "handoff"])
        return engine.record_cell_finished(led, cell, outcome=outcome, wall_s=2.0)
    if op == "finish":
        return engine.finish(led, aid, pick(data, ["rejected", "abandoned"]), "gone")
    if op == "close":
        return engine.close(led, aid, terminal="demand met")
    assert op == "close_early"
    return engine.close(led, aid, successor=aid)


@pytest.mark.slow
@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_engine_operations_keep_the_ledger_clean(quick_ledger: Ledger, data: st.DataObject) -> None:
    """Random engine calls (mostly plausible ones) on a fresh artifact per example.

    Every call either records legal events or raises a FactoryError; a refused or invalid
    handoff commits nothing (unless it spends the repair budget); `verify` stays clean.
    """
    led = quick_ledger
    aid = new_intake(led, title="machine", demand="me", consumers=["erik"],
                     acceptance=["it works"]).artifact
    issued: list[str] = []
    for _ in range(data.draw(st.integers(5, 40))):
        view = engine.load(led, aid)[1]
        if view.is_final:
            break
        op = pick(data, [*LIKELY_OPS[view.status] * 4, *ENGINE_OPS])
        if op == "finish" and pick(data, [True] * 4 + [False]):
            continue  # keep artifacts alive most of the time
        head = led.repo.head()
        try:
            result = run_op(op, led, aid, view, issued, data)
        except (HandoffRefused, InvalidHandoff) as exc:
            spent = "contract_violation was recorded" in str(exc)
            assert spent or led.repo.head() == head, f"{op} was refused but committed: {exc}"
        except FactoryError:
            pass
        else:
            if isinstance(result, engine.StartedStage):
                issued.append(result.cell)
        assert [str(p) for p in verify_artifact(led, aid)] == []
        assert_legal(engine.load(led, aid)[1])


def test_engine_refusals_are_factory_errors(quick_ledger: Ledger) -> None:
    """Bad arguments to the engine API are FactoryErrors naming the field, never tracebacks."""
    led = quick_ledger
    aid = new_intake(led, title="t", demand="me", consumers=["erik"], acceptance=["a"]).artifact
    head = led.repo.head()
    with pytest.raises(IllegalTransition, match=f"cell {aid}.plan.abcd was never issued"):
        engine.record_cell_spawned(led, f"{aid}.plan.abcd", backend="gptodo",
                                   budget=Budget(timeout_s=60), brief_path="b.md", brief=b"x")
    with pytest.raises(UsageError, match="is not a cell id"):
        engine.record_cell_finished(led, "nonsense", outcome="killed", wall_s=1)
    with pytest.raises(InvalidRecord, match="reason: String should have at most 20000"):
        engine.finish(led, aid, "abandoned", "x" * 20_001)
    assert led.repo.head() == head
    s = engine.start_stage(led, aid)
    head = led.repo.head()
    with pytest.raises(InvalidRecord, match="outcome: Input should be"):
        engine.record_cell_finished(led, s.cell, outcome="exploded", wall_s=1)
    assert led.repo.head() == head
    assert [str(p) for p in verify_artifact(led, aid)] == []


def test_long_review_comments_still_start_the_next_attempt(quick_ledger: Ledger) -> None:
    led = quick_ledger
    aid = new_intake(led, title="t", demand="me", consumers=["erik"], acceptance=["a"]).artifact
    for _ in range(2):
        s = engine.start_stage(led, aid)
        engine.submit(led, s.cell, _memo(aid))
        assert engine.advance(led, aid).passed
    engine.review(led, aid, "a reviewer with a long name", "request_changes", "c" * 20_000)
    again = engine.start_stage(led, aid)  # the note is the comments plus a prefix: clipped
    assert len(again.retry_note) == 20_000 and again.retry_note.endswith("[... clipped]")
    assert [str(p) for p in verify_artifact(led, aid)] == []
