"""The gates that run the validation contract: plan, reproduce, fix and evidence (verify).

- `plan` (the scout's gate): the contract — the line's and the target's required checks and
  the scout's planned checks with their criteria (validation.py) — is run at the stage's
  base. It is refused unless some check tied to an acceptance criterion fails there (on a
  fail-to-pass line): a plan whose checks cannot fail is no evidence. Passing records the
  contract (`contract_fixed`, in the verdict's commit); from then on it is what gates run.
- `reproduce` (bugfix line): the reproducer's commit is checked against git like a patch;
  the checks it names must be contract checks tied to a criterion, and fail there — twice,
  the same way — with the failure line it gives (what the issue describes) in their output.
  The whole contract is observed at that commit, which the build then starts from.
- `fix` (bugfix line's build): a patch on top of the reproduction that leaves the
  reproduction's files alone; the contract must show fail-to-pass from the reproduction
  commit and pass-to-pass (evidence.py).
- `evidence` (verify): the verifier's report must cover the whole contract (it may add
  checks, never drop or weaken one) and agree with what the factory observed; then the same
  fail-to-pass / pass-to-pass judgement, base = the build stage's base.

Base sides come from the per-machine cache when an earlier gate observed them (observe.py),
so rework does not re-run them. Every verdict carries the evidence table (`Evidence`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..envcheck import EnvironmentFailure
from ..ledger.config import StageConfig
from ..ledger.contracts import BuilderPatch, Reproduction, ScoutMemo, VerifierReport
from ..ledger.records import CheckResult, ContractCheck, RowVerdict, TargetRef
from ..ledger.store import Ledger
from ..targets import envs
from ..targets.bases import base_commit
from ..targets.registry import Target, of_intake
from .checks import passed, tail
from .evidence import (
    Finding,
    Side,
    build_finding,
    evidence_record,
    observation,
    observe_base,
    observe_head,
    plan_finding,
    reproduce_finding,
)
from .gates import GateOutcome, build_stage, check_commit, environment_outcome, patch_gate
from .observe import Bench, CannotRun
from .replay import ArtifactView
from .validation import (
    Contract,
    check_timeout,
    compare_report,
    derive,
    effective_timeout,
    evidence_stage,
    of_view,
    planning_stage,
)


@dataclass
class _Gate:
    """What every contract-running gate needs: where, which contract, which limits."""

    ledger: Ledger
    view: ArtifactView
    stage: StageConfig
    target: Target
    contract: Contract

    @property
    def ref(self) -> TargetRef | None:
        return self.target.ref()

    @property
    def label(self) -> str:
        return f"verify-{self.view.cell or 'gate'}"

    @property
    def setup_timeout(self) -> float:
        return check_timeout(self.view.line, self.stage)

    def timeouts(self, added: list[ContractCheck] | None = None) -> dict[str, float]:
        line = self.view.line
        return {c.id: effective_timeout(c, line) for c in [*self.contract.checks, *(added or [])]}

    def raise_limit(self) -> str:
        line = self.view.line
        st = evidence_stage(line) or self.stage
        i = line.stages.index(st)
        return (f"raise lines.{self.view.intake.line}.stages.{i}.check_timeout_s (stage "
                f"{st.name}) in factory.yaml")

    def bench(self, commit: str, side: str) -> Bench:
        return Bench(self.ledger, self.target, commit, label=f"{self.label}-{side}",
                     setup_timeout_s=self.setup_timeout)

    def rework(self, finding: Finding) -> str | None:
        """The stage the work goes back to (None: this stage is tried again)."""
        names = [s.name for s in self.view.line.stages]
        here = names.index(self.stage.name)
        if finding.rework == "plan":
            plan = planning_stage(self.view)
            return plan.name if plan and names.index(plan.name) < here else None
        if finding.rework == "build":
            build = build_stage(self.view)
            return build.name if build and names.index(build.name) < here else None
        return None


def _started_base(view: ArtifactView, cell: str | None) -> str | None:
    return view.cells[cell].base_commit if cell and cell in view.cells else None


def _cannot_run(exc: CannotRun | envs.SetupFailed, ref: TargetRef | None,
                commit: str | None, tree: str | None) -> GateOutcome:
    failure: EnvironmentFailure = exc.failure
    if isinstance(exc, envs.SetupFailed):
        cmd = exc.results[-1].command if exc.results else ""
        return environment_outcome(failure, cmd, exc.results, commit, tree, ref, setup=True)
    return environment_outcome(failure, exc.command, exc.results, commit, tree, ref)


def _summary(finding: Finding, head: str = "") -> str:
    lines = ["; ".join(finding.reasons)]
    for r in finding.failing:
        state = "timed out" if r.timed_out else f"exit {r.exit_code}"
        lines.append(f"$ {r.command}  ({state}{head})\n{tail(r.output_tail, 15, 1500)}")
    return "\n".join(lines)


# -- plan -------------------------------------------------------------------------------


def plan_gate(ledger: Ledger, view: ArtifactView, stage: StageConfig,
              memo: ScoutMemo) -> GateOutcome:
    """Fix the validation contract, refusing one in which no check can fail."""
    target = of_intake(ledger, view.intake)
    checks = derive(view.line, target.checks, memo.model_dump(mode="json"))
    gate = _Gate(ledger, view, stage, target, Contract(checks, view.line.evidence_mode(), True))
    base = _started_base(view, view.cell) or base_commit(target)
    try:
        with gate.bench(base, "base") as bench:
            side = observe_base(bench, gate.contract, gate.timeouts())
    except (CannotRun, envs.SetupFailed) as exc:
        return _cannot_run(exc, gate.ref, base, None)
    found = plan_finding(gate.contract, side, gate.timeouts(), gate.raise_limit(),
                         reproduced_later=_reproduces_later(view, stage))
    evidence = evidence_record(gate.contract.mode, checks, side, None, fixed=True)
    if not found.ok:
        return GateOutcome(False, found.reasons, "contract refused: " + "; ".join(found.reasons),
                           side.first, base, side.tree, target=gate.ref, evidence=evidence)
    where = "" if target.is_brain else f" of target {target.name}"
    notes = [f"contract fixed: {len(checks)} check(s), tried at base {base[:12]}{where}",
             *found.notes]
    return GateOutcome(True, checks=side.first, commit=base, tree=side.tree, target=gate.ref,
                       notes=notes, evidence=evidence, contract=checks)


def _reproduces_later(view: ArtifactView, stage: StageConfig) -> bool:
    """Whether a reproduce stage follows `stage` on the line (fail-first is shown there)."""
    names = [s.name for s in view.line.stages]
    return any(s.gate == "reproduce" for s in view.line.stages[names.index(stage.name) + 1:])


# -- reproduce --------------------------------------------------------------------------


def _issue_text(view: ArtifactView) -> str:
    i = view.intake
    return "\n".join([i.title, i.problem, *i.acceptance])


def reproduce_gate(ledger: Ledger, view: ArtifactView, stage: StageConfig,
                   repro: Reproduction) -> GateOutcome:
    """A committed reproduction: it fails at its commit, for the reason the issue describes."""
    committed = check_commit(ledger, view, what="reproducer", status=repro.status,
                             summary=repro.summary, base=repro.base, head=repro.head,
                             files_changed=repro.files_changed)
    if not committed.passed or committed.commit is None:
        return committed
    head = committed.commit
    target = of_intake(ledger, view.intake)
    gate = _Gate(ledger, view, stage, target, of_view(view, target.checks))
    named = [(ref, gate.contract.find(ref)) for ref in repro.checks]
    unknown = [ref for ref, c in named if c is None]
    if unknown:
        ids = ", ".join(f"{c.id} (`{c.command}`)" for c in gate.contract.checks)
        reasons = [f"checks: {', '.join(repr(u) for u in unknown)} are not checks of the "
                   f"contract ({ids}): name the contract checks that reproduce the bug"]
        return GateOutcome(False, reasons, reasons[0], commit=head, tree=committed.tree,
                           target=gate.ref)
    repros = list({c.id: c for _, c in named if c is not None}.values())
    twice = {c.id for c in repros}
    timeouts = gate.timeouts()
    side = Side(head, committed.tree or "")
    try:
        with gate.bench(head, "head") as bench:
            side.tree = bench.tree
            for c in gate.contract.checks:
                runs = bench.ensure(c, 2 if c.id in twice else 1, timeouts[c.id])
                side.seen[c.id] = observation(runs, 0)
                side.first.append(runs[0])
                side.runs[c.id] = runs
    except (CannotRun, envs.SetupFailed) as exc:
        return _cannot_run(exc, gate.ref, head, committed.tree)
    found = reproduce_finding(gate.contract, repros, side, repro.failure, _issue_text(view),
                              timeouts, gate.raise_limit())
    verdicts: dict[str, RowVerdict] = {c.id: "reproduces" for c in repros} if found.ok else {}
    evidence = evidence_record(gate.contract.mode, gate.contract.checks, None, side,
                               fixed=gate.contract.fixed, verdicts=verdicts)
    if not found.ok:
        return GateOutcome(False, found.reasons, "reproduction refused: " + _summary(found),
                           side.first, head, side.tree, rework_to=gate.rework(found),
                           target=gate.ref, evidence=evidence)
    return GateOutcome(True, checks=side.first, commit=head, tree=side.tree, target=gate.ref,
                       notes=[*committed.notes, *found.notes], evidence=evidence)


# -- fix and verify ---------------------------------------------------------------------


@dataclass
class _Seen:
    base: Side | None
    head: Side
    finding: Finding
    env: envs.TargetEnv | None = None  # the head side's environment


def _observe_build(gate: _Gate, base: str | None, head: str,
                   added: list[ContractCheck]) -> _Seen:
    """Both sides of a build (CannotRun / SetupFailed when the machine cannot run them)."""
    timeouts = gate.timeouts(added)
    base_side = None
    if base is not None and base != head:
        with gate.bench(base, "base") as bench:
            base_side = observe_base(bench, gate.contract, timeouts)
    with gate.bench(head, "head") as bench:
        head_side = observe_head(bench, [*gate.contract.checks, *added], base_side,
                                 gate.contract.mode, timeouts)
        env = bench.env
    found = build_finding(gate.contract, added, base_side, head_side, timeouts,
                          gate.raise_limit())
    return _Seen(base_side, head_side, found, env)


def _protected(ledger: Ledger, view: ArtifactView, target: Target, base: str,
               head: str) -> list[str]:
    """Files of the reproduction that the build changed (the reproduction is the contract's)."""
    repro = next((st for st in view.line.stages[: view.stage_index] if st.gate == "reproduce"),
                 None)
    gate = view.gates.get(repro.name) if repro else None
    if gate is None or not gate.commit:
        return []
    start = _started_base(view, gate.cell)
    if start is None:
        return []
    ours = set(target.repo.changed_files(start, gate.commit))
    return sorted(ours & set(target.repo.changed_files(base, head)))


def fix_gate(ledger: Ledger, view: ArtifactView, stage: StageConfig,
             patch: BuilderPatch) -> GateOutcome:
    """A fix on top of the reproduction: the reproduction passes, pass-to-pass holds."""
    outcome = patch_gate(ledger, view, patch)
    if not outcome.passed or outcome.commit is None:
        return outcome
    head = outcome.commit
    target = of_intake(ledger, view.intake)
    base = _started_base(view, view.cell) or target.repo.resolve_commit(patch.base)
    assert base is not None  # the patch gate resolved it
    touched = _protected(ledger, view, target, base, head)
    if touched:
        reasons = [f"the fix changes the reproduction's files ({', '.join(touched)}): the "
                   "reproduction is part of the contract fixed before the build, and the "
                   "builder cannot change it; leave those files as the reproduce stage "
                   "committed them"]
        return GateOutcome(False, reasons, reasons[0], commit=head, tree=outcome.tree,
                           target=outcome.target)
    gate = _Gate(ledger, view, stage, target, of_view(view, target.checks))
    try:
        seen = _observe_build(gate, base, head, [])
    except (CannotRun, envs.SetupFailed) as exc:
        return _cannot_run(exc, gate.ref, head, outcome.tree)
    evidence = evidence_record(gate.contract.mode, gate.contract.checks, seen.base, seen.head,
                               fixed=gate.contract.fixed)
    if not seen.finding.ok:
        return GateOutcome(False, seen.finding.reasons, _summary(seen.finding),
                           seen.head.first, head, seen.head.tree,
                           rework_to=gate.rework(seen.finding), target=gate.ref,
                           evidence=evidence)
    return GateOutcome(True, checks=seen.head.first, commit=head, tree=seen.head.tree,
                       target=gate.ref, notes=[*outcome.notes, *seen.finding.notes],
                       evidence=evidence)


def evidence_gate(ledger: Ledger, view: ArtifactView, stage: StageConfig,
                  report: VerifierReport) -> GateOutcome:
    """Run the contract on the built commit and its base, and compare with the report."""
    target = of_intake(ledger, view.intake)
    repo, ref = target.repo, target.ref()
    build = build_stage(view)
    built = view.gates.get(build.name) if build else None
    commit = built.commit if built and built.commit else repo.resolve_commit(report.commit)
    where = "the repo" if target.is_brain else f"target {target.name} ({target.repo.root})"
    if commit is None:
        return GateOutcome(False, [f"commit {report.commit!r} does not exist in {where}"],
                           "the verified commit does not exist", target=ref)
    gate = _Gate(ledger, view, stage, target, of_view(view, target.checks))
    reasons: list[str] = []
    if repo.resolve_commit(report.commit) != commit:
        reasons.append(f"the report covers {report.commit!r}, but the patch to verify is "
                       f"{commit[:12]}")
    if not gate.contract.checks:
        reasons.append(
            "no verification commands are planned (line checks, the target's checks or the "
            "scout memo's verification_plan); the factory will not pass a gate on claims alone")
    compared = compare_report(gate.contract, report, check_timeout(view.line, stage))
    reasons += compared.problems
    base = (_started_base(view, built.cell) if built else None) or _started_base(view, view.cell)
    try:
        seen = _observe_build(gate, base, commit, compared.added)
    except (CannotRun, envs.SetupFailed) as exc:
        return _cannot_run(exc, ref, commit, repo.tree_of(commit))
    head, found = seen.head, seen.finding
    checks = [*gate.contract.checks, *compared.added]
    evidence = evidence_record(gate.contract.mode, checks, seen.base, head,
                               fixed=gate.contract.fixed)
    reasons += _claims(report, checks, head)
    results = head.first
    if reasons:
        # The report is wrong or incomplete: retry the verify stage, do not touch the patch.
        return GateOutcome(False, reasons, "verifier report rejected: " + "; ".join(reasons),
                           results, commit, head.tree, target=ref, evidence=evidence)
    if not found.ok:
        lead = report.failure_summary.strip()
        summary = (f"{lead}\n" if lead else "") + _summary(found)
        return GateOutcome(False, found.reasons, summary, results, commit, head.tree,
                           rework_to=gate.rework(found), target=ref, evidence=evidence)
    at = "" if target.is_brain else f" of target {target.name}"
    notes = [f"{len(results)} check(s) passed on tree {head.tree[:12]}{at}", *found.notes]
    if not gate.contract.fixed:
        notes.append("no contract was fixed before the build (the line has no plan gate): "
                     "derived from the line, the target and the scout's plan")
    env = seen.env
    if env is not None and env.key:
        how = (f"made now by {len(env.setup)} set-up command(s)" if env.made
               else "reused: its set-up inputs are unchanged")
        notes.append(f"in the target's environment {env.key} ({how})")
    return GateOutcome(True, checks=results, commit=commit, tree=head.tree, target=ref,
                       notes=notes, evidence=evidence)


def _claims(report: VerifierReport, checks: list[ContractCheck], head: Side) -> list[str]:
    """Where the report disagrees with what the factory observed at the head."""
    reasons: list[str] = []
    claimed = {rc.command: rc for rc in report.checks}
    by_id = {c.id: c for c in checks}
    first: dict[str, CheckResult] = {}
    for cid, runs in head.runs.items():
        first[by_id[cid].command] = runs[0]
    for cmd, r in first.items():
        claim = claimed.get(cmd)
        if claim is None:
            continue
        if (claim.exit_code == 0) != passed(r):
            observed = "timed out" if r.timed_out else f"exited {r.exit_code}"
            reasons.append(f"the verifier claims `{cmd}` exited {claim.exit_code}; the factory "
                           f"observed: {observed}")
    failing = [cmd for cmd, r in first.items() if not passed(r)]
    if report.verdict == "pass" and failing:
        reasons.append("the verifier claims pass, but checks fail: "
                       + ", ".join(f"`{c}`" for c in failing))
    if report.verdict == "fail" and not failing and not reasons:
        reasons.append("the verifier reports fail, but every check passes: say what fails")
    if report.verdict == "pass":
        unsure = [c.criterion for c in report.criteria if c.verdict != "pass"]
        if unsure:
            reasons.append(f"verdict pass while criteria {unsure} are not pass")
    return reasons
