"""Packaging: render the packager's release package to files and publish it.

The packager cell hands over a typed `release_package` (contracts.ReleasePackage). `render`
turns it, together with what the ledger knows (the intake's demand and criteria, the scout
memo, the verifier evidence bound to a commit and tree), into Markdown files whose names all
carry the artifact id, so two artifacts packaged into the same directory never collide:

    changelog.d/<artifact>.<change_type>.md     towncrier-style changelog fragment
    release-notes/<artifact>.md                 release notes
    pr/<artifact>.md                            pull request description (title passed apart)
    announcements/<artifact>.md                 announcement draft (blog/social)

`publish` writes them (by default under `factory/packages/` of the brain: the ledger stays
in the brain), then, for the chosen kind of publication:

- `note`: the release notes file *is* the publication; `where` is its path.
- `pr`: pushes the builder's branch and runs `gh pr create`; `where` is the PR URL.
- `release`: pushes the branch and runs `gh release create TAG --target COMMIT`; `where` is TAG.
- `branch`: pushes the builder's branch to the target's remote, and nothing else; `where`
  names the branch and the remote, and the exact `gh pr create` to open the PR from it is
  returned for a person (a project not on GitHub, or a machine without gh).

For an artifact on a target (targets/registry.py) the branch is pushed from the target's
clone to the target's remote, the PR opens on the target repo (`gh pr create --repo
OWNER/NAME`, base: the target's base branch), the release is made there, and the PR body
names the target and links the ledger evidence in the brain. For the brain itself nothing
changed: its own remote and current branch.

When `gh` is missing or not logged in, nothing is published: the files are written and the
exact commands are returned for a person to run (then `--where URL` records it). Publishing
is a `published` event; files under the ledger directory are committed with it, so the
ledger shows exactly what went out. The package gate passes only after that event.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import FactoryError, IllegalTransition, UsageError
from ..ledger.config import StageConfig
from ..ledger.contracts import BuilderPatch, ReleasePackage, ScoutMemo, VerifierReport
from ..ledger.kinds import ArtifactChain, StoredEvent
from ..ledger.records import GatePassed, HandoffSubmitted
from ..ledger.store import Ledger
from ..ledger.stream import Root
from ..line import engine, evidencetable
from ..line.replay import ArtifactView
from ..targets.detect import github_slug
from ..targets.registry import Target, of_intake
from .ghcli import Gh, GhError, command_line, last_url, parse_issue_ref
from .selfplay import is_self_play, ledger_self_names

TARGETS = ("pr", "release", "branch", "note")
PACKAGES_DIR = "packages"


@dataclass
class LedgerLink:
    """A ledger record the PR description points at."""

    label: str
    path: str
    url: str | None

    def markdown(self) -> str:
        """`[file name](url)` or the path in backticks when there is no URL."""
        name = self.path.rsplit("/", 1)[-1]
        return f"[`{name}`]({self.url})" if self.url else f"`{self.path}`"


@dataclass
class RenderedPackage:
    """The package's files (relative to the output directory) and the PR title."""

    artifact: str
    change_type: str
    version_bump: str
    pr_title: str
    files: dict[str, str]
    changelog: str
    release_notes: str
    pr_body: str
    announcement: str
    branch: str | None = None
    commit: str | None = None
    self_play: bool = False


@dataclass
class PackageResult:
    """What `publish` did."""

    package: RenderedPackage
    target: str
    out_dir: Path
    written: list[str]
    published: bool = False
    where: str | None = None
    event: str | None = None
    commands: list[str] = field(default_factory=list)
    ran: list[str] = field(default_factory=list)
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        """Plain dict for --json output."""
        p = self.package
        return {"artifact": p.artifact, "target": self.target, "published": self.published,
                "where": self.where, "event": self.event, "files": self.written,
                "change_type": p.change_type, "version_bump": p.version_bump,
                "pr_title": p.pr_title, "branch": p.branch, "commit": p.commit,
                "self_play": p.self_play, "ran": self.ran, "commands": self.commands,
                "reason": self.reason or None}


# -- reading the ledger -----------------------------------------------------------------


def package_stage(ledger: Ledger, view: ArtifactView) -> tuple[StageConfig, ReleasePackage]:
    """The line's package stage and its recorded release package (UsageError if none yet)."""
    stages = [s for s in view.line.stages if s.gate == "package"]
    if not stages:
        raise UsageError(f"line {view.intake.line} has no package stage")
    for st in stages:
        data = view.handoffs.get(st.name)
        if data is None:
            continue
        model = ledger.config.contract_model(ledger.config.contract_name(st))
        handoff = model.model_validate(data)
        if not isinstance(handoff, ReleasePackage):
            raise UsageError(f"stage {st.name} hands over a {handoff.__class__.__name__}, "
                             "not a release package")
        return st, handoff
    aid = view.intake.artifact
    raise IllegalTransition(
        f"{aid} has no release package yet (state {view.state}): the packager cell of stage "
        f"{stages[0].name} must submit one first (`gptme-factory start {aid}`, then `submit`)"
    )


def _last(chain: ArtifactChain, ledger: Ledger,
          want: type[Any]) -> tuple[StoredEvent, HandoffSubmitted] | None:
    found = None
    for rec in chain.events:
        ev = rec.event
        if isinstance(ev, HandoffSubmitted):
            try:
                model = ledger.config.contract_model(ev.contract)
            except KeyError:
                continue
            if issubclass(model, want):
                found = (rec, ev)
    return found


def _evidence_gate(chain: ArtifactChain) -> tuple[StoredEvent, GatePassed] | None:
    found = None
    for rec in chain.events:
        if isinstance(rec.event, GatePassed) and rec.event.gate == "evidence":
            found = (rec, rec.event)
    return found


def github_repo(url: str | None) -> str | None:
    """OWNER/REPO of a GitHub remote URL (https or ssh), else None."""
    return github_slug(url)


# -- rendering --------------------------------------------------------------------------


def render(ledger: Ledger, artifact: str, remote: str = "origin") -> RenderedPackage:
    """Render an artifact's release package and its ledger links to Markdown texts."""
    chain, view = engine.load(ledger, artifact)
    _, pkg = package_stage(ledger, view)
    intake = view.intake
    project = of_intake(ledger, intake)
    # Ledger links point into the brain: its own remote (`remote` is the target's otherwise).
    gh_repo = github_repo(ledger.repo.remote_url(remote if project.is_brain else "origin"))
    head = ledger.repo.head()

    def link(label: str, rec: StoredEvent | Root[Any] | None) -> LedgerLink | None:
        if rec is None:
            return None
        url = f"https://github.com/{gh_repo}/blob/{head}/{rec.path}" if gh_repo and head else None
        return LedgerLink(label, rec.path, url)

    scout, patch, report = (_last(chain, ledger, t) for t in (ScoutMemo, BuilderPatch,
                                                              VerifierReport))
    gate = _evidence_gate(chain)
    memo = scout[1].handoff if scout else None
    patch_data = patch[1].handoff if patch else None
    gate_ev = gate[1] if gate else None
    commit = gate_ev.commit if gate_ev else (patch_data or {}).get("head")
    demand_ref = parse_issue_ref(intake.demand)
    demand = str(demand_ref) if demand_ref else intake.demand
    self_play = is_self_play(intake.consumers, ledger_self_names(ledger))

    fixes = (demand_ref is not None and project.slug is not None
             and demand_ref.slug.lower() == project.slug.lower())
    lines = [pkg.pr_description.rstrip(), "",
             *([f"Fixes #{demand_ref.number}", ""] if fixes and demand_ref else []),
             "---", "",
             f"**Factory ledger** for artifact `{artifact}` (line `{intake.line}`, "
             f"{intake.classification.replace('_', ' ')})", ""]
    if not project.is_brain:
        where = f"`{project.slug}`" if project.slug else f"`{project.url() or project.repo.root}`"
        lines.append(f"- **Target:** `{project.name}` — {where}, base branch `{project.base}`")
        brain_where = f"`{gh_repo}`" if gh_repo else "the factory's brain repo"
        lines.append(f"- **Ledger:** in {brain_where} at commit `{(head or '?')[:12]}` (the "
                     "evidence below; no ledger file is part of this change)")
    intake_link = link("intake", chain.root)
    lines.append(f"- **Demand:** {demand} · consumers: {', '.join(intake.consumers)} · "
                 f"intake {intake_link.markdown() if intake_link else ''}")
    if self_play:
        lines.append("- **Self-play:** every named consumer is the factory itself")
    lines.append("- **Acceptance criteria:**")
    lines += [f"  {i}. {a}" for i, a in enumerate(intake.acceptance)]
    scout_link = link("scout memo", scout[0] if scout else None)
    if scout_link and memo:
        approach = " ".join(str(memo.get("approach", "")).split())
        lines.append(f"- **Scout memo:** {scout_link.markdown()} — {approach[:200]}")
    if patch_data:
        patch_link = link("patch", patch[0] if patch else None)
        lines.append(
            f"- **Patch:** {patch_link.markdown() if patch_link else ''} branch "
            f"`{patch_data.get('branch')}`, `{str(patch_data.get('base'))[:12]}..."
            f"{str(patch_data.get('head'))[:12]}`, files: "
            + ", ".join(f"`{f}`" for f in patch_data.get("files_changed", []))
        )
    gate_link = link("verifier evidence", gate[0] if gate else None)
    if gate_link and gate_ev:
        lines.append(f"- **Verifier evidence:** {gate_link.markdown()} — commit "
                     f"`{(gate_ev.commit or '?')[:12]}`, tree `{(gate_ev.tree or '?')[:12]}`, "
                     "checks run by the factory:")
        for c in gate_ev.checks:
            code = "timed out" if c.timed_out else f"exit {c.exit_code}"
            lines.append(f"  - `{c.command}` → {code} ({c.duration_s:.1f} s)")
        if gate_ev.evidence is not None:
            lines += ["", "**Evidence** (every check run by the factory in clean checkouts, "
                      "at the base and at the verified commit):", "",
                      *evidencetable.markdown(gate_ev.evidence), ""]
    if report:
        verdicts = report[1].handoff.get("criteria", [])
        lines.append("- **Criteria verdicts:** " + ", ".join(
            f"{v.get('criterion')}: {v.get('verdict')}" for v in verdicts))
    lines.append(f"- **Suggested version bump:** {pkg.version_bump} ({pkg.change_type})")
    pr_body = "\n".join(lines) + "\n"

    notes = [f"# {intake.title}", "", pkg.release_notes.strip(), "",
             f"- Change: {pkg.change_type}; suggested version bump: **{pkg.version_bump}**",
             f"- Demand: {demand}; for {', '.join(intake.consumers)}"]
    if gate_ev:
        checks = ", ".join(f"`{c.command}` exit {c.exit_code}" for c in gate_ev.checks)
        notes.append(f"- Verified on commit `{(gate_ev.commit or '?')[:12]}`: {checks}")
    notes.append(f"- Factory artifact: `{artifact}`")
    release_notes = "\n".join(notes) + "\n"

    changelog = " ".join(pkg.changelog_entry.split()) + "\n"
    announcement = pkg.announcement.strip() + "\n"
    paths = package_paths(artifact, pkg.change_type)
    texts = {paths["changelog"]: changelog, paths["release_notes"]: release_notes,
             paths["pr"]: pr_body, paths["announcement"]: announcement}
    return RenderedPackage(
        artifact=artifact, change_type=pkg.change_type, version_bump=pkg.version_bump,
        pr_title=pkg.pr_title, files={k: _tidy(v) for k, v in texts.items()},
        changelog=paths["changelog"], release_notes=paths["release_notes"], pr_body=paths["pr"],
        announcement=paths["announcement"], branch=(patch_data or {}).get("branch"),
        commit=commit, self_play=self_play,
    )


def _tidy(text: str) -> str:
    """No trailing whitespace, one final newline: what pre-commit hooks insist on."""
    return "\n".join(line.rstrip() for line in text.splitlines()).strip("\n") + "\n"


def package_paths(artifact: str, change_type: str) -> dict[str, str]:
    """Output-relative paths of an artifact's package files."""
    return {
        "changelog": f"changelog.d/{artifact}.{change_type}.md",
        "release_notes": f"release-notes/{artifact}.md",
        "pr": f"pr/{artifact}.md",
        "announcement": f"announcements/{artifact}.md",
    }


# -- publishing -------------------------------------------------------------------------


def publish(
    ledger: Ledger,
    artifact: str,
    *,
    target: str = "pr",
    out_dir: Path | None = None,
    base: str | None = None,
    remote: str | None = None,
    tag: str | None = None,
    where: str | None = None,
    dry_run: bool = False,
    gh: Gh | None = None,
    by: str | None = None,
) -> PackageResult:
    """Render, write, publish to `target` when possible, and record `published`.

    `remote` and `base` default to the artifact's target's (the brain: origin and its
    current branch).
    """
    if target not in TARGETS:
        raise UsageError(f"unknown target {target!r}: use one of {', '.join(TARGETS)}")
    if target == "release" and not (tag or where):
        raise UsageError("--target release needs --tag TAG (for example v1.4.0)")
    _, view = engine.load(ledger, artifact)
    stage, _ = package_stage(ledger, view)
    if not dry_run:
        _check_publishable(view, stage)
    project = of_intake(ledger, view.intake)
    remote = remote or project.remote or "origin"
    pkg = render(ledger, artifact, remote)
    out = (out_dir or ledger.dir / PACKAGES_DIR).resolve()
    if dry_run:  # render only: not a file is written, pushed, published or recorded
        would = [_display(out / rel, ledger.repo.root) for rel in pkg.files]
        result = PackageResult(pkg, target, out, would)
        result.reason = "dry run: nothing was written, published or recorded"
        return result
    written = _write(pkg, out, ledger.repo.root)
    result = PackageResult(pkg, target, out, written)
    if where is None and target == "note":
        where = _display(out / pkg.release_notes, ledger.repo.root)
    if where is None and target == "branch":
        where = _push_branch(project, pkg, result, out, base=base, remote=remote)
    if where is None:
        where = _publish_with_gh(project, pkg, result, out, base=base, remote=remote, tag=tag,
                                 gh=gh or Gh(project.repo.root))
        if where is None:
            return result
    stored = engine.record_published(
        ledger, artifact, target=target, where=where, commit=pkg.commit, by=by,
        extra_files=_ledger_files(ledger, pkg, out),
    )
    result.published, result.where, result.event = True, where, stored.path
    return result


def _check_publishable(view: ArtifactView, stage: StageConfig) -> None:
    aid = view.intake.artifact
    current = view.stage
    if current is None or current.name != stage.name:
        where = f" at {view.published[-1].where}" if view.published else ""
        raise IllegalTransition(
            f"{aid} is {view.state}: its package stage is not current, so nothing can be "
            f"published{where} now (use --dry-run to render the files again)"
        )
    if view.status != "submitted":
        raise IllegalTransition(
            f"the package stage of {aid} is {view.status}: publishing needs the packager's "
            "release package submitted and not yet judged"
        )


def _write(pkg: RenderedPackage, out: Path, root: Path) -> list[str]:
    shown = []
    for rel, text in pkg.files.items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        shown.append(_display(path, root))
    return shown


def _display(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _ledger_files(ledger: Ledger, pkg: RenderedPackage, out: Path) -> dict[str, bytes]:
    """The rendered files to commit with the event: only those inside the ledger dir."""
    try:
        out.relative_to(ledger.dir.resolve())
    except ValueError:
        return {}
    root = ledger.repo.root.resolve()
    return {(out / rel).relative_to(root).as_posix(): text.encode("utf-8")
            for rel, text in pkg.files.items()}


def _built(pkg: RenderedPackage) -> tuple[str, str]:
    if not pkg.branch or not pkg.commit:
        raise IllegalTransition(
            f"{pkg.artifact} has no built branch and commit to publish; use --target note"
        )
    return pkg.branch, pkg.commit


def push_command(project: Target, remote: str, branch: str) -> str:
    """The push as a person would type it (from the brain, for a target's clone)."""
    where = [] if project.is_brain else ["-C", str(project.repo.root)]
    return shlex.join(["git", *where, "push", remote, branch])


def gh_args(project: Target, kind: str, pkg: RenderedPackage, out: Path, *,
            base: str | None, tag: str | None = None) -> list[str]:
    """`gh pr create ...` / `gh release create ...` for the artifact's target."""
    branch, commit = _built(pkg)
    repo = [] if project.is_brain else ["--repo", _slug(project, kind)]
    if kind == "release":
        return ["release", "create", str(tag), *repo, "--target", commit, "--title",
                f"{tag}: {pkg.pr_title}", "--notes-file", str(out / pkg.release_notes)]
    base = base or project.base or project.repo.branch() or "main"
    return ["pr", "create", *repo, "--head", branch, "--base", base, "--title", pkg.pr_title,
            "--body-file", str(out / pkg.pr_body)]


def _slug(project: Target, kind: str) -> str:
    if project.slug is None:
        raise UsageError(
            f"target {project.name!r} has no GitHub repository (slug), so no {kind} can open "
            f"there: publish with --target branch (push only) or note, or register its slug "
            f"(`gptme-factory target add {project.name} PATH --slug OWNER/NAME --replace`)")
    return project.slug


def _check_remote(project: Target, remote: str, branch: str) -> None:
    if project.repo.remote_url(remote) is None:
        what = "the repo" if project.is_brain else f"target {project.name!r} ({project.repo.root})"
        raise UsageError(
            f"{what} has no git remote {remote!r} to push {branch} to: add one "
            f"(`git remote add {remote} URL`) or pass --remote NAME"
        )


def _push_branch(project: Target, pkg: RenderedPackage, result: PackageResult, out: Path, *,
                 base: str | None, remote: str) -> str:
    """Push the verified commit as the builder's branch; the PR is left for a person."""
    branch, commit = _built(pkg)
    _check_remote(project, remote, branch)
    project.repo.push(remote, branch, commit)
    result.ran.append(push_command(project, remote, branch))
    if project.is_brain or project.slug:
        result.commands = [command_line(gh_args(project, "pr", pkg, out, base=base))]
        result.reason = "pushed; to open the pull request from it, run"
    return f"{branch} on {project.repo.remote_url(remote)}"


def _publish_with_gh(project: Target, pkg: RenderedPackage, result: PackageResult, out: Path,
                     *, base: str | None, remote: str, tag: str | None, gh: Gh) -> str | None:
    """Push and run gh; returns where it went, or None (commands left for a person)."""
    branch, commit = _built(pkg)
    args = gh_args(project, result.target, pkg, out, base=base, tag=tag)
    push = push_command(project, remote, branch)
    result.commands = [push, command_line(args)]
    if not gh.ready():
        opt = f"--where {'URL' if result.target == 'pr' else tag}"
        result.reason = (f"not published: {gh.why_not_ready()}. Run the commands below, then "
                         f"`gptme-factory package {pkg.artifact} --target {result.target} {opt}`"
                         " to record it")
        return None
    _check_remote(project, remote, branch)
    project.repo.push(remote, branch, commit)
    result.ran.append(push)
    try:
        output = gh.run(args)
    except GhError as exc:
        # Re-running after a PR was opened (by hand or by an earlier run): record that PR.
        if result.target != "pr" or "already exists" not in str(exc) or not last_url(str(exc)):
            raise
        output = str(exc)
    result.ran.append(result.commands[1])
    result.commands = []
    if result.target == "pr":
        url = last_url(output)
        if not url:
            raise FactoryError(f"`gh pr create` printed no PR URL: {output.strip()[:200]!r}")
        return url
    return str(tag)
