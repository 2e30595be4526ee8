"""The foreman loop: drive artifacts through their line, one bounded cell per stage.

Each tick: enforce budgets, then for every finished cell run its gate (unlocked) and record,
as one commit, the verdict, the cell's end and what follows — the next stage's cell, a
rework's next attempt, a publication the package gate needs. Then for every artifact decide
from the ledger alone: spawn the current stage's cell, wait for the running one, advance a
submitted handoff whose cell is gone, or stop: line complete, the `until` stage passed,
blocked (attempts or repairs spent), waiting for a person's review or for the package to be
published. Rework needs nothing special: a failed gate puts the stage back to pending with
its retry note, and the next cell is the next attempt.

The foreman keeps no state of its own. Stopping it (Ctrl-C, a crash) leaves cells running
and the ledger consistent; running it again resumes from the ledger and the runtime cell
records. A stage left `running` with no record of a launched process (the foreman died
between starting the stage and launching its cell) fails that attempt as crashed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import (
    CellCapacity,
    ClaimLost,
    EnvironmentNotReady,
    LedgerConflict,
    NothingToAdvance,
    NotPublished,
    RemoteUnreachable,
    UsageError,
)
from ..ledger.store import Ledger
from ..line import claims, engine
from ..line.replay import ArtifactView
from ..outcomes.packaging import publish
from . import preflight, reaper, taskfile
from . import state as cellstate
from .spawn import SpawnOptions, spawn
from .watch import Observation

DONE = "done"
WAITING = "waiting"
FAILED = "failed"


@dataclass
class Stopped:
    """Why the foreman stopped driving one artifact."""

    artifact: str
    state: str
    stage: str | None
    status: str
    kind: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        """Plain dict."""
        return asdict(self)


def _passed(view: ArtifactView, stage: str) -> bool:
    return stage in [s.name for s in view.line.stages[: view.stage_index]]


def _stop_reason(view: ArtifactView, until: str | None,
                 retry: frozenset[str] = frozenset()) -> tuple[str, str] | None:
    aid = view.intake.artifact
    if view.is_final:
        kind = DONE if view.state == "closed" else FAILED
        return kind, f"{aid} is {view.state}" + (f": {view.final_reason}" if view.final_reason else "")
    if until and _passed(view, until):
        return DONE, f"{aid} passed {until} (state {view.state})"
    if view.stage is None:
        return DONE, (f"{aid} passed every stage (state {view.state}): close it with "
                      "`gptme-factory close ARTIFACT --successor ID|--terminal REASON`")
    if view.status == "blocked" and view.blocked_by.startswith("environment"):
        if aid in retry:
            return None  # blocked by the machine before this run: its pre-flight passed, retry
        return FAILED, (f"{aid} is blocked by its environment ({view.blocked_reason}); "
                        "no attempt was spent: fix it, then run again")
    if view.status == "blocked":
        return FAILED, f"{aid} is blocked: {view.blocked_reason}; a person decides (`start --force`)"
    if view.status == "awaiting_approval":
        return WAITING, (f"{aid} waits for review of {view.stage.name}: "
                         f"`gptme-factory review {aid} --approve|--request-changes|--reject`")
    return None


class Foreman:
    """Drives a set of artifacts until each one stops."""

    def __init__(self, ledger: Ledger, artifacts: Iterable[str], *, until: str | None = None,
                 opts: SpawnOptions | None = None, poll_s: float = 1.0,
                 grace_s: float = reaper.DEFAULT_GRACE_S,
                 on_event: Callable[[str], None] | None = None,
                 on_tick: Callable[[list[Observation]], None] | None = None,
                 should_stop: Callable[[], bool] | None = None,
                 publish: str | None = None) -> None:
        self.ledger = ledger
        self.artifacts = [ledger.resolve(a) for a in artifacts]
        self.until = until
        self.opts = opts or SpawnOptions()
        self.poll_s = poll_s
        self.grace_s = grace_s
        self.say = on_event or (lambda _msg: None)
        self.on_tick = on_tick
        self.should_stop = should_stop or (lambda: False)
        self.publish = publish
        self.stopped: dict[str, Stopped] = {}
        self.retry: set[str] = set()  # blocked by the environment before this run: try again
        self._ask: set[str] = set()  # stopped artifacts whose needs-a-person task to update
        if until:
            for a in self.artifacts:
                _, view = engine.load(ledger, a)
                if until not in [s.name for s in view.line.stages]:
                    names = ", ".join(s.name for s in view.line.stages)
                    raise UsageError(f"--until {until}: line {view.intake.line} has stages {names}")

    @property
    def active(self) -> list[str]:
        """Artifacts still being driven."""
        return [a for a in self.artifacts if a not in self.stopped]

    def run(self) -> list[Stopped]:
        """Tick until every artifact stopped (or `should_stop` says so).

        EnvironmentNotReady before anything is done when no cell could start here (no usable
        model); an artifact that an environment failure blocked before this run is retried.
        """
        problem = preflight.model_problem(self.ledger, self.opts.model, self.opts.backend,
                                          self.opts.command)
        if problem is not None:
            raise EnvironmentNotReady(
                f"cannot run cells here: {problem.cause} — fix: {problem.fix}; nothing was "
                "started", problem)
        for aid in self.artifacts:
            _, view = engine.load(self.ledger, aid)
            if view.status == "blocked" and view.blocked_by.startswith("environment"):
                self.retry.add(aid)
        while self.active and not self.should_stop():
            self.tick()
            if self.active:
                self._sleep()
        return [self.stopped[a] for a in self.artifacts if a in self.stopped]

    def _sleep(self) -> None:
        end = time.monotonic() + self.poll_s
        while time.monotonic() < end and not self.should_stop():
            time.sleep(min(0.1, self.poll_s))

    def tick(self) -> None:
        """One round: reap (verdict, end and next cell in one commit), then act on the rest."""
        mine = set(self.active)
        recs = [r for r in reaper.live(self.ledger) if r.artifact in mine]
        for line in reaper.enforce(self.ledger, recs, grace_s=self.grace_s):
            self.say(line)
        stepped: set[str] = set()
        for rec in recs:
            ending = reaper.prepare(self.ledger, rec)  # the gate's checks run here, unlocked
            if ending is None:
                continue
            with self.ledger.transaction():
                reaped = reaper.record(self.ledger, ending)
                if reaped is not None:
                    self._report_reaped(reaped)
                    if reaped.unpublished:
                        self._publish(rec.artifact)
                if rec.artifact in self.active:
                    self._step(rec.artifact, spawn_only=True)
                    stepped.add(rec.artifact)
        for a in self.active:
            if a not in stepped:
                self._step(a)
        for aid in sorted(self._ask):
            if taskfile.sync_person_task(self.ledger, aid):
                self.say(f"{aid}: waits for a person (tasks/factory-{aid}.md)")
        self._ask.clear()
        claims.push_pending(self.ledger, "this tick's decisions")  # a shared ledger's
        for note in self.ledger.notes:
            self.say(note)
        self.ledger.notes.clear()
        if self.on_tick is not None:
            mine = set(self.artifacts)
            self.on_tick([reaper.observation(self.ledger, rec)
                          for rec in reaper.live(self.ledger) if rec.artifact in mine])

    def _report_reaped(self, r: reaper.Reaped) -> None:
        self.say(r.headline())
        if r.advanced is not None:
            self._report_gate(r.advanced)
        if r.gate_note and not r.unpublished:
            self.say(f"{r.artifact}: {r.gate_note}")

    def _report_gate(self, res: engine.AdvanceResult) -> None:
        self.say(res.headline() + ("" if res.passed else f": {'; '.join(res.reasons)[:300]}"))

    def _stop(self, view: ArtifactView, kind: str, reason: str) -> None:
        aid = view.intake.artifact
        self.stopped[aid] = Stopped(aid, view.state, view.stage.name if view.stage else None,
                                    view.status, kind, reason)
        self.say(reason)
        self._ask.add(aid)  # blocked or in review: a person's task, once this commit is made

    def _step(self, aid: str, *, spawn_only: bool = False) -> None:
        """Decide what `aid` needs now; `spawn_only` (inside a reap's commit) runs no gate."""
        _, view = engine.load(self.ledger, aid)
        stop = _stop_reason(view, self.until, frozenset(self.retry))
        if stop:
            self._stop(view, *stop)
            return
        if view.status == "blocked" and aid in self.retry:
            self.retry.discard(aid)  # once: a second environment failure stops it
            if view.blocked_by == "environment_gate":
                if not spawn_only:
                    self._advance(view)
                else:
                    self.retry.add(aid)
                return
            self._spawn(aid)
        elif view.status == "pending":
            self._spawn(aid)
        elif spawn_only:
            return
        elif view.status == "running":
            self._check_running(view)
        elif view.status == "submitted":
            rec = cellstate.load(self.ledger.runtime_dir, view.cell or "")
            if rec is None:  # its cell was reaped without a gate run (or ran elsewhere)
                self._advance(view)

    def _spawn(self, aid: str) -> None:
        try:
            rec = spawn(self.ledger, aid, self.opts)
        except CellCapacity:
            return  # wait for a slot
        except ClaimLost as exc:  # another clone of a shared ledger holds the stage
            _, view = engine.load(self.ledger, aid)
            self._stop(view, WAITING, f"{aid}: {exc}")
            return
        except RemoteUnreachable as exc:  # the claim could not be pushed: retry next tick
            self.say(f"{aid}: not started: {exc}")
            return
        self.say(f"{aid}: spawned {rec.cell} ({rec.role}, {rec.backend}"
                 + (f" {rec.session}" if rec.session else "") + f", {rec.timeout_s:g} s)")

    def _check_running(self, view: ArtifactView) -> None:
        cell = view.cell or ""
        if cellstate.load(self.ledger.runtime_dir, cell) is not None:
            return  # running, or finished and reaped on the next tick
        cv = view.cells.get(cell)
        if cv is not None and cv.host and cv.host != self.ledger.host:
            # another machine's claim on a shared ledger: never declare its cell dead here
            stage = view.stage.name if view.stage else "-"
            self._stop(view, WAITING, f"{claims.claimed_by(view.intake.artifact, stage, cv)}"
                       f" (lease until {cv.lease_until.isoformat() if cv.lease_until else '-'})")
            return
        if cv is not None and cv.backend is None:
            engine.record_cell_finished(
                self.ledger, cell, outcome="crashed", wall_s=0.0,
                reason="no process was launched for it (the factory stopped between "
                       "starting the stage and launching the cell)")
            self.say(f"{cell}: never launched; recorded as crashed, the stage will be retried")
            return
        self._stop(view, WAITING,
                   f"{cell} was spawned ({cv.backend if cv else '?'}) but this machine has no "
                   "record of its process (another machine, or factory/.runtime was removed): "
                   f"`gptme-factory kill {cell}` to fail it")

    def _advance(self, view: ArtifactView) -> None:
        aid = view.intake.artifact
        try:
            res = engine.advance(self.ledger, aid)
        except (LedgerConflict, NothingToAdvance):
            return  # another process advanced it meanwhile: the next tick sees the result
        except NotPublished as exc:
            if not self.publish:
                self._stop(view, WAITING, str(exc))
                return
            with self.ledger.transaction():
                self._publish(aid)
            return
        self._report_gate(res)

    def _publish(self, aid: str) -> None:
        """Publish the release package the package gate waits for, then record the verdict."""
        if not self.publish:
            _, view = engine.load(self.ledger, aid)
            self._stop(view, WAITING,
                       f"{aid} has a release package but it is not published yet: run "
                       f"`gptme-factory package {aid} --target pr|release|branch|note`")
            return
        pub = publish(self.ledger, aid, target=self.publish)
        if not pub.published:
            _, view = engine.load(self.ledger, aid)
            self._stop(view, WAITING, f"{aid}: not published: {pub.reason}")
            return
        self.say(f"{aid}: published ({self.publish}) at {pub.where}")
        for ran in pub.ran:
            self.say(f"{aid}: ran {ran}")
        if pub.commands:
            self.say(f"{aid}: {pub.reason}: " + "; ".join(pub.commands))
        self._report_gate(engine.advance(self.ledger, aid))  # the package gate runs no command


def run(ledger: Ledger, artifacts: Iterable[str], **kwargs: Any) -> list[Stopped]:
    """Drive `artifacts` until each one stops; see `Foreman`."""
    return Foreman(ledger, artifacts, **kwargs).run()

