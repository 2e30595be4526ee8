"""Evidence-bound gates: the verifier, not the builder, declares done.

A gate turns a submitted handoff into a verdict using evidence the factory gathers itself
(`evaluate.py` says which gate judges a stage). Here:

- `contract`: the handoff validated against its contract (done at submit) — pass.
- `patch`: the builder's commit exists in the artifact's target, descends from the base the
  stage started from, carries no ledger commit, the diff is non-empty and its changed files
  are exactly the files the builder claims (`check_commit`, shared with the reproduce gate).
- `package`: the release package was published somewhere real (a `published` event) and the
  verified commit is the built commit.
- `outcome`: the outcome covers every named consumer and names a successor or terminal.

The gates that run checks — `plan` (the validation contract fixed before the build),
`reproduce`, `fix` and `evidence` (verify) — are in evidencegates.py. A check that could not
run at all (envcheck.classify_check), or an environment whose set-up failed, is an
environment failure (`GateOutcome.environment`, `environment_outcome`): not a failed build,
so no rework. `consistency_problems` holds the checks against the intake that run at submit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from ..envcheck import EnvironmentFailure
from ..errors import InvalidRecord
from ..ledger.config import BUILD_GATES, StageConfig
from ..ledger.contracts import BuilderPatch, Contract
from ..ledger.gitstore import GitRepo
from ..ledger.records import (
    CheckResult,
    ContractCheck,
    Evidence,
    Intake,
    TargetRef,
    format_validation_error,
)
from ..ledger.store import Ledger
from ..targets import envs
from ..targets.checkouts import checkout, sweep
from ..targets.registry import Target, of_intake
from .checks import run_check
from .replay import ArtifactView
from .validation import of_view


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
    # What the gate saw check by check, base and head (gates that run checks).
    evidence: Evidence | None = None
    # A planning gate that passes fixes this validation contract (recorded before the verdict).
    contract: list[ContractCheck] | None = None


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
    if base == "scout_memo":
        for i, item in enumerate(entries("verification_plan")):
            tied = item.get("criteria")
            for j, idx in enumerate(tied if isinstance(tied, list) else []):
                if isinstance(idx, int) and not isinstance(idx, bool) and not 0 <= idx < n:
                    problems.append(f"verification_plan.{i}.criteria.{j}: {idx} is out of "
                                    f"range (0..{n - 1})")
    elif base == "reproduction" and data.get("status", "success") == "success":
        if not data.get("files_changed"):
            problems.append("files_changed: a reproduction must list the files it changed")
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


def _stage_of_gate(view: ArtifactView, *gates: str) -> StageConfig | None:
    """The last stage before the current one whose gate is one of `gates`."""
    found = None
    for st in view.line.stages[: view.stage_index]:
        if st.gate in gates:
            found = st
    return found


def build_stage(view: ArtifactView) -> StageConfig | None:
    """The stage before the current one that built the change (a patch or fix gate)."""
    return _stage_of_gate(view, *BUILD_GATES)


def _where(target: Target) -> str:
    return "the repo" if target.is_brain else f"target {target.name} ({target.repo.root})"


def patch_gate(ledger: Ledger, view: ArtifactView, patch: BuilderPatch) -> GateOutcome:
    """Check a builder patch against git, in the artifact's target."""
    return check_commit(ledger, view, what="builder", status=patch.status,
                        summary=patch.summary, base=patch.base, head=patch.head,
                        files_changed=patch.files_changed)


def check_commit(ledger: Ledger, view: ArtifactView, *, what: str, status: str, summary: str,
                 base: str, head: str, files_changed: Sequence[str]) -> GateOutcome:
    """Check a handed-over commit range against git.

    It exists in the target, descends from the stage's base, carries no ledger commit,
    changes something and exactly the files claimed.
    """
    target = of_intake(ledger, view.intake)
    repo, ref = target.repo, target.ref()
    if status != "success":
        return GateOutcome(False, [f"the {what} reported status blocked"],
                           f"{what} blocked: {summary}", target=ref)
    head_c = repo.resolve_commit(head)
    base_c = repo.resolve_commit(base)
    reasons: list[str] = []
    if head_c is None:
        reasons.append(f"head commit {head!r} does not exist in {_where(target)}")
    if base_c is None:
        reasons.append(f"base commit {base!r} does not exist in {_where(target)}")
    started = _started_base(view)
    if base_c and started and base_c != started:
        reasons.append(f"base {base_c[:12]} is not the commit the stage started from "
                       f"({started[:12]})")
    if reasons or head_c is None or base_c is None:
        return GateOutcome(False, reasons, "; ".join(reasons), target=ref)
    if not repo.is_ancestor(base_c, head_c):
        reasons.append(f"head {head_c[:12]} does not descend from base {base_c[:12]}")
        return GateOutcome(False, reasons, reasons[0], target=ref)
    ledger_commits = repo.ledger_commits(base_c, head_c)
    if ledger_commits:
        reasons.append(f"{base_c[:12]}..{head_c[:12]} carries {len(ledger_commits)} factory "
                       f"ledger commit(s) ({ledger_commits[0][:12]}): build on the stage's base "
                       "only, never on the brain's history")
        return GateOutcome(False, reasons, reasons[0], target=ref)
    actual = repo.changed_files(base_c, head_c)
    if not actual:
        reasons.append(f"no diff between base {base_c[:12]} and head {head_c[:12]}: nothing "
                       "was built")
    claimed = sorted(set(files_changed))
    if actual and claimed != actual:
        extra = sorted(set(claimed) - set(actual))
        missing = sorted(set(actual) - set(claimed))
        if extra:
            reasons.append(f"files claimed but not changed: {', '.join(extra)}")
        if missing:
            reasons.append(f"files changed but not claimed: {', '.join(missing)}")
    tree = repo.tree_of(head_c)
    if reasons:
        return GateOutcome(False, reasons, "; ".join(reasons), commit=head_c, tree=tree,
                           target=ref)
    where = "" if target.is_brain else f" in target {target.name}"
    return GateOutcome(True, commit=head_c, tree=tree, target=ref,
                       notes=[f"{len(actual)} file(s) changed{where}"])


def _started_base(view: ArtifactView) -> str | None:
    cell = view.cell
    if cell is None:
        return None
    return view.cells[cell].base_commit


def planned_checks(view: ArtifactView, stage: StageConfig,
                   required: Sequence[str] = ()) -> list[str]:
    """The commands of the validation contract: the line's, the target's, the scout's plan."""
    del stage  # the contract takes the line's checks from its verify stage
    return list(dict.fromkeys(c.command for c in of_view(view, required).checks))


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


def environment_outcome(failure: EnvironmentFailure, command: str, results: list[CheckResult],
                        commit: str | None, tree: str | None, ref: TargetRef | None, *,
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
    build = build_stage(view)
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


def handoff_model(ledger: Ledger, stage: StageConfig, data: dict[str, Any]) -> Contract:
    """Re-validate a recorded handoff into its contract model."""
    name = ledger.config.contract_name(stage)
    try:
        return ledger.config.contract_model(name).model_validate(data)
    except ValidationError as exc:  # factory.yaml changed the contract since the handoff
        raise InvalidRecord(
            f"the recorded {stage.name} handoff no longer satisfies {name} "
            "(was factory.yaml changed?)", format_validation_error(exc)) from None
