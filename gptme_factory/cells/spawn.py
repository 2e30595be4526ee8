"""Spawning a cell: a bounded subagent that does one stage of one artifact.

Lifecycle, and who records what:

1. `spawn` starts the artifact's current stage (`stage_started`, which issues the cell id),
   prepares the cell's worktree in the artifact's target (worktrees.py; the target's base is
   fetched first, before the lock), renders its brief (brief.py), launches it
   through a backend (backends/) and records `cell_spawned` (role, backend, budget, brief
   digest; the brief is committed with it) — the start and the spawn land as one commit. A
   cap on concurrent cells holds across processes: the count and the launch happen under the
   ledger's writer lock.
2. While it runs, the cell reports progress (`progress`, runtime only) and submits its
   handoff (`engine.submit`); `status` shows it (views/cellboard.py).
3. reaper.py stops it when it is over budget or done, and records how it ended; the
   foreman (foreman.py) loops over all of this for whole lines.

Everything needed to resume lives in the ledger plus `factory/.runtime/cells/`: a foreman
that dies loses nothing, and the next `collect` or `run` picks the cells up.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..errors import CellCapacity, FactoryError, HandoffRefused
from ..ledger import runtime
from ..ledger.examples import example
from ..ledger.gitstore import GitRepo
from ..ledger.records import Budget, parse_cell_id
from ..ledger.schemas import contract_schema
from ..ledger.store import Ledger
from ..line import claims, engine
from ..line.replay import ArtifactView
from ..targets.registry import Target, of_intake
from . import preflight, taskfile, watchdog, worktrees
from . import state as cellstate
from .backends import Backend, LaunchSpec, get_backend
from .brief import BriefContext, render_brief, render_prompt
from .reaper import (
    DEFAULT_GRACE_S,
    Reaped,
    collect,
    enforce,
    kill,
    live,
    observation,
    reap,
    request_stop,
    running_count,
    wait,
)
from .state import CellRecord

__all__ = [
    "DEFAULT_GRACE_S", "Reaped", "ScriptFn", "SpawnOptions", "collect", "enforce",
    "factory_command", "kill", "live", "observation", "progress", "reap", "request_stop",
    "resolve_budget", "running_count", "spawn", "wait",
]

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
    take_over: bool = False  # take over a stage whose claim's lease expired (shared ledger)


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


def portable_path(ledger: Ledger, path: Path) -> str:
    """`path` as committed records hold it: relative to the brain repo (never this machine's)."""
    try:
        return path.resolve().relative_to(ledger.repo.root.resolve()).as_posix()
    except ValueError:
        return path.name


def portable_in(root: Path, path: Path) -> str:
    """`path` relative to a target's clone (`.git/factory-worktrees/<cell>`), else its name."""
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.name


def _brief_context(ledger: Ledger, view: ArtifactView, started: engine.StartedStage,
                   wd: worktrees.Workdir, budget: Budget, brief_rel: str,
                   target: Target) -> BriefContext:
    cfg = ledger.config
    stage = cfg.stage(view.intake.line, started.stage)
    verify = next((st for st in view.line.stages if st.gate == "evidence"), None)
    # The commands the verify gate requires (line and target), without the scout's plan.
    required = [*(verify.checks if verify else []), *target.checks]
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
        example=example(cfg, contract, artifact=started.artifact,
                        criteria=len(view.intake.acceptance), consumers=view.intake.consumers,
                        base=started.base_commit or "BASE-COMMIT", branch=wd.branch or "BRANCH",
                        commit=wd.commit if wd.read_only else "COMMIT"),
        target=None if target.is_brain else target.describe(),
        checks=list(dict.fromkeys(required)),
    )


def spawn(ledger: Ledger, artifact: str, opts: SpawnOptions | None = None) -> CellRecord:
    """Start the artifact's current stage and launch its cell."""
    opts = opts or SpawnOptions()
    backend = get_backend(opts.backend)
    artifact = claims.find_artifact(ledger, artifact)
    _, view = engine.load(ledger, artifact)
    if view.stage is not None:  # a final or finished artifact: start_stage says why below
        preflight.check(ledger, view, view.stage, model=opts.model, backend=opts.backend,
                        command=opts.command)
    cap = ledger.config.max_concurrent_cells
    engine.refresh_base(ledger, artifact)  # the network, before the lock
    with ledger.transaction():  # the start, the launch and cell_spawned land as one commit
        running = running_count(ledger)
        if running >= cap:
            raise CellCapacity(
                f"{running} cells are running (max_concurrent_cells is {cap}): wait for one "
                "to finish (`gptme-factory collect`) or raise the cap in factory.yaml"
            )
        started = engine.start_stage(ledger, artifact, by=opts.by, force=opts.force,
                                     take_over=opts.take_over)
        rec: CellRecord | None = None
        wd: worktrees.Workdir | None = None
        target_repo = ledger.repo
        brief_abs: Path | None = None
        committed = False
        try:
            _, view = engine.load(ledger, artifact)
            stage = ledger.config.stage(view.intake.line, started.stage)
            role = ledger.config.role(started.role)
            budget = resolve_budget(ledger, stage.budget, opts)
            target = of_intake(ledger, view.intake)
            target_repo = target.repo
            wd = worktrees.prepare(target.repo, view, started.cell, role.read_only,
                                   started.base_commit)
            brief_rel = f"{ledger.artifact_rel(artifact)}/briefs/{started.cell}.md"
            ctx = _brief_context(ledger, view, started, wd, budget, brief_rel, target)
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
                repo="" if target.is_brain else str(target.repo.root),
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
                brief=brief, model=opts.model, session=rec.session,
                workdir=portable_path(ledger, wd.path) if target.is_brain
                else f"{target.name}:{portable_in(target.repo.root, wd.path)}",
                by=opts.by)
            committed = True
            rec.extra["watchdog_pid"] = watchdog.launch(ledger.repo.root, started.cell)
            cellstate.save(ledger.runtime_dir, rec)
        except BaseException as exc:
            _abort_launch(ledger, started.cell, backend, rec, wd, exc, target_repo)
            if brief_abs is not None and not committed:
                brief_abs.unlink(missing_ok=True)  # never committed: leave no stray file
            raise
    if not ledger.in_transaction:
        taskfile.sync_person_task(ledger, artifact)  # a block it resolved: its task is done
    return rec


def _abort_launch(ledger: Ledger, cell: str, backend: Backend, rec: CellRecord | None,
                  wd: worktrees.Workdir | None, exc: BaseException, repo: GitRepo) -> None:
    """A launch that failed half-way: stop what started and fail the attempt."""
    if rec is not None and (rec.pid or rec.session):
        backend.stop(rec)
    cellstate.remove(ledger.runtime_dir, cell)
    if wd is not None:
        worktrees.discard(repo, wd.path)
    try:
        engine.record_cell_finished(ledger, cell, outcome="crashed", wall_s=0.0,
                                    reason=f"could not launch: {str(exc)[:500]}")
    except FactoryError:
        pass  # the ledger itself failed; the foreman reports the original error


def progress(ledger: Ledger, cell: str, note: str) -> datetime | None:
    """Record a cell's progress note (runtime state, not a commit).

    On a shared ledger it also renews the cell's claim when half its lease has run out (a
    small `lease_renewed` commit, pushed at once: line/claims.py); returns the new expiry
    then. ClaimLost if the claim was taken over meanwhile: the cell should stop.
    """
    try:
        artifact, _ = parse_cell_id(cell)
    except ValueError as exc:
        raise HandoffRefused(f"{exc}; use the cell id from your brief") from None
    if not (ledger.artifact_dir(artifact) / "intake.yaml").is_file():
        raise HandoffRefused(f"cell {cell} names artifact {artifact}, which does not exist")
    if not note.strip():
        raise HandoffRefused("a progress note says what you did or found; it was empty")
    runtime.record_progress(ledger, cell, note)
    return claims.renew(ledger, cell)
