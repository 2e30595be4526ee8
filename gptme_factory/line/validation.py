"""The validation contract: which checks decide `verified`, fixed before anything is built.

A contract is a list of `ContractCheck`s (ledger/records.py): the line's own checks (the
verify stage's `checks`) and the target's test commands — the *required* checks — plus the
scout's planned checks, each tied to the acceptance criteria it covers. The planning gate
(`plan`) records it as a `contract_fixed` event; every later gate runs exactly that contract.

- `derive(...)` builds a contract from the line, the target and a scout memo: one check per
  distinct (command, cwd), a required check first, the criteria of duplicates merged.
- `of_view(...)` is the contract a gate runs: the recorded one, or — on a line whose scout
  stage predates `plan` gates, or has none — one derived from the same sources, so no gate
  ever judges on whatever the last report happens to list (`Evidence.contract_fixed` says
  which).
- `compare_report(...)`: a verifier may add checks, never drop or weaken one (same id, other
  command or cwd); a longer time limit is not weakening (`effective_timeout`).

Pure: no I/O. Identity of a check is (command, cwd); `identity` hashes it for caches.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..ledger.config import LineConfig, StageConfig
from ..ledger.contracts import VerifierReport
from ..ledger.records import CheckSource, ContractCheck, EvidenceMode
from .replay import ArtifactView


def identity(check: ContractCheck) -> str:
    """A short hash of what the check is: its command and where it runs."""
    raw = json.dumps([check.command, check.cwd], separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()[:20]


def evidence_stage(line: LineConfig) -> StageConfig | None:
    """The line's verify stage (an evidence gate): its checks and time limit are the contract's."""
    return next((st for st in line.stages if st.gate == "evidence"), None)


def check_timeout(line: LineConfig, stage: StageConfig | None = None) -> float:
    """The time limit a contract check gets: the verify stage's (else `stage`'s)."""
    source = evidence_stage(line) or stage
    if source is None:
        return float(StageConfig.model_fields["check_timeout_s"].default)
    return source.check_timeout_s


def effective_timeout(check: ContractCheck, line: LineConfig) -> float:
    """The longer of the check's recorded limit and the line's limit now (raising it is fine)."""
    return max(check.timeout_s, check_timeout(line))


@dataclass
class _Builder:
    timeout_s: float
    checks: list[ContractCheck] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, command: str, source: CheckSource, *, cwd: str = ".",
            criteria: Sequence[int] = (), proves: str = "") -> ContractCheck:
        for i, known in enumerate(self.checks):
            if known.command == command and known.cwd == cwd:
                merged = sorted({*known.criteria, *criteria})
                self.checks[i] = known.model_copy(update={"criteria": merged,
                                                          "proves": known.proves or proves})
                return self.checks[i]
        n = self.counts[source] = self.counts.get(source, 0) + 1
        check = ContractCheck(id=f"{source}-{n}", command=command, cwd=cwd,
                              timeout_s=self.timeout_s, source=source,
                              criteria=sorted(set(criteria)), proves=proves[:500])
        self.checks.append(check)
        return check


def derive(line: LineConfig, target_checks: Sequence[str],
           memo: Mapping[str, Any] | None) -> list[ContractCheck]:
    """The contract from the line's checks, the target's and a scout memo's plan."""
    build = _Builder(check_timeout(line))
    verify = evidence_stage(line)
    for cmd in verify.checks if verify else []:
        build.add(cmd, "line")
    for cmd in target_checks:
        build.add(cmd, "target")
    plan = (memo or {}).get("verification_plan")
    for item in plan if isinstance(plan, list) else []:
        if isinstance(item, Mapping) and isinstance(item.get("command"), str):
            criteria = [c for c in item.get("criteria") or [] if isinstance(c, int)]
            build.add(item["command"], "plan", cwd=str(item.get("cwd") or "."),
                      criteria=criteria, proves=str(item.get("proves") or ""))
    return build.checks


def planning_stage(view: ArtifactView) -> StageConfig | None:
    """The stage whose gate fixes the contract (a `plan` gate), else the scout-memo stage."""
    stages = view.line.stages
    return (next((st for st in stages if st.gate == "plan"), None)
            or next((st for st in stages if st.role == "scout"), None))


def memo_of(view: ArtifactView) -> Mapping[str, Any] | None:
    """The scout memo handed over on this line so far (None before the scout stage).

    On a line without a plan gate or a scout (a custom planning contract), the last earlier
    handoff that carries a `verification_plan`.
    """
    stage = planning_stage(view)
    if stage is not None:
        return view.handoffs.get(stage.name)
    found = None
    for st in view.line.stages[: view.stage_index]:
        handoff = view.handoffs.get(st.name)
        if handoff is not None and isinstance(handoff.get("verification_plan"), list):
            found = handoff
    return found


@dataclass(frozen=True)
class Contract:
    """The checks a gate runs, and whether they were fixed before the build."""

    checks: list[ContractCheck]
    mode: EvidenceMode
    fixed: bool  # recorded by a planning gate (False: derived at this gate)

    def find(self, ref: str) -> ContractCheck | None:
        """The check with id `ref`, else the one whose command is exactly `ref`."""
        return (next((c for c in self.checks if c.id == ref), None)
                or next((c for c in self.checks if c.command == ref), None))


def of_view(view: ArtifactView, target_checks: Sequence[str]) -> Contract:
    """The contract the artifact's gates run (recorded, else derived; see the module doc)."""
    mode = view.line.evidence_mode()
    if view.contract is not None:
        return Contract(list(view.contract.checks), view.contract.evidence, True)
    return Contract(derive(view.line, target_checks, memo_of(view)), mode, False)


@dataclass
class ReportCheck:
    """What a verifier's report says of the contract: problems, and the checks it adds."""

    problems: list[str] = field(default_factory=list)
    added: list[ContractCheck] = field(default_factory=list)


def compare_report(contract: Contract, report: VerifierReport, timeout_s: float) -> ReportCheck:
    """A report may add checks, never drop or weaken one of the contract's."""
    out = ReportCheck()
    by_command = {c.command: c for c in contract.checks}
    covered: set[str] = set()
    extra = _Builder(timeout_s)
    for i, rc in enumerate(report.checks):
        if rc.check is not None:
            known = next((c for c in contract.checks if c.id == rc.check), None)
            if known is None:
                out.problems.append(
                    f"checks.{i}.check: {rc.check!r} is not a check of the contract (ids: "
                    f"{', '.join(c.id for c in contract.checks)}); leave `check` out for a "
                    "check you add")
                continue
            if known.command != rc.command:
                out.problems.append(
                    f"checks.{i}: reports `{rc.command}` as contract check {known.id}, which is "
                    f"`{known.command}`: a report may add checks, never weaken one")
                continue
            covered.add(known.id)
        elif rc.command in by_command:
            covered.add(by_command[rc.command].id)
        else:
            out.added.append(extra.add(rc.command, "verifier"))
    for c in contract.checks:
        if c.id not in covered:
            out.problems.append(
                f"the report does not include the planned check `{c.command}` ({c.id}): "
                "the contract fixed before the build is run whole; a report may add checks, "
                "never drop one")
    return out
