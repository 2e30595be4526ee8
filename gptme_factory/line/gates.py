"""Evidence-bound gates: the verifier, not the builder, declares done.

A gate turns a submitted handoff into a verdict using evidence the factory gathers itself:

- `contract`: the handoff validated against its contract (done at submit) — pass.
- `patch`: the builder's commit exists in the artifact's target, descends from the base the
  stage started from, carries no ledger commit, the diff is non-empty and its changed files
  are exactly the files the builder claims.
- `evidence`: the factory checks out the builder's exact commit in a detached worktree of the
  target, in the target's own environment (targets/envs.py), runs every verification
  command (line config + the target's test commands + scout memo plan + the verifier's own)
  with a time limit, records exit codes, durations, output tails, the tree id and the target,
  and compares them with the verifier's report. A report that disagrees with what the
  factory saw is rejected; failing checks send the artifact back to build with the failure
  summary. A check that could not run at all (envcheck.classify_check), or an environment
  whose set-up failed, is an environment failure (`GateOutcome.environment`): not a failed
  build, so no rework.
- `package`: the release package was published somewhere real (a `published` event) and the
  verified commit is the built commit.
- `outcome`: the outcome covers every named consumer and names a successor or terminal.

`consistency_problems` holds the checks against the intake that run at submit time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from ..envcheck import EnvironmentFailure, classify_check
from ..errors import InvalidRecord
from ..ledger.config import StageConfig
from ..ledger.contracts import BuilderPatch, Contract, VerifierReport
from ..ledger.gitstore import GitRepo
from ..ledger.records import CheckResult, Intake, TargetRef, format_validation_error
from ..ledger.store import Ledger
from ..targets import envs
from ..targets.checkouts import checkout, sweep
from ..targets.registry import Target, of_intake
from .checks import passed, run_check, tail
from .replay import ArtifactView


@dataclass
class GateOutcome:
    """A gate's verdict and the evidence behind it."""

    passed: bool
    reasons: list[str] = field(default_factory=list)
    failure_summary: str = ""
    checks: list[CheckResult] = field(default_factory=list)
    commit: str | None = None
    tree: str | None = None
    rework_to: str | None = None
    notes: list[str] = field(default_factory=list)
    # The package gate waits for a publication: not a failure to record (see NotPublished).
    unpublished: bool = False
    # The checks could not run (a missing program, module or interpreter, or the target's
    # set-up failed): the machine, not the work, failed; recorded as environment_failed,
    # spending no attempt and starting no rework.
    environment: EnvironmentFailure | None = None
    environment_command: str | None = None  # the check (or set-up command) that could not run
    # The repository commit and tree are in (None: the brain).
    target: TargetRef | None = None


def consistency_problems(data: Mapping[str, Any], base: str, intake: Intake) -> list[str]:
    """`field: problem` lines for a handoff that contradicts the intake it answers.

    Works on the handoff as given (a mapping), so it runs beside the contract's own
    validation and a cell learns every problem in one round; values of the wrong shape are
    left to the contract. `base` is the built-in contract the handoff's contract extends.
    """
    n = len(intake.acceptance)
    problems: list[str] = []

    def entries(name: str) -> list[Mapping[str, Any]]:
        value = data.get(name)
        return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []

    def covers(name: str) -> None:
        indices = []
        for i, entry in enumerate(entries(name)):
            idx = entry.get("criterion")
            if isinstance(idx, int) and not isinstance(idx, bool):
                indices.append(idx)
                if idx >= n:
                    problems.append(f"{name}.{i}.criterion: {idx} is out of range (0..{n - 1})")
        missing = sorted(set(range(n)) - set(indices))
        if missing:
            problems.append(
                f"{name}: no entry for acceptance criteria {missing} "
                f"({'; '.join(intake.acceptance[m][:60] for m in missing)})"
            )

    if base in ("scout_memo", "verifier_report"):
        covers("criteria")
    elif base == "builder_patch" and data.get("status", "success") == "success":
        covers("claims")
        if not data.get("files_changed"):
            problems.append("files_changed: a successful patch must list the files it changed")
    elif base == "outcome_report":
        named = {c.strip().lower() for c in intake.consumers}
        given = [(i, e.get("consumer")) for i, e in enumerate(entries("adoption"))]
        seen = {c.strip().lower() for _, c in given if isinstance(c, str)}
        for name in sorted(named - seen):
            problems.append(f"adoption: no entry for consumer {name!r} named in the intake")
        for i, who in given:
            if isinstance(who, str) and who.strip().lower() not in named:
                problems.append(f"adoption.{i}.consumer: {who!r} is not a named consumer")
    return problems


def _stage_of_gate(view: ArtifactView, gate: str) -> StageConfig | None:
    for st in view.line.stages[: view.stage_index]:
        if st.gate == gate:
            return st
    return None


def _where(target: Target) -> str:
    return "the repo" if target.is_brain else f"target {target.name} ({target.repo.root})"


def patch_gate(ledger: Ledger, view: ArtifactView, patch: BuilderPatch) -> GateOutcome:
    """Check a builder patch against git, in the artifact's target."""
    target = of_intake(ledger, view.intake)
    repo, ref = target.repo, target.ref()
    if patch.status != "success":
        return GateOutcome(False, ["the builder reported status blocked"],
                           f"builder blocked: {patch.summary}", target=ref)
    head = repo.resolve_commit(patch.head)
    base = repo.resolve_commit(patch.base)
    reasons: list[str] = []
    if head is None:
        reasons.append(f"head commit {patch.head!r} does not exist in {_where(target)}")
    if base is None:
        reasons.append(f"base commit {patch.base!r} does not exist in {_where(target)}")
    started = _started_base(view)
    if base and started and base != started:
        reasons.append(f"base {base[:12]} is not the commit the stage started from ({started[:12]})")
    if reasons or head is None or base is None:
        return GateOutcome(False, reasons, "; ".join(reasons), target=ref)
    if not repo.is_ancestor(base, head):
        reasons.append(f"head {head[:12]} does not descend from base {base[:12]}")
        return GateOutcome(False, reasons, reasons[0], target=ref)
    ledger_commits = repo.ledger_commits(base, head)
    if ledger_commits:
        reasons.append(f"{base[:12]}..{head[:12]} carries {len(ledger_commits)} factory ledger "
                       f"commit(s) ({ledger_commits[0][:12]}): build on the stage's base only, "
                       "never on the brain's history")
        return GateOutcome(False, reasons, reasons[0], target=ref)
    actual = repo.changed_files(base, head)
    if not actual:
        reasons.append(f"no diff between base {base[:12]} and head {head[:12]}: nothing was built")
    claimed = sorted(set(patch.files_changed))
    if actual and claimed != actual:
        extra = sorted(set(claimed) - set(actual))
        missing = sorted(set(actual) - set(claimed))
        if extra:
            reasons.append(f"files claimed but not changed: {', '.join(extra)}")
        if missing:
            reasons.append(f"files changed but not claimed: {', '.join(missing)}")
    tree = repo.tree_of(head)
    if reasons:
        return GateOutcome(False, reasons, "; ".join(reasons), commit=head, tree=tree, target=ref)
    where = "" if target.is_brain else f" in target {target.name}"
    return GateOutcome(True, commit=head, tree=tree, target=ref,
                       notes=[f"{len(actual)} file(s) changed{where}"])


def _started_base(view: ArtifactView) -> str | None:
    cell = view.cell
    if cell is None:
        return None
    return view.cells[cell].base_commit


def planned_checks(view: ArtifactView, stage: StageConfig,
                   required: Sequence[str] = ()) -> list[str]:
    """The verification commands the factory runs: line config, the target's, the scout plan."""
    commands = [*stage.checks, *required]
    for earlier in view.line.stages[: view.stage_index]:
        memo = view.handoffs.get(earlier.name) or {}
        plan = memo.get("verification_plan")
        for item in plan if isinstance(plan, list) else []:
            if isinstance(item, dict) and isinstance(item.get("command"), str):
                commands.append(item["command"])
    return list(dict.fromkeys(commands))


def evidence_gate(
    ledger: Ledger, view: ArtifactView, stage: StageConfig, report: VerifierReport
) -> GateOutcome:
    """Run the checks on the built commit, in its target, and compare with the verifier's report."""
    target = of_intake(ledger, view.intake)
    repo, ref = target.repo, target.ref()
    build = _stage_of_gate(view, "patch")
    built = view.gates.get(build.name) if build else None
    rework_to = build.name if build else None
    commit = built.commit if built and built.commit else repo.resolve_commit(report.commit)
    if commit is None:
        return GateOutcome(False, [f"commit {report.commit!r} does not exist in {_where(target)}"],
                           "the verified commit does not exist", target=ref)
    reasons: list[str] = []
    reported_commit = repo.resolve_commit(report.commit)
    if reported_commit != commit:
        reasons.append(f"the report covers {report.commit!r}, but the patch to verify is {commit[:12]}")
    planned = planned_checks(view, stage, target.checks)
    reported = {c.command: c for c in report.checks}
    for cmd in planned:
        if cmd not in reported:
            reasons.append(f"the report does not include the planned check `{cmd}`")
    commands = list(dict.fromkeys([*planned, *reported]))
    if not planned:
        reasons.append(
            "no verification commands are planned (line checks, the target's checks or the "
            "scout memo's verification_plan); the factory will not pass a gate on claims alone"
        )
    tree = repo.tree_of(commit)
    try:
        results, env = run_in_target(ledger, target, commit, commands, stage.check_timeout_s,
                                     label=f"verify-{view.cell or 'gate'}")
    except envs.SetupFailed as exc:
        return _environment_outcome(exc.failure, exc.results[-1].command if exc.results else "",
                                    exc.results, commit, tree, ref, setup=True)
    failing = [r for r in results if not passed(r)]
    for r in failing:
        found = classify_check(r.command, r.exit_code, r.output_tail)
        if found is not None:
            return _environment_outcome(found, r.command, results, commit, tree, ref)
    for r in results:
        claim = reported.get(r.command)
        if claim is None:
            continue
        observed = "timed out" if r.timed_out else f"exited {r.exit_code}"
        if (claim.exit_code == 0) != passed(r):
            reasons.append(
                f"the verifier claims `{r.command}` exited {claim.exit_code}; the factory observed: {observed}"
            )
    if report.verdict == "pass" and failing:
        reasons.append("the verifier claims pass, but checks fail: " +
                       ", ".join(f"`{r.command}`" for r in failing))
    if report.verdict == "fail" and not failing and not reasons:
        reasons.append("the verifier reports fail, but every check passes: say what fails")
    if report.verdict == "pass":
        unsure = [c.criterion for c in report.criteria if c.verdict != "pass"]
        if unsure:
            reasons.append(f"verdict pass while criteria {unsure} are not pass")
    if reasons:
        # The report is wrong or incomplete: retry the verify stage, do not touch the patch.
        summary = "verifier report rejected: " + "; ".join(reasons)
        return GateOutcome(False, reasons, summary, results, commit, tree, target=ref)
    if failing:
        summary_lines = [report.failure_summary.strip() or "checks failed"]
        for r in failing:
            state = "timed out" if r.timed_out else f"exit {r.exit_code}"
            summary_lines.append(f"$ {r.command}  ({state})\n{tail(r.output_tail, 15, 1500)}")
        return GateOutcome(
            False,
            [f"`{r.command}` failed" for r in failing],
            "\n".join(summary_lines),
            results,
            commit,
            tree,
            rework_to=rework_to,
            target=ref,
        )
    where = "" if target.is_brain else f" of target {target.name}"
    notes = [f"{len(results)} check(s) passed on tree {tree[:12]}{where}"]
    if env.key:
        how = (f"made now by {len(env.setup)} set-up command(s)" if env.made
               else "reused: its set-up inputs are unchanged")
        notes.append(f"in the target's environment {env.key} ({how})")
    return GateOutcome(True, checks=results, commit=commit, tree=tree, target=ref, notes=notes)


def run_in_target(ledger: Ledger, target: Target, commit: str, commands: Sequence[str],
                  timeout_s: float, *, label: str = "verify-gate",
                  ) -> tuple[list[CheckResult], envs.TargetEnv]:
    """Run `commands` in a fresh checkout of `commit` of `target`, in the target's environment.

    The checkout is detached and thrown away afterwards; the environment is made by the
    target's set-up on first use and reused (envs.SetupFailed if it cannot be made).
    """
    with checkout(target.repo, commit, label) as path, envs.activated(
            ledger.runtime_dir, target, path, commit, run=run_check,
            timeout_s=timeout_s) as env:
        variables = env.variables()
        return [run_check(c, path, timeout_s, variables) for c in commands], env


def _environment_outcome(failure: EnvironmentFailure, command: str, results: list[CheckResult],
                         commit: str, tree: str, ref: TargetRef | None, *,
                         setup: bool = False) -> GateOutcome:
    """Not a verdict on the build: the checks (or the target's set-up) could not run here."""
    what = f"the set-up `{command}`" if setup else f"`{command}`"
    return GateOutcome(False, [f"{what} could not run: {failure.cause}"], failure.summary(),
                       results, commit, tree, environment=failure,
                       environment_command=command or None, target=ref)


def _sweep_gate_worktrees(repo: GitRepo) -> None:
    """Remove gate checkouts left by an `advance` that was killed (its pid is gone)."""
    sweep(repo, "verify")


def package_gate(view: ArtifactView) -> GateOutcome:
    """A package passes once published, and only for the commit that was verified."""
    build = _stage_of_gate(view, "patch")
    verify = _stage_of_gate(view, "evidence")
    b = view.gates.get(build.name) if build else None
    v = view.gates.get(verify.name) if verify else None
    if b and v and b.commit != v.commit:
        return GateOutcome(False, ["verified commit differs from the built commit"],
                           "verify again on the built commit")
    if build and not v:
        return GateOutcome(False, ["verify has not passed on the built commit"],
                           "verify has not passed")
    if not view.published_current:
        return GateOutcome(False, ["not published yet"], "not published yet", unpublished=True)
    where = view.published[-1].where
    return GateOutcome(True, commit=b.commit if b else None, notes=[f"published: {where}"],
                       target=b.target if b else None)


def evaluate(
    ledger: Ledger, view: ArtifactView, stage: StageConfig, handoff: Contract
) -> GateOutcome:
    """Run the stage's gate on its validated handoff."""
    if stage.gate == "patch" and isinstance(handoff, BuilderPatch):
        return patch_gate(ledger, view, handoff)
    if stage.gate == "evidence" and isinstance(handoff, VerifierReport):
        return evidence_gate(ledger, view, stage, handoff)
    if stage.gate == "package":
        return package_gate(view)
    if stage.gate in ("patch", "evidence"):
        return GateOutcome(False, [f"the {stage.gate} gate needs a {stage.gate} contract handoff"],
                           f"wrong contract for the {stage.gate} gate")
    return GateOutcome(True, notes=["handoff satisfies its contract"])


def handoff_model(ledger: Ledger, stage: StageConfig, data: dict[str, Any]) -> Contract:
    """Re-validate a recorded handoff into its contract model."""
    name = ledger.config.contract_name(stage)
    try:
        return ledger.config.contract_model(name).model_validate(data)
    except ValidationError as exc:  # factory.yaml changed the contract since the handoff
        raise InvalidRecord(
            f"the recorded {stage.name} handoff no longer satisfies {name} "
            "(was factory.yaml changed?)", format_validation_error(exc)) from None
