"""Reaping cells: enforcing their budgets, and recording how each one ended.

`enforce` stops cells that are past their wall-clock budget, over their token or cost budget
(measured from their own gptme log), or done with their part (handed off, violated their
contract, or their stage moved on) and lingering past a grace period. Reaping a cell whose
process has ended has two steps: `prepare` gathers how it ended — outcome (handoff,
no_handoff, timed_out, over_budget, crashed, killed), reason, exit code, tokens and cost
measured from its own gptme log, output tail — and runs the stage's gate on its handoff,
holding no lock while the checks run; `record` then writes the gate's verdict and the cell's
`cell_finished` as one commit (the decision), removes its worktree (a builder's branch stays)
and forgets the cell. `reap` is both; `collect` reaps every cell not yet reaped. The foreman
records the start of the next stage in the same commit. Two reapers of one cell are
harmless: the ledger refuses a second `cell_finished`, and the loser stops there.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ..envcheck import EnvironmentFailure, classify_cell_exit
from ..errors import CellError, IllegalTransition, LedgerConflict, NotPublished
from ..ledger import runtime
from ..ledger.records import ContractViolation, HandoffSubmitted, parse_cell_id
from ..ledger.store import Ledger
from ..line import claims, engine
from ..line.checks import tail
from ..line.replay import ArtifactView
from . import convlog, taskfile, worktrees
from . import state as cellstate
from .backends import Backend, get_backend, read_output
from .state import CellRecord
from .watch import Observation, observe

DEFAULT_GRACE_S = 30.0


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class Reaped:
    """What reaping one cell recorded."""

    cell: str
    artifact: str
    outcome: str
    reason: str
    wall_s: float
    tokens: int | None
    cost_usd: float | None
    advanced: engine.AdvanceResult | None = None
    gate_note: str = ""
    events: list[str] = field(default_factory=list)
    unpublished: bool = False  # its handoff waits for a publication (the package gate)

    def headline(self) -> str:
        """How it ended in a line: outcome, wall time, measured tokens and cost, reason."""
        cost = f", ${self.cost_usd:.4f}" if self.cost_usd is not None else ""
        tokens = f", {self.tokens:,} tokens" if self.tokens is not None else ""
        return (f"{self.cell}: {self.outcome} after {self.wall_s:.1f} s{tokens}{cost}"
                + (f" ({self.reason})" if self.reason else ""))


@dataclass
class Ending:
    """How a cell ended, gathered by `prepare`, recorded by `record`."""

    rec: CellRecord
    outcome: str
    reason: str
    wall_s: float
    exit_code: int | None
    tokens_in: int | None
    tokens_out: int | None
    cost_usd: float | None
    measured: bool
    conversation: str | None
    output_tail: str
    judgement: engine.Judgement | None = None
    gate_note: str = ""
    environment: EnvironmentFailure | None = None  # it died before working: the machine's fault


def live(ledger: Ledger) -> list[CellRecord]:
    """Cells launched from this machine and not reaped yet."""
    return cellstate.load_all(ledger.runtime_dir)


def _backend(rec: CellRecord) -> Backend:
    return get_backend(rec.backend)


def running_count(ledger: Ledger) -> int:
    """How many launched cells still have a live process."""
    return sum(1 for r in live(ledger) if _backend(r).alive(r))


def observation(ledger: Ledger, rec: CellRecord, now: datetime | None = None) -> Observation:
    """Observe one launched cell."""
    return observe(rec, now or _now(), stall_after_s=ledger.config.stall_after_s,
                   progress=runtime.last_progress(ledger, rec.cell),
                   output_tail=read_output(rec, 8000))


def _handoff_state(ledger: Ledger, rec: CellRecord) -> tuple[bool, bool, ArtifactView]:
    """(handed off, contract violated, view) for a cell, from its artifact's chain."""
    chain, view = engine.load(ledger, rec.artifact)
    handed = violated = False
    for ev in chain.events:
        r = ev.event
        if isinstance(r, HandoffSubmitted) and r.cell == rec.cell:
            handed = True
        elif isinstance(r, ContractViolation) and r.cell == rec.cell:
            violated = True
    return handed, violated, view


def request_stop(ledger: Ledger, rec: CellRecord, outcome: str, reason: str) -> None:
    """Stop a cell now and remember why, for the reaper."""
    if rec.stop is None:
        rec.stop = {"outcome": outcome, "reason": reason}
        cellstate.save(ledger.runtime_dir, rec)
    _backend(rec).stop(rec)


def enforce(ledger: Ledger, recs: Iterable[CellRecord] | None = None, *,
            grace_s: float = DEFAULT_GRACE_S, now: datetime | None = None) -> list[str]:
    """Stop cells past their budget or done with their work; returns sentences saying so."""
    now = now or _now()
    said: list[str] = []
    for rec in list(recs if recs is not None else live(ledger)):
        if rec.stop is not None or not _backend(rec).alive(rec):
            continue
        obs = observation(ledger, rec, now)
        if obs.conversation and rec.conversation is None:
            rec.conversation = obs.conversation  # found once, not searched for every tick
            cellstate.save(ledger.runtime_dir, rec)
        handed, violated, view = _handoff_state(ledger, rec)
        if handed or violated or view.cell != rec.cell:
            # Its part is over (handed off, violated its contract, or the stage moved on):
            # let it wrap up and exit by itself, within a grace period.
            if rec.handoff_seen_at is None:
                rec.handoff_seen_at = now.isoformat()
                cellstate.save(ledger.runtime_dir, rec)
            waited = (now - datetime.fromisoformat(rec.handoff_seen_at)).total_seconds()
            if waited >= grace_s:
                what = ("its handoff" if handed else "its contract violation" if violated
                        else f"its stage moved on ({view.state}, {view.status})")
                why = f"stopped {waited:.0f} s after {what}"
                request_stop(ledger, rec, "handoff" if handed else "no_handoff", why)
                said.append(f"{rec.cell}: {why}")
        elif obs.time_left_s <= 0:
            why = f"ran {obs.elapsed_s:.0f} s, past its {rec.timeout_s:g} s wall-clock budget"
            request_stop(ledger, rec, "timed_out", why)
            said.append(f"{rec.cell}: timed out: {why}")
        elif obs.over_budget:
            request_stop(ledger, rec, "over_budget", obs.over_budget)
            said.append(f"{rec.cell}: over budget: {obs.over_budget}")
    return said


def _outcome(rec: CellRecord, handed: bool, violated: bool, code: int | None) -> tuple[str, str]:
    stop = rec.stop or {}
    if handed:
        return "handoff", stop.get("reason", "") if stop.get("outcome") == "handoff" else ""
    if violated:
        why = "its handoffs stayed invalid past the repair budget"
        return "no_handoff", why + (f"; {stop['reason']}" if stop else "")
    if stop:
        return stop["outcome"], stop.get("reason", "")
    if code is None:
        return "crashed", ("the process ended without an exit status and without a handoff "
                           "(killed outside the factory?)")
    if code != 0:
        return "crashed", f"exited with status {code} without a handoff"
    return "no_handoff", "exited without submitting a handoff"


def prepare(ledger: Ledger, rec: CellRecord, *, advance: bool = True) -> Ending | None:
    """How a cell whose process ended ended, and its gate's verdict; None while it runs.

    Records nothing; the gate's checks run here, with no lock held.
    """
    backend = _backend(rec)
    if backend.alive(rec):
        return None
    handed, violated, view = _handoff_state(ledger, rec)
    wall = max(0.0, (_now() - rec.started).total_seconds())
    conv = rec.conversation
    if conv is None:
        found = convlog.find_conversation(rec.workdir, rec.started.timestamp(), rec.cell)
        conv = str(found) if found else None
    usage = convlog.read_usage(Path(conv), in_flight=rec.stop is not None) if conv else None
    code = backend.exit_code(rec)
    output = read_output(rec)
    outcome, reason = _outcome(rec, handed, violated, code)
    environment = None
    if outcome == "crashed" and view.cell == rec.cell and view.status == "running":
        environment = classify_cell_exit(code, output)
        if environment is not None:
            reason = f"environment: {environment.summary()}"
    notes = [reason] if reason else []
    if rec.read_only:
        dirty = worktrees.changed_files(worktrees.repo_of(rec.repo, ledger.repo),
                                        Path(rec.workdir))
        if dirty:
            notes.append("read-only cell changed files (discarded): " + ", ".join(dirty[:10]))
    if usage is not None and not usage.measured:
        notes.append("tokens estimated from its gptme log (the model reported no usage)")
    elif usage is None:
        notes.append("its gptme conversation log was not found: cost unknown")
    ending = Ending(
        rec, outcome, "; ".join(notes)[:2000], wall, code,
        usage.tokens_in if usage else None, usage.tokens_out if usage else None,
        usage.cost_usd if usage else None, usage is not None, conv,
        tail(convlog.clean_output(output), 30, 3000), environment=environment)
    if advance and handed and view.status == "submitted" and view.cell == rec.cell:
        try:
            ending.judgement = engine.judge(ledger, rec.artifact)
        except IllegalTransition as exc:
            ending.gate_note = str(exc)
    return ending


def record(ledger: Ledger, ending: Ending) -> Reaped | None:
    """Record a prepared ending — its gate verdict, then `cell_finished` — as one commit.

    None when another reaper recorded this cell first (only its runtime leftovers go).
    """
    rec = ending.rec
    result = Reaped(rec.cell, rec.artifact, ending.outcome, ending.reason,
                    round(ending.wall_s, 1),
                    (ending.tokens_in or 0) + (ending.tokens_out or 0) if ending.measured
                    else None, ending.cost_usd, gate_note=ending.gate_note)
    with ledger.transaction():
        if ending.judgement is not None:
            try:
                result.advanced = engine.record_verdict(ledger, ending.judgement)
            except NotPublished as exc:
                result.unpublished, result.gate_note = True, str(exc)
            except LedgerConflict as exc:
                result.gate_note = str(exc)  # another process advanced it meanwhile
        if ending.environment is not None:
            try:
                engine.record_cell_environment(ledger, rec.cell, ending.environment)
            except IllegalTransition:
                pass  # another reaper recorded this cell first: cell_finished says so below
        try:
            stored = engine.record_cell_finished(
                ledger, rec.cell, outcome=ending.outcome, wall_s=ending.wall_s,
                reason=ending.reason, exit_code=ending.exit_code, tokens_in=ending.tokens_in,
                tokens_out=ending.tokens_out, cost_usd=ending.cost_usd,
                # its name under gptme's logs dir: a path of this machine means nothing in a PR
                conversation=Path(ending.conversation).name if ending.conversation else None,
                output_tail=ending.output_tail)
        except IllegalTransition:
            stored = None
    if not ledger.in_transaction:
        claims.push_pending(ledger, f"the end of {rec.cell}")  # a shared ledger's, at once
    if stored is None:
        cellstate.remove(ledger.runtime_dir, rec.cell)
        return None
    _backend(rec).finalize(rec, ending.outcome)
    worktrees.discard(worktrees.repo_of(rec.repo, ledger.repo), Path(rec.workdir))
    cellstate.remove(ledger.runtime_dir, rec.cell)
    result.events = [*(result.advanced.events if result.advanced else []), stored.path]
    if not ledger.in_transaction:  # (inside one, whoever opened it decides what follows)
        taskfile.sync_person_task(ledger, rec.artifact)
    return result


def reap(ledger: Ledger, rec: CellRecord, *, advance: bool = True) -> Reaped | None:
    """Record the end of a cell whose process has ended (and its gate); None while it runs."""
    ending = prepare(ledger, rec, advance=advance)
    return record(ledger, ending) if ending is not None else None


def collect(ledger: Ledger, artifacts: Iterable[str] | None = None, *, advance: bool = True,
            grace_s: float = DEFAULT_GRACE_S) -> tuple[list[Reaped], list[str]]:
    """Enforce budgets, then reap every finished cell (of `artifacts`, if given)."""
    wanted = set(artifacts) if artifacts is not None else None
    recs = [r for r in live(ledger) if wanted is None or r.artifact in wanted]
    said = enforce(ledger, recs, grace_s=grace_s)
    reaped = [r for rec in recs if (r := reap(ledger, rec, advance=advance)) is not None]
    return reaped, said


def wait(ledger: Ledger, artifacts: Iterable[str] | None = None, *, timeout_s: float = 600.0,
         poll_s: float = 1.0, grace_s: float = DEFAULT_GRACE_S,
         advance: bool = True) -> tuple[list[Reaped], list[str], list[str]]:
    """Collect until no cell of `artifacts` (of any, if None) is left, or `timeout_s` passes.

    Returns what `collect` returns over the whole wait, and the cells still running.
    """
    wanted = set(artifacts) if artifacts is not None else None

    def still() -> list[str]:
        return [r.cell for r in live(ledger) if wanted is None or r.artifact in wanted]

    deadline = time.monotonic() + max(0.0, timeout_s)
    reaped: list[Reaped] = []
    said: list[str] = []
    while True:
        got, told = collect(ledger, wanted, advance=advance, grace_s=grace_s)
        reaped += got
        said += told
        left = still()
        if not left or time.monotonic() >= deadline:
            return reaped, said, left
        time.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))


def kill(ledger: Ledger, cell: str, reason: str = "") -> Reaped | None:
    """Stop a cell at a person's request and record it as killed."""
    try:
        artifact, _ = parse_cell_id(cell)
    except ValueError as exc:
        raise CellError(str(exc)) from None
    why = reason or "killed by request"
    rec = cellstate.load(ledger.runtime_dir, cell)
    if rec is not None:
        rec.stop = None
        request_stop(ledger, rec, "killed", why)
        return reap(ledger, rec)
    _, view = engine.load(ledger, artifact)
    cv = view.cells.get(cell)
    if cv is None or cv.outcome is not None:
        raise CellError(f"cell {cell} is not running (unknown, or already finished)")
    engine.record_cell_finished(ledger, cell, outcome="killed", wall_s=0.0,
                                reason=f"{why} (no process of it is known on this machine)")
    return Reaped(cell, artifact, "killed", why, 0.0, None, None)


