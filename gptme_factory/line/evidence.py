"""Discriminating evidence: what the factory must have seen before it believes a patch.

A patch reaches `verified` only when the factory itself saw, in clean checkouts of the
target (observe.py):

- **fail-to-pass**: a contract check tied to an acceptance criterion that fails at the
  stage's base commit and passes at the built commit (the bug's reproduction, a feature's
  new tests), and
- **pass-to-pass**: every contract check passes at the built commit — so every required
  check that passed at the base still does.

A line that declares `evidence: pass-to-pass` (docs, refactors) needs the second only.

Flakiness, at an affordable price: a check whose runs at one commit disagree is `flaky`
and is no evidence. The checks that carry fail-to-pass evidence are the ones run twice: at
the base, a check tied to a criterion that fails is run a second time (the planning gate
does it, so a cached base side has both runs), and at the head, such a check that passes is
run a second time (or the run an earlier gate made at that commit counts). Checks that
merely pass on both sides run once a side. A flaky check at the base sends the artifact back
to its planning stage; at the head, to its build.

A check that hits its time limit is neither pass nor fail: the gate refuses with a sentence
naming the limit and how to raise it. This module decides (`plan_finding`,
`reproduce_finding`, `build_finding`) on typed observations only; the gates (gates.py,
evidencegates.py) run the checks and record the verdict with the `Evidence` table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from ..ledger.records import (
    CheckResult,
    ContractCheck,
    Evidence,
    EvidenceMode,
    EvidenceRow,
    Observation,
    RowVerdict,
)
from .checks import passed, tail
from .observe import Bench
from .validation import Contract

Rework = Literal["plan", "build"]
TAIL_LINES, TAIL_CHARS = 15, 1500


@dataclass
class Side:
    """Observations of checks at one commit (by check id), and each check's first run."""

    commit: str
    tree: str
    seen: dict[str, Observation] = field(default_factory=dict)
    first: list[CheckResult] = field(default_factory=list)
    runs: dict[str, list[CheckResult]] = field(default_factory=dict)


def observation(runs: Sequence[CheckResult], reused: int) -> Observation:
    """The record of some runs of one check at one commit."""
    failing = next((r for r in runs if not passed(r)), None)
    return Observation(
        exit_codes=[None if r.timed_out else r.exit_code for r in runs],
        duration_s=runs[0].duration_s, reused=max(0, reused),
        output_tail=tail(failing.output_tail, TAIL_LINES, TAIL_CHARS) if failing else "")


def carries(check: ContractCheck, mode: EvidenceMode) -> bool:
    """Whether this check could carry fail-to-pass evidence (tied to a criterion, such a line)."""
    return mode == "fail-to-pass" and bool(check.criteria)


def _failed(result: CheckResult) -> bool:
    return not result.timed_out and result.exit_code != 0


def observe_base(bench: Bench, contract: Contract, timeout_of: dict[str, float]) -> Side:
    """Every contract check at the base: once, twice for one that fails and carries evidence."""
    side = Side(bench.commit, bench.tree)
    for check in contract.checks:
        t = timeout_of[check.id]
        made = len(bench.fresh)
        runs = bench.ensure(check, 1, t)
        if carries(check, contract.mode) and _failed(runs[0]):
            runs = bench.ensure(check, 2, t)
        _keep(side, check, runs, len(runs) - (len(bench.fresh) - made))
    return side


def observe_head(bench: Bench, checks: Sequence[ContractCheck], base: Side | None,
                 mode: EvidenceMode, timeout_of: dict[str, float]) -> Side:
    """Every check at the head, fresh; a fail-to-pass candidate gets a second run."""
    side = Side(bench.commit, bench.tree)
    for check in checks:
        t = timeout_of[check.id]
        earlier = bench.runs(check, t)
        runs = [bench.run(check, t)]
        reused = 0
        before = base.seen.get(check.id) if base else None
        if carries(check, mode) and before is not None and before.failed and passed(runs[0]):
            if earlier:
                runs.append(earlier[-1])
                reused = 1
            else:
                runs.append(bench.run(check, t))
        _keep(side, check, runs, reused)
    return side


def _keep(side: Side, check: ContractCheck, runs: list[CheckResult], reused: int) -> None:
    side.seen[check.id] = observation(runs, reused)
    side.first.append(runs[0])
    side.runs[check.id] = runs


def row_verdict(base: Observation | None, head: Observation | None) -> RowVerdict:
    """One check's verdict from what it did at the base and at the head."""
    sides = [o for o in (base, head) if o is not None]
    if any(o.timed_out for o in sides):
        return "timed-out"
    if any(o.flaky for o in sides):
        return "flaky"
    if base is not None and head is not None:
        if base.failed:
            return "fail-to-pass" if head.passed else "fail-to-fail"
        return "pass-to-pass" if head.passed else "pass-to-fail"
    only = sides[0]
    return "passes" if only.passed else "fails"


def evidence_record(mode: EvidenceMode, checks: Sequence[ContractCheck], base: Side | None,
                    head: Side | None, *, fixed: bool,
                    verdicts: dict[str, RowVerdict] | None = None) -> Evidence:
    """The evidence table a gate records: one row per check it ran."""
    rows = []
    for c in checks:
        b = base.seen.get(c.id) if base else None
        h = head.seen.get(c.id) if head else None
        if b is None and h is None:
            continue
        rows.append(EvidenceRow(check=c.id, command=c.command, source=c.source,
                                criteria=list(c.criteria), base=b, head=h,
                                verdict=(verdicts or {}).get(c.id) or row_verdict(b, h)))
    return Evidence(mode=mode, base_commit=base.commit if base else None,
                    base_tree=base.tree if base else None,
                    head_commit=head.commit if head else None,
                    head_tree=head.tree if head else None, rows=rows, contract_fixed=fixed)


@dataclass
class Finding:
    """What the evidence says: accepted, or the reasons and where the work goes back to."""

    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    rework: Rework | None = None
    failing: list[CheckResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No reason to refuse."""
        return not self.reasons

    def refuse(self, reason: str, rework: Rework | None = None) -> None:
        """Add a reason; `build` wins over `plan` (the builder's failure comes first)."""
        self.reasons.append(reason)
        if rework == "build" or (rework == "plan" and self.rework is None):
            self.rework = rework


def _at(side: Side, what: str) -> str:
    return f"{what} {side.commit[:12]}"


def _codes(obs: Observation) -> str:
    codes = ["timed out" if c is None else f"exit {c}" for c in obs.exit_codes]
    return ", ".join(codes) + (f" ({len(codes)} runs)" if len(codes) > 1 else "")


def _crit(check: ContractCheck) -> str:
    if not check.criteria:
        return "no criterion"
    return "criteria " + ", ".join(str(i) for i in check.criteria)


def timeout_sentence(check: ContractCheck, limit: float, where: str, raise_limit: str) -> str:
    """Why a check that hit its time limit is refused, and how to raise the limit."""
    return (f"`{check.command}` did not finish within its time limit of {limit:g} s at {where}: "
            "a check slower than its limit is neither pass nor fail, so it is no evidence; "
            f"{raise_limit} (a longer limit never weakens the contract), or plan a faster "
            "check")


def flaky_sentence(check: ContractCheck, obs: Observation, where: str) -> str:
    """Why a check whose runs disagree is refused."""
    return (f"`{check.command}` is flaky: {_codes(obs)} on runs of the same commit at {where}; "
            "a check that gives different results on the same code is no evidence: make it "
            "deterministic, or plan another")


def plan_finding(contract: Contract, base: Side, timeout_of: dict[str, float],
                 raise_limit: str, *, reproduced_later: bool = False) -> Finding:
    """Whether this contract can tell a patch from its base (at the planning gate).

    `reproduced_later`: a reproduce stage follows (the bugfix line): the reproduction test
    does not exist at the base yet, so no check has to fail there; one tied to a criterion
    must exist, and the reproduce gate demands that it fail, for the issue's reason.
    """
    found = Finding()
    where = _at(base, "base")
    for c in contract.checks:
        obs = base.seen[c.id]
        if obs.timed_out:
            found.refuse(timeout_sentence(c, timeout_of[c.id], where, raise_limit))
        elif obs.flaky:
            found.refuse(flaky_sentence(c, obs, where))
    if contract.mode == "pass-to-pass":
        found.notes.append("evidence: pass-to-pass (the line declares it): no check has to "
                           "fail at the base; every check must pass at the built commit")
        return found
    if reproduced_later:
        tied = [c for c in contract.checks if c.criteria]
        if not tied and found.ok:
            found.refuse("no check is tied to an acceptance criterion: plan the check that "
                         "will reproduce the bug (verification_plan[i].criteria, 0-based)")
        elif found.ok:
            found.notes.append(
                "the reproduce stage must make " + ", ".join(f"`{c.command}`" for c in tied)
                + " fail (for the issue's reason) before anything is fixed")
        return found
    candidates = [c for c in contract.checks if c.criteria and base.seen[c.id].failed]
    if candidates:
        found.notes.append("fail-to-pass candidates: " + "; ".join(
            f"`{c.command}` ({_crit(c)}) fails at {where}" for c in candidates))
    elif found.ok:
        untied = [c for c in contract.checks if base.seen[c.id].failed]
        if untied:
            found.refuse(
                "no check tied to an acceptance criterion can fail: "
                + ", ".join(f"`{c.command}`" for c in untied)
                + f" fail at {where} but cover no criterion; say which criteria each check "
                "covers (verification_plan[i].criteria, 0-based)")
        else:
            shown = ", ".join(f"`{c.command}`" for c in contract.checks[:4])
            found.refuse(
                f"no check of the contract can fail: every one passes at {where} ({shown}), "
                "so none can tell a patch from its base; plan a check tied to an acceptance "
                "criterion that fails now and will pass once the work is done (for a bugfix: "
                "a reproduction of the bug; for a feature: its new tests)")
    for c in contract.checks:
        if c.required and base.seen[c.id].failed:
            found.notes.append(f"required `{c.command}` fails at {where} too: it must pass at "
                               "the built commit")
    uncovered = sorted(set(range(_criteria_count(contract)))
                       - {i for c in contract.checks for i in c.criteria})
    if uncovered and found.ok:
        found.notes.append(f"criteria {uncovered} are covered by no check")
    return found


def _criteria_count(contract: Contract) -> int:
    return max((i + 1 for c in contract.checks for i in c.criteria), default=0)


def _normal(text: str) -> str:
    return " ".join(text.split()).casefold()


def shows(failure: str, output: str) -> bool:
    """Whether `output` shows the failure line (whitespace and case aside)."""
    return bool(failure.strip()) and _normal(failure) in _normal(output)


def reproduce_finding(contract: Contract, reproductions: Sequence[ContractCheck], head: Side,
                      failure: str, issue_text: str, timeout_of: dict[str, float],
                      raise_limit: str) -> Finding:
    """Whether the reproduction fails at its commit, for the reason the issue describes."""
    found = Finding()
    where = _at(head, "the reproduction")
    for c in contract.checks:
        obs = head.seen[c.id]
        if obs.timed_out:
            found.refuse(timeout_sentence(c, timeout_of[c.id], where, raise_limit))
    for c in reproductions:
        obs = head.seen[c.id]
        runs = head.runs[c.id]
        if obs.timed_out:
            continue
        if not c.criteria:
            found.refuse(f"`{c.command}` covers no acceptance criterion: a reproduction shows "
                         "one (plan it with its criteria at the scout stage)", "plan")
        elif obs.flaky:
            found.refuse(flaky_sentence(c, obs, where))
        elif obs.passed:
            found.refuse(f"`{c.command}` passes at {where}: it does not reproduce the bug; "
                         "commit a test that fails because of it (and no fix)")
        elif not all(shows(failure, r.output_tail) for r in runs):
            last = next((ln for ln in reversed(runs[0].output_tail.splitlines()) if ln.strip()),
                        "no output")
            found.refuse(f"`{c.command}` fails at {where}, but its output does not show "
                         f"`{failure}` (it ends: {last.strip()[:200]}): the reproduction must "
                         "fail for the reason the issue describes, not because the test "
                         "cannot run")
    if found.ok:
        quoted = ("the issue quotes it" if shows(failure, issue_text)
                  else "the issue does not quote it: compare with its description")
        found.notes.append(
            "reproduces: " + "; ".join(f"`{c.command}` fails at {where} with `{failure}` "
                                       f"({_codes(head.seen[c.id])})" for c in reproductions)
            + f"; {quoted}")
    return found


def build_finding(contract: Contract, added: Sequence[ContractCheck], base: Side | None,
                  head: Side, timeout_of: dict[str, float], raise_limit: str) -> Finding:
    """Fail-to-pass and pass-to-pass at the built commit (the fix and verify gates)."""
    found = Finding()
    at_head = _at(head, "commit")
    at_base = _at(base, "base") if base else "the base"
    for c in [*contract.checks, *added]:
        b = base.seen.get(c.id) if base else None
        h = head.seen[c.id]
        if b is not None and b.timed_out:
            found.refuse(timeout_sentence(c, timeout_of[c.id], at_base, raise_limit), "plan")
        if h.timed_out:
            found.refuse(timeout_sentence(c, timeout_of[c.id], at_head, raise_limit), "build")
            found.failing.append(head.runs[c.id][-1])
            continue
        if b is not None and b.flaky:
            found.refuse(flaky_sentence(c, b, at_base), "plan")
        if h.flaky:
            found.refuse(flaky_sentence(c, h, at_head), "build")
        elif h.failed:
            was = "" if b is None else (" (it passed at the base: a regression)" if b.passed
                                        else " (it fails at the base too: not fixed)")
            found.refuse(f"`{c.command}` failed at {at_head}{was}", "build")
            found.failing.append(head.runs[c.id][0])
    if contract.mode == "pass-to-pass":
        if found.ok:
            found.notes.append("evidence: pass-to-pass (the line declares it): every check "
                               f"passes at {at_head}; none had to fail at the base")
        return found
    proof = [c for c in contract.checks if c.criteria and base is not None
             and row_verdict(base.seen.get(c.id), head.seen[c.id]) == "fail-to-pass"]
    if proof:
        found.notes.append("fail-to-pass: " + "; ".join(
            f"`{c.command}` ({_crit(c)}) fails at {at_base} and passes at {at_head}"
            for c in proof))
        kept = [c for c in contract.checks if c.required and base is not None
                and row_verdict(base.seen.get(c.id), head.seen[c.id]) == "pass-to-pass"]
        if kept:
            found.notes.append(f"pass-to-pass: {len(kept)} required check(s) passed at the base "
                               "and still pass")
    elif found.ok:
        found.refuse(
            f"no fail-to-pass evidence: no contract check tied to an acceptance criterion fails "
            f"at {at_base} and passes at {at_head}, so nothing tells this patch from its base; "
            "plan a check that fails without the change (for a bugfix, its reproduction), or "
            "declare `evidence: pass-to-pass` on a line where failing first has no meaning",
            "plan")
    return found
