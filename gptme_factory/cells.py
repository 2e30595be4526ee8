"""Cells: bounded subagents that each do one stage of one artifact.

Lifecycle, and who records what:

1. `spawn` starts the artifact's current stage (`stage_started`, which issues the cell id),
   prepares the cell's worktree, renders its brief, launches it through a backend and
   records `cell_spawned` (role, backend, budget, brief digest; the brief is committed with
   it). A cap on concurrent cells holds across processes: the check and the launch happen
   under the ledger's writer lock.
2. While it runs, the cell reports progress (runtime only) and submits its handoff
   (`engine.submit`). `enforce` stops cells that are over their wall-clock, token or cost
   budget (measured from their own gptme log), and cells that linger after their handoff.
3. `reap` turns a cell whose process has ended into `cell_finished` — outcome (handoff,
   no_handoff, timed_out, over_budget, crashed, killed), reason, exit code, measured tokens
   and cost, output tail — removes its worktree (a builder's branch stays) and runs the gate.
   `collect` is enforce + reap for every cell not yet reaped.

Everything needed to resume lives in the ledger plus `factory/.runtime/cells/`: a foreman
that dies loses nothing, and the next `collect` or `run` picks the cells up.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from . import cellstate, convlog, engine, runtime, worktrees
from .backends import Backend, LaunchSpec, get_backend, read_output
from .brief import BriefContext, render_brief, render_prompt
from .cellstate import CellRecord
from .cellwatch import Observation, observe
from .checks import tail
from .errors import CellError, FactoryError, HandoffRefused, IllegalTransition
from .ledger import Ledger
from .records import Budget, ContractViolation, HandoffSubmitted, parse_cell_id
from .replay import ArtifactView
from .schemas import contract_schema

DEFAULT_GRACE_S = 30.0
ScriptFn = Callable[[BriefContext], str]


@dataclass
class SpawnOptions:
    """How to launch a cell (None means: from the stage or factory config)."""

    backend: str = "gptodo"
    model: str | None = None
    timeout_s: float | None = None
    max_tokens: int | None = None
    max_cost_usd: float | None = None
    command: str | None = None
    script: ScriptFn | None = None
    force: bool = False
    by: str | None = None


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


def factory_command() -> str:
    """How a cell invokes the factory CLI: `gptme-factory` when it is on PATH."""
    return "gptme-factory" if shutil.which("gptme-factory") else f"{sys.executable} -m gptme_factory"


def _now() -> datetime:
    return datetime.now(timezone.utc)


def resolve_budget(ledger: Ledger, stage_budget: Budget | None, opts: SpawnOptions) -> Budget:
    """Options over the stage's budget over the factory's."""
    base = stage_budget or ledger.config.budget
    return Budget(
        timeout_s=opts.timeout_s if opts.timeout_s is not None else base.timeout_s,
        max_tokens=opts.max_tokens if opts.max_tokens is not None else base.max_tokens,
        max_cost_usd=opts.max_cost_usd if opts.max_cost_usd is not None else base.max_cost_usd,
    )


def live(ledger: Ledger) -> list[CellRecord]:
    """Cells launched from this machine and not reaped yet."""
    return cellstate.load_all(ledger.runtime_dir)


def _backend(rec: CellRecord) -> Backend:
    return get_backend(rec.backend)


def running_count(ledger: Ledger) -> int:
    """How many launched cells still have a live process."""
    return sum(1 for r in live(ledger) if _backend(r).alive(r))


def _brief_context(ledger: Ledger, view: ArtifactView, started: engine.StartedStage,
                   wd: worktrees.Workdir, budget: Budget, brief_rel: str) -> BriefContext:
    cfg = ledger.config
    stage = cfg.stage(view.intake.line, started.stage)
    role = cfg.role(started.role)
    contract = cfg.contract_name(stage)
    earlier = [(st.name, st.role, view.handoffs[st.name])
               for st in view.line.stages[: view.stage_index] if st.name in view.handoffs]
    return BriefContext(
        cell=started.cell, artifact=started.artifact, stage=started.stage, role=started.role,
        role_description=role.description, read_only=role.read_only, attempt=started.attempt,
        attempts=stage.attempts, contract=contract, schema=contract_schema(cfg, contract),
        intake=view.intake.model_dump(mode="json"), budget=budget.model_dump(),
        brain=str(ledger.repo.root), workdir=str(wd.path), factory_cmd=factory_command(),
        brief_path=brief_rel, retry_note=started.retry_note, earlier=earlier,
        base_commit=started.base_commit, branch=wd.branch,
        commit=wd.commit if wd.read_only else None, repairs=stage.repairs,
        runtime_dir=str(ledger.runtime_dir),
    )


def spawn(ledger: Ledger, artifact: str, opts: SpawnOptions | None = None) -> CellRecord:
    """Start the artifact's current stage and launch its cell."""
    opts = opts or SpawnOptions()
    backend = get_backend(opts.backend)
    artifact = ledger.resolve(artifact)
    cap = ledger.config.max_concurrent_cells
    with ledger.locked():
        running = running_count(ledger)
        if running >= cap:
            raise CellError(
                f"{running} cells are running (max_concurrent_cells is {cap}): wait for one "
                "to finish (`gptme-factory collect`) or raise the cap in factory.yaml"
            )
        started = engine.start_stage(ledger, artifact, by=opts.by, force=opts.force)
        rec: CellRecord | None = None
        wd: worktrees.Workdir | None = None
        try:
            _, view = engine.load(ledger, artifact)
            stage = ledger.config.stage(view.intake.line, started.stage)
            role = ledger.config.role(started.role)
            budget = resolve_budget(ledger, stage.budget, opts)
            wd = worktrees.prepare(ledger.repo, view, started.cell, role.read_only,
                                   started.base_commit)
            brief_rel = f"{ledger.rel}/artifacts/{artifact}/briefs/{started.cell}.md"
            ctx = _brief_context(ledger, view, started, wd, budget, brief_rel)
            extra = opts.script(ctx) if opts.script else ""
            ctx.scripted = extra
            brief = render_brief(ctx).encode("utf-8")
            brief_abs = ledger.repo.root / brief_rel
            # Written now so the cell can read it at once; committed with cell_spawned.
            brief_abs.parent.mkdir(parents=True, exist_ok=True)
            brief_abs.write_bytes(brief)
            prompt = render_prompt(ctx, str(brief_abs), extra)
            prompt_file = cellstate.cells_dir(ledger.runtime_dir) / f"{started.cell}.prompt.md"
            prompt_file.parent.mkdir(parents=True, exist_ok=True)
            prompt_file.write_text(prompt)
            rec = CellRecord(
                cell=started.cell, artifact=artifact, stage=started.stage, role=started.role,
                backend=backend.name, started_at=_now().isoformat(), workdir=str(wd.path),
                timeout_s=budget.timeout_s, brain=str(ledger.repo.root),
                max_tokens=budget.max_tokens, max_cost_usd=budget.max_cost_usd,
                model=opts.model, branch=wd.branch, read_only=wd.read_only, brief=brief_rel)
            spec = LaunchSpec(
                cell=started.cell, role=started.role, gptodo_type=role.gptodo_type,
                prompt=prompt, prompt_file=prompt_file, brief_file=brief_abs, workdir=wd.path,
                brain=ledger.repo.root, runtime_dir=ledger.runtime_dir,
                title=f"{started.role} {started.stage} for {artifact}: {view.intake.title}",
                model=opts.model, timeout_s=budget.timeout_s, command=opts.command)
            backend.launch(spec, rec)
            cellstate.save(ledger.runtime_dir, rec)
            engine.record_cell_spawned(
                ledger, started.cell, backend=backend.name, budget=budget, brief_path=brief_rel,
                brief=brief, model=opts.model, session=rec.session, workdir=str(wd.path),
                by=opts.by)
        except BaseException as exc:
            _abort_launch(ledger, started.cell, backend, rec, wd, exc)
            raise
    return rec


def _abort_launch(ledger: Ledger, cell: str, backend: Backend, rec: CellRecord | None,
                  wd: worktrees.Workdir | None, exc: BaseException) -> None:
    """A launch that failed half-way: stop what started and fail the attempt."""
    if rec is not None and (rec.pid or rec.session):
        backend.stop(rec)
    cellstate.remove(ledger.runtime_dir, cell)
    if wd is not None:
        worktrees.discard(ledger.repo, wd.path)
    try:
        engine.record_cell_finished(ledger, cell, outcome="crashed", wall_s=0.0,
                                    reason=f"could not launch: {str(exc)[:500]}")
    except FactoryError:
        pass  # the ledger itself failed; the foreman reports the original error


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
        r = ev.record
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


def reap(ledger: Ledger, rec: CellRecord, *, advance: bool = True) -> Reaped | None:
    """Record the end of a cell whose process has ended; None while it still runs."""
    backend = _backend(rec)
    if backend.alive(rec):
        return None
    handed, violated, view = _handoff_state(ledger, rec)
    now = _now()
    wall = max(0.0, (now - rec.started).total_seconds())
    conv = rec.conversation
    if conv is None:
        found = convlog.find_conversation(rec.workdir, rec.started.timestamp(), rec.cell)
        conv = str(found) if found else None
    usage = convlog.read_usage(Path(conv), in_flight=rec.stop is not None) if conv else None
    code = backend.exit_code(rec)
    outcome, reason = _outcome(rec, handed, violated, code)
    notes = [reason] if reason else []
    if rec.read_only:
        dirty = worktrees.changed_files(ledger.repo, Path(rec.workdir))
        if dirty:
            notes.append("read-only cell changed files (discarded): " + ", ".join(dirty[:10]))
    if usage is not None and not usage.measured:
        notes.append("tokens estimated from its gptme log (the model reported no usage)")
    elif usage is None:
        notes.append("its gptme conversation log was not found: cost unknown")
    tokens_in = usage.tokens_in if usage else None
    tokens_out = usage.tokens_out if usage else None
    cost = usage.cost_usd if usage else None
    output = tail(convlog.strip_ansi(read_output(rec)), 30, 3000)
    try:
        stored = engine.record_cell_finished(
            ledger, rec.cell, outcome=outcome, wall_s=wall, reason="; ".join(notes)[:2000],
            exit_code=code, tokens_in=tokens_in, tokens_out=tokens_out, cost_usd=cost,
            conversation=conv, output_tail=output)
    except IllegalTransition:
        # Another reaper recorded it first; only its runtime leftovers remain.
        cellstate.remove(ledger.runtime_dir, rec.cell)
        return None
    backend.finalize(rec, outcome)
    worktrees.discard(ledger.repo, Path(rec.workdir))
    cellstate.remove(ledger.runtime_dir, rec.cell)
    result = Reaped(rec.cell, rec.artifact, outcome, "; ".join(notes), round(wall, 1),
                    (tokens_in or 0) + (tokens_out or 0) if usage else None, cost,
                    events=[stored.path])
    if advance and handed:
        _, view = engine.load(ledger, rec.artifact)
        if view.status == "submitted" and view.cell == rec.cell:
            try:
                result.advanced = engine.advance(ledger, rec.artifact)
            except IllegalTransition as exc:
                result.gate_note = str(exc)
    return result


def collect(ledger: Ledger, artifacts: Iterable[str] | None = None, *, advance: bool = True,
            grace_s: float = DEFAULT_GRACE_S) -> tuple[list[Reaped], list[str]]:
    """Enforce budgets, then reap every finished cell (of `artifacts`, if given)."""
    wanted = set(artifacts) if artifacts is not None else None
    recs = [r for r in live(ledger) if wanted is None or r.artifact in wanted]
    said = enforce(ledger, recs, grace_s=grace_s)
    reaped = [r for rec in recs if (r := reap(ledger, rec, advance=advance)) is not None]
    return reaped, said


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


def progress(ledger: Ledger, cell: str, note: str) -> None:
    """Record a cell's progress note (runtime state, not a commit)."""
    try:
        artifact, _ = parse_cell_id(cell)
    except ValueError as exc:
        raise HandoffRefused(f"{exc}; use the cell id from your brief") from None
    if not (ledger.artifacts_dir / artifact / "intake.yaml").is_file():
        raise HandoffRefused(f"cell {cell} names artifact {artifact}, which does not exist")
    if not note.strip():
        raise HandoffRefused("a progress note says what you did or found; it was empty")
    runtime.record_progress(ledger, cell, note)



def run_line(ledger: Ledger, artifact: str, **kwargs: object) -> object:
    """Drive one artifact through its line (see `foreman.run_line`)."""
    from .foreman import run_line as _run_line

    return _run_line(ledger, artifact, **kwargs)  # type: ignore[arg-type]
