"""Outcome measurement: adoption evidence per consumer, lessons, and the analyst's report.

`measure` produces the measure stage's typed handoff, an `outcome_report`
(contracts.OutcomeReport), and puts it through the line like any other handoff: it starts the
stage (or submits as the analyst cell already running it, `cell=`), submits the report — which
is validated against the contract and checked to cover every named consumer — and advances the
outcome gate. So a measured outcome is an ordinary, verifiable ledger handoff, and an analyst
cell can call the same function to do its job.

Adoption per consumer: what a person states (`adoption=`) wins. Otherwise `gh` supplies the
evidence, applied to every named consumer without a statement:

1. the demand issue (intake `demand: gh:OWNER/REPO#N`) closed as completed: `used`;
   closed as not planned: `not_used`;
2. else a published pull request merged, or — for an artifact on a target — the built
   commit reachable from the target's base branch or a release tag, read with git from the
   target's remote (targets/bases.py, which also catches a merge made by hand): `used`;
   a pull request closed unmerged (and the commit nowhere upstream): `not_used`;
3. else `unknown`, with what was seen (issue open, PR open, gh unavailable) as the evidence.

gh reads the issue and the PR on the target repo (their URLs and `--repo` name it); git reads
the target's clone. `use_gh=False` turns off gh only.

Cost is not part of the report: it is derived from the cells' `cell_finished` events
(costs.py), never handed over by a cell.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from ..errors import FactoryError, IllegalTransition, InvalidRecord, UsageError
from ..ledger.config import BUILD_GATES
from ..ledger.records import format_validation_error
from ..ledger.store import Ledger
from ..line import engine
from ..line.replay import ArtifactView
from ..targets.bases import landed
from ..targets.registry import Target, of_intake
from .costs import ArtifactCost, artifact_cost
from .ghcli import Gh, GhError, parse_issue_ref

STATUSES = ("used", "not_used", "unknown")
_MAX_EVIDENCE = 500


@dataclass
class Facts:
    """What gh said about the artifact's demand issue and published PRs."""

    verdict: str = "unknown"
    evidence: list[str] = field(default_factory=list)


@dataclass
class MeasureResult:
    """What `measure` produced and recorded."""

    artifact: str
    report: dict[str, Any]
    facts: list[str]
    cost: ArtifactCost
    recorded: bool = False
    cell: str | None = None
    state: str = ""
    closed: bool = False

    def to_json(self) -> dict[str, Any]:
        """Plain dict for --json output."""
        return {"artifact": self.artifact, "recorded": self.recorded, "cell": self.cell,
                "state": self.state, "closed": self.closed, "report": self.report,
                "facts": self.facts, "cost": self.cost.to_json()}


def parse_adoption(spec: str) -> tuple[str, str, str]:
    """`CONSUMER=STATUS[:EVIDENCE]` as (consumer, status, evidence)."""
    consumer, sep, rest = spec.partition("=")
    status, _, evidence = rest.partition(":")
    status = status.strip().replace("-", "_")
    if not sep or not consumer.strip() or status not in STATUSES:
        raise UsageError(
            f"--adoption {spec!r}: expected CONSUMER=STATUS[:EVIDENCE] with STATUS one of "
            f"{', '.join(STATUSES)} (for example 'erik=used:confirmed in chat')"
        )
    return consumer.strip(), status, evidence.strip()


def built_commit(view: ArtifactView) -> str | None:
    """The commit the artifact's passed build gate accepted (what adoption is about)."""
    return view.branch_commit(BUILD_GATES)


def target_facts(view: ArtifactView, target: Target | None) -> Facts:
    """Did the built commit reach the target upstream? (git, on the target's clone)."""
    facts = Facts()
    commit = built_commit(view)
    if target is None or target.is_brain or commit is None:
        return facts
    found = landed(target, commit)
    facts.evidence.append(f"target {target.name}: {found.evidence}")
    facts.verdict = "used" if found.landed else "unknown"
    return facts


def gather_facts(view: ArtifactView, gh: Gh | None, target: Target | None = None) -> Facts:
    """Ask gh about the demand issue and the published PRs, and git about the target."""
    git = target_facts(view, target)
    facts = Facts(evidence=list(git.evidence))
    ref = parse_issue_ref(view.intake.demand)
    prs = [p.where for p in view.published if p.target == "pr"]
    if not ref and not prs:
        facts.evidence.append("no linked GitHub issue or PR to check")
        facts.verdict = git.verdict
        return facts
    if gh is None or not gh.ready():
        why = gh.why_not_ready() if gh else "gh lookups were turned off"
        facts.evidence.append(f"not checked: {why}")
        facts.verdict = git.verdict
        return facts
    issue_verdict = pr_verdict = None
    if ref:
        try:
            data = gh.issue(ref, "state,stateReason,closedAt,url")
        except GhError as exc:
            facts.evidence.append(f"issue {ref}: {exc}")
        else:
            state, reason = str(data.get("state", "")).upper(), str(data.get("stateReason") or "")
            if state == "CLOSED" and reason.upper() == "NOT_PLANNED":
                issue_verdict = "not_used"
                facts.evidence.append(f"issue {ref} closed as not planned")
            elif state == "CLOSED":
                issue_verdict = "used"
                when = f" at {data['closedAt']}" if data.get("closedAt") else ""
                facts.evidence.append(f"issue {ref} closed as completed{when}")
            else:
                facts.evidence.append(f"issue {ref} is {state.lower() or 'in an unknown state'}")
    for url in prs:
        try:
            data = gh.pr(url, "state,mergedAt,url")
        except GhError as exc:
            facts.evidence.append(f"PR {url}: {exc}")
            continue
        state = str(data.get("state", "")).upper()
        if state == "MERGED" or data.get("mergedAt"):
            pr_verdict = "used"
            when = f" at {data['mergedAt']}" if data.get("mergedAt") else ""
            facts.evidence.append(f"PR {url} merged{when}")
        elif state == "CLOSED":
            pr_verdict = pr_verdict or "not_used"
            facts.evidence.append(f"PR {url} closed without merging")
        else:
            facts.evidence.append(f"PR {url} is {state.lower() or 'in an unknown state'}")
    if git.verdict == "used" and pr_verdict != "used":
        pr_verdict = "used"  # merged upstream some other way (by hand, a rebase)
    facts.verdict = issue_verdict or pr_verdict or "unknown"
    return facts


def build_report(
    ledger: Ledger,
    view: ArtifactView,
    *,
    adoption: Sequence[tuple[str, str, str]] = (),
    lessons: Sequence[str] = (),
    successor: str | None = None,
    terminal: str | None = None,
    facts: Facts | None = None,
) -> dict[str, Any]:
    """The outcome report for `view`: one adoption entry per named consumer, validated."""
    stage = _outcome_stage(view)
    consumers = list(view.intake.consumers)
    named = {c.strip().lower(): c for c in consumers}
    given: dict[str, tuple[str, str]] = {}
    for consumer, status, evidence in adoption:
        key = consumer.strip().lower()
        if key not in named:
            raise UsageError(f"--adoption names {consumer!r}, who is not a consumer of "
                             f"{view.intake.artifact} (consumers: {', '.join(consumers)})")
        given[key] = (status, evidence or "stated by the person recording the outcome")
    facts = facts or Facts(evidence=["no evidence gathered"])
    auto = "; ".join(facts.evidence)[:_MAX_EVIDENCE] or "no evidence"
    entries = []
    for key, consumer in named.items():
        status, evidence = given.get(key, (facts.verdict, auto))
        entries.append({"consumer": consumer, "status": status,
                        "evidence": evidence[:_MAX_EVIDENCE]})
    if successor:
        successor = ledger.resolve(successor)
    report: dict[str, Any] = {
        "kind": ledger.config.contract_name(stage), "artifact": view.intake.artifact,
        "adoption": entries, "lessons": [" ".join(x.split()) for x in lessons if x.strip()],
    }
    if successor:
        report["successor"] = successor
    if terminal and terminal.strip():
        report["terminal"] = terminal.strip()
    model = ledger.config.contract_model(report["kind"])
    try:
        return model.model_validate(report).model_dump(mode="json", exclude_none=True)
    except ValidationError as exc:
        raise InvalidRecord("outcome report", format_validation_error(exc)) from None


def _outcome_stage(view: ArtifactView) -> Any:
    aid = view.intake.artifact
    stage = view.stage
    if view.is_final:
        raise IllegalTransition(f"{aid} is {view.state}: there is nothing left to measure")
    if stage is None:
        raise IllegalTransition(f"{aid} is already {view.state}: every stage has passed")
    if stage.gate != "outcome":
        raise IllegalTransition(
            f"{aid} is at stage {stage.name} ({view.state}): measuring comes after publishing"
        )
    return stage


def measure(
    ledger: Ledger,
    artifact: str,
    *,
    adoption: Sequence[tuple[str, str, str]] = (),
    lessons: Sequence[str] = (),
    successor: str | None = None,
    terminal: str | None = None,
    cell: str | None = None,
    gh: Gh | None = None,
    use_gh: bool = True,
    close: bool = False,
    dry_run: bool = False,
    by: str | None = None,
) -> MeasureResult:
    """Build the outcome report and put it through the measure stage (see module docstring)."""
    _, view = engine.load(ledger, artifact)
    _outcome_stage(view)
    named = {c.strip().lower() for c in view.intake.consumers}
    stated = {c.strip().lower() for c, _, _ in adoption}
    need_facts = not named <= stated
    target = of_intake(ledger, view.intake)
    facts = gather_facts(view, (gh or Gh(target.repo.root)) if need_facts and use_gh else None,
                         target if need_facts else None)
    if not need_facts:
        facts.evidence = ["every consumer's adoption was stated"]
    report = build_report(ledger, view, adoption=adoption, lessons=lessons, successor=successor,
                          terminal=terminal, facts=facts)
    result = MeasureResult(artifact, report, facts.evidence, artifact_cost(view), state=view.state)
    if dry_run:
        return result
    with ledger.transaction():  # the whole measurement is one decision: one commit
        if cell is None:
            if view.status == "running":
                raise IllegalTransition(
                    f"analyst cell {view.cell} is measuring {artifact}: let it hand off, or "
                    f"submit as it with --cell {view.cell}"
                )
            if view.status != "pending":
                raise IllegalTransition(f"the measure stage of {artifact} is {view.status}: "
                                        f"run `gptme-factory advance {artifact}`")
            cell = engine.start_stage(ledger, artifact, by=by).cell
            own_cell = True
        else:
            own_cell = False
        started = time.monotonic()
        engine.submit(ledger, cell, report, by=by)
        res = engine.advance(ledger, artifact, by=by)
        if not res.passed:
            raise FactoryError(f"the outcome gate refused the report: {'; '.join(res.reasons)}")
        if own_cell:
            # No process ran for this cell: close its books so it does not look unmeasured.
            engine.record_cell_finished(ledger, cell, outcome="handoff",
                                        wall_s=time.monotonic() - started, by=by,
                                        reason="measured in person with `gptme-factory measure`")
        result.recorded, result.cell, result.state = True, cell, res.state
        if close:
            engine.close(ledger, artifact, successor=report.get("successor"),
                         terminal=report.get("terminal"), by=by)
            result.closed, result.state = True, "closed"
    _, view = engine.load(ledger, artifact)
    result.cost = artifact_cost(view)
    return result
