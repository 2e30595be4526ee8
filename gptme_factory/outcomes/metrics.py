"""Factory metrics, derived from the ledger alone, to tell whether a line is worth running.

Every number is computed from each artifact's replayed events (times are the events' `at`).
This module reads every artifact; the metric-facts cache (views/factcache.py, the status
cache's engine) keeps each artifact's `ArtifactFacts` so `metrics` and the board re-read only
the artifacts that changed. The definitions, also in docs/metrics.md:

- **selection**: artifacts whose intake is on `line` (if given) and was created on or after
  `since` (if given). Broken artifacts (ledger problems) are skipped and listed.
- **throughput**: artifacts whose package gate (`gate: package`) / outcome gate
  (`gate: outcome`) passed, per ISO week of that event.
- **lead time per stage**: from the previous stage's (last) pass — or the intake for the first
  stage — to the stage's (last) pass; waiting time is included, so stages sum to end to end.
  **to_published**: intake to the package gate's pass. **end_to_end**: intake to the last
  stage's pass (line complete). Reported as median and p90 (nearest rank) in seconds.
- **first-pass yield**: of the artifacts that reached the evidence gate's state (`verified`),
  the share that got there without any failed attempt: no gate failure, rework, contract
  violation, review asking for changes, or cell ending without a handoff.
- **rework rate**: share of started artifacts (at least one stage started) sent back to an
  earlier stage at least once.
- **contract-violation rate**: contract violations / (accepted handoffs + contract violations),
  i.e. per cell that ended its stage with either.
- **cost per published artifact**: the measured cost of *every* selected artifact (rejected and
  abandoned ones included: waste is part of what shipping cost) / published artifacts.
- **adoption rate**: published artifacts with at least one consumer `used` in their outcome
  report / published artifacts.
- **self-play share**: artifacts whose every consumer means the factory itself (selfplay.py)
  / selected artifacts.
- **queue depth**: open artifacts per current stage and stage status.
- **classification**: artifacts (and published ones) per intake classification.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any

from ..errors import FactoryError
from ..ledger.config import LineConfig
from ..ledger.kinds import ArtifactChain, StoredEvent
from ..ledger.records import (
    ContractViolation,
    HandoffSubmitted,
    Intake,
    Rework,
    StageStarted,
)
from ..ledger.store import Ledger
from ..line.replay import ArtifactView, apply
from .costs import ArtifactCost, Cost, artifact_cost, per_line
from .selfplay import is_self_play, ledger_self_names

CLASSIFICATIONS = ("factory_run", "factory_maintenance", "manual_follow_on")


@dataclass
class ArtifactFacts:
    """What the metrics need from one artifact."""

    artifact: str
    line: str
    classification: str
    created_at: datetime
    state: str
    stage: str | None
    status: str
    self_play: bool
    stage_lead_s: dict[str, float] = field(default_factory=dict)
    to_published_s: float | None = None
    end_to_end_s: float | None = None
    published_at: datetime | None = None
    measured_at: datetime | None = None
    reached_verified: bool = False
    first_pass_verified: bool = False
    started: bool = False
    reworks: int = 0
    handoffs: int = 0
    violations: int = 0
    adopted: bool | None = None
    cost: Cost = field(default_factory=Cost)

    def to_row(self) -> list[Any]:
        """Compact JSON-able form for the metric-facts cache (`from_row` is its inverse)."""
        c = self.cost
        return [self.artifact, self.line, self.classification, self.created_at.isoformat(),
                self.state, self.stage, self.status, self.self_play, self.stage_lead_s,
                self.to_published_s, self.end_to_end_s, _iso(self.published_at),
                _iso(self.measured_at), self.reached_verified, self.first_pass_verified,
                self.started, self.reworks, self.handoffs, self.violations, self.adopted,
                [c.cells, c.unmeasured, c.cells_without_cost, c.tokens_in, c.tokens_out,
                 c.usd, c.wall_s]]

    @classmethod
    def from_row(cls, row: list[Any]) -> ArtifactFacts:
        """Inverse of `to_row`; ValueError/TypeError if `row` is not one."""
        if len(row) != 21 or not isinstance(row[8], dict) or len(row[20]) != 7:
            raise ValueError("not a facts row")
        return cls(
            artifact=row[0], line=row[1], classification=row[2],
            created_at=datetime.fromisoformat(row[3]), state=row[4], stage=row[5],
            status=row[6], self_play=row[7], stage_lead_s=row[8], to_published_s=row[9],
            end_to_end_s=row[10], published_at=_dt(row[11]), measured_at=_dt(row[12]),
            reached_verified=row[13], first_pass_verified=row[14], started=row[15],
            reworks=row[16], handoffs=row[17], violations=row[18], adopted=row[19],
            cost=Cost(*row[20]),
        )

    def to_json(self) -> dict[str, Any]:
        """Plain dict for `metrics --json --artifacts`."""
        return {
            "artifact": self.artifact, "line": self.line, "classification": self.classification,
            "created_at": self.created_at.isoformat(), "state": self.state, "stage": self.stage,
            "status": self.status, "self_play": self.self_play,
            "stage_lead_s": self.stage_lead_s, "to_published_s": self.to_published_s,
            "end_to_end_s": self.end_to_end_s,
            "published_at": self.published_at.isoformat() if self.published_at else None,
            "measured_at": self.measured_at.isoformat() if self.measured_at else None,
            "first_pass_verified": self.first_pass_verified if self.reached_verified else None,
            "reworks": self.reworks, "violations": self.violations, "adopted": self.adopted,
            "cost": self.cost.to_json(),
        }


@dataclass(frozen=True)
class BrokenFacts:
    """An artifact the metrics skip as broken; its line and intake time when they are known."""

    artifact: str
    line: str | None = None
    created_at: datetime | None = None


def _iso(when: datetime | None) -> str | None:
    return when.isoformat() if when else None


def _dt(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text is not None else None


def _gate_stage(line: LineConfig, gate: str) -> str | None:
    """Name of the line's first stage with `gate`."""
    for st in line.stages:
        if st.gate == gate:
            return st.name
    return None


def _gate_state(line: LineConfig, gate: str) -> str | None:
    """State produced by the line's first stage with `gate`."""
    for st in line.stages:
        if st.gate == gate:
            return st.produces
    return None


def artifact_facts(
    intake: Intake, line: LineConfig, events: Iterable[StoredEvent], self_names: frozenset[str]
) -> ArtifactFacts:
    """Replay one artifact's events and collect its metric facts (IllegalTransition if bad)."""
    view = ArtifactView(intake=intake, line=line, last_at=intake.created_at)
    verified_state = _gate_state(line, "evidence")
    facts = ArtifactFacts(
        artifact=intake.artifact, line=intake.line, classification=intake.classification,
        created_at=intake.created_at, state="idea", stage=None, status="pending",
        self_play=is_self_play(intake.consumers, self_names),
    )
    for stored in events:
        event = stored.event
        apply(view, event, stored.at)
        if isinstance(event, StageStarted):
            facts.started = True
        elif isinstance(event, Rework):
            facts.reworks += 1
        elif isinstance(event, HandoffSubmitted):
            facts.handoffs += 1
        elif isinstance(event, ContractViolation):
            facts.violations += 1
        if verified_state and not facts.reached_verified and view.state == verified_state:
            facts.reached_verified, facts.first_pass_verified = True, view.first_pass
    facts.state = view.state
    facts.stage = view.stage.name if view.stage else None
    facts.status = view.status if not view.is_final else view.state
    prev = intake.created_at
    for st in line.stages:
        passed = view.stage_passed_at.get(st.name)
        if passed is None:
            break
        facts.stage_lead_s[st.name] = (passed - prev).total_seconds()
        prev = passed
    else:
        facts.end_to_end_s = (prev - intake.created_at).total_seconds()
    package, outcome = _gate_stage(line, "package"), _gate_stage(line, "outcome")
    if package and package in view.stage_passed_at:
        facts.published_at = view.stage_passed_at[package]
        facts.to_published_s = (facts.published_at - intake.created_at).total_seconds()
    if outcome and outcome in view.stage_passed_at:
        facts.measured_at = view.stage_passed_at[outcome]
        report = view.handoffs.get(outcome) or {}
        facts.adopted = any(a.get("status") == "used" for a in report.get("adoption", []))
    facts.cost = artifact_cost(view).total
    return facts


def read_facts(ledger: Ledger, aid: str, chain: ArtifactChain | None,
               error: FactoryError | None, names: frozenset[str]) -> ArtifactFacts | BrokenFacts:
    """One artifact's facts from its chain (or BrokenFacts: a read error, problems, bad history)."""
    if error is not None or chain is None or chain.root is None:
        return BrokenFacts(aid)
    intake = chain.root.record
    if chain.problems:
        return BrokenFacts(aid, intake.line, intake.created_at)
    try:
        return artifact_facts(intake, ledger.config.line(intake.line), chain.events, names)
    except FactoryError:
        return BrokenFacts(aid, intake.line, intake.created_at)


def select(entries: Iterable[ArtifactFacts | BrokenFacts], *, line: str | None = None,
           since: date | None = None) -> tuple[list[ArtifactFacts], list[str]]:
    """The facts of the artifacts on `line` taken in on or after `since`, and broken ids.

    A broken artifact whose intake is readable is filtered like the others.
    """
    start = datetime(since.year, since.month, since.day, tzinfo=timezone.utc) if since else None
    out: list[ArtifactFacts] = []
    broken: list[str] = []
    for f in entries:
        if line is not None and f.line is not None and f.line != line:
            continue
        if start is not None and f.created_at is not None and f.created_at < start:
            continue
        if isinstance(f, BrokenFacts):
            broken.append(f.artifact)
        else:
            out.append(f)
    return out, broken


def all_facts(ledger: Ledger) -> list[ArtifactFacts | BrokenFacts]:
    """Every artifact's facts in id order, each read from the ledger (factcache keeps them)."""
    names = ledger_self_names(ledger)
    out: list[ArtifactFacts | BrokenFacts] = []
    for aid in ledger.artifact_ids():
        try:
            chain, error = ledger.read(aid), None
        except FactoryError as exc:
            chain, error = None, exc
        out.append(read_facts(ledger, aid, chain, error, names))
    return out


def collect(
    ledger: Ledger, *, line: str | None = None, since: date | None = None
) -> tuple[list[ArtifactFacts], list[str]]:
    """Facts of every selected artifact, and the ids of broken ones (skipped)."""
    if line is not None:
        ledger.config.line(line)  # unknown line -> ConfigError
    return select(all_facts(ledger), line=line, since=since)


# -- aggregation ------------------------------------------------------------------------


def percentile(values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile (pct in 0..100) of `values`; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def distribution(values: list[float]) -> dict[str, Any]:
    """n, median and p90 of durations in seconds."""
    return {"n": len(values),
            "median": statistics.median(values) if values else None,
            "p90": percentile(values, 90)}


def rate(num: int, den: int) -> float | None:
    """num/den rounded to 4 places; None when den is 0."""
    return round(num / den, 4) if den else None


def iso_week(when: datetime) -> str:
    """`2026-W02`."""
    year, week, _ = when.isocalendar()
    return f"{year}-W{week:02d}"


def compute(facts: list[ArtifactFacts], broken: Iterable[str] = (),
            filters: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every metric over `facts`, as plain data (the same numbers the tables show)."""
    published = [f for f in facts if f.published_at]
    measured = [f for f in facts if f.measured_at]
    weeks: dict[str, dict[str, int]] = {}
    for f in published:
        weeks.setdefault(iso_week(f.published_at), {"published": 0, "measured": 0})["published"] += 1  # type: ignore[arg-type]
    for f in measured:
        weeks.setdefault(iso_week(f.measured_at), {"published": 0, "measured": 0})["measured"] += 1  # type: ignore[arg-type]
    stage_names: list[str] = []
    for f in facts:
        stage_names += [s for s in f.stage_lead_s if s not in stage_names]
    stages = {s: distribution([f.stage_lead_s[s] for f in facts if s in f.stage_lead_s])
              for s in stage_names}
    verified = [f for f in facts if f.reached_verified]
    first = [f for f in verified if f.first_pass_verified]
    started = [f for f in facts if f.started]
    reworked = [f for f in started if f.reworks]
    handoffs = sum(f.handoffs for f in facts)
    violations = sum(f.violations for f in facts)
    total = Cost()
    for f in facts:
        total.add(f.cost)
    adopted = [f for f in published if f.adopted]
    selfplay = [f for f in facts if f.self_play]
    queue: dict[str, dict[str, int]] = {}
    unclosed = 0
    for f in facts:
        if f.status in ("closed", "rejected", "abandoned"):
            continue
        if f.stage is None:
            unclosed += 1
            continue
        q = queue.setdefault(f.stage, {"total": 0})
        q[f.status] = q.get(f.status, 0) + 1
        q["total"] += 1
    classes = {c: {"artifacts": 0, "published": 0} for c in CLASSIFICATIONS}
    for f in facts:
        c = classes.setdefault(f.classification, {"artifacts": 0, "published": 0})
        c["artifacts"] += 1
        c["published"] += int(f.published_at is not None)
    n_pub = len(published)
    lines_cost = per_line(_as_costs(facts))
    return {
        "filters": filters or {},
        "artifacts": len(facts),
        "broken": sorted(broken),
        "classification": classes,
        "throughput": {
            "published": n_pub, "measured": len(measured),
            "per_week": [{"week": w, **weeks[w]} for w in sorted(weeks)],
        },
        "lead_time_s": {
            "stages": stages,
            "to_published": distribution([f.to_published_s for f in facts
                                          if f.to_published_s is not None]),
            "end_to_end": distribution([f.end_to_end_s for f in facts
                                        if f.end_to_end_s is not None]),
        },
        "first_pass_yield": {"rate": rate(len(first), len(verified)), "first_pass": len(first),
                             "verified": len(verified)},
        "rework": {"rate": rate(len(reworked), len(started)), "artifacts": len(reworked),
                   "started": len(started), "events": sum(f.reworks for f in facts)},
        "contract_violations": {"rate": rate(violations, handoffs + violations),
                                "violations": violations, "handoffs": handoffs},
        "cost": {
            "total": total.to_json(),
            "per_published_usd": round(total.usd / n_pub, 6) if n_pub else None,
            "per_published_tokens": round(total.tokens / n_pub, 1) if n_pub else None,
            "per_published_wall_s": round(total.wall_s / n_pub, 3) if n_pub else None,
            "per_line": {k: v.to_json() for k, v in lines_cost.items()},
        },
        "adoption": {"rate": rate(len(adopted), n_pub), "adopted": len(adopted),
                     "published": n_pub, "measured": len(measured)},
        "self_play": {"rate": rate(len(selfplay), len(facts)), "count": len(selfplay),
                      "artifacts": sorted(f.artifact for f in selfplay)},
        "queue": {"stages": dict(sorted(queue.items())), "unclosed": unclosed},
    }


def _as_costs(facts: list[ArtifactFacts]) -> list[ArtifactCost]:
    return [ArtifactCost(f.artifact, f.line, f.cost) for f in facts]


def report(entries: Iterable[ArtifactFacts | BrokenFacts], *, line: str | None = None,
           since: date | None = None, per_artifact: bool = False) -> dict[str, Any]:
    """The metrics report over already collected facts (what `metrics` prints)."""
    facts, broken = select(entries, line=line, since=since)
    out = compute(facts, broken, {"line": line, "since": since.isoformat() if since else None})
    if per_artifact:
        out["per_artifact"] = [f.to_json() for f in facts]
    return out


def metrics(ledger: Ledger, *, line: str | None = None, since: date | None = None,
            per_artifact: bool = False) -> dict[str, Any]:
    """The metrics report for a ledger, every artifact read again.

    The module docstring defines every number; views/factcache.py has the cached report the
    CLI, the gptme tool and the board use.
    """
    if line is not None:
        ledger.config.line(line)  # unknown line -> ConfigError
    return report(all_facts(ledger), line=line, since=since, per_artifact=per_artifact)
