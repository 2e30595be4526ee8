"""The line on a target: real separate repos — a brain, a project clone and its bare upstream.

Builders branch from the target's base (fetched from upstream), gates resolve and run in the
target, in its own environment; the package goes to the target's remote and PR, adoption is
read from the target. Nothing touches the brain's working tree or the user's clone.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from gptme_factory.cells import worktrees
from gptme_factory.demo.sample import CHECK_COMMAND, DEMAND, FIXED_SOURCE
from gptme_factory.errors import UsageError
from gptme_factory.ledger.gitstore import GitRepo
from gptme_factory.ledger.records import GatePassed, StageStarted, TargetRef
from gptme_factory.ledger.store import Ledger
from gptme_factory.line import engine, gates
from gptme_factory.line.intake import intake as new_intake
from gptme_factory.line.verify import verify_ledger
from gptme_factory.outcomes.measure import measure
from gptme_factory.outcomes.packaging import publish
from gptme_factory.targets import bases, envs, registry
from tests import cells_helpers, fake_gh
from tests.cells_helpers import events
from tests.conftest import git
from tests.flow_helpers import RELEASE_PACKAGE
from tests.targets_helpers import (
    build_on_target,
    full_report,
    local_project,
    project,
    push_upstream,
    register,
    through_build,
)
from tests.test_engine import scout_memo

cell_env = cells_helpers.cell_env
VENV = 'python3 -m venv --without-pip "$FACTORY_ENV"'
PROBE = 'echo "env=$VIRTUAL_ENV"; echo "head=$(git rev-parse HEAD)"; echo "cwd=$PWD"'


def snapshot(repo: Path, *, head: bool = True) -> tuple[str, str, str, str]:
    """What a user sees of a clone: branch, its commit, status, and their own branches."""
    branches = [b for b in git(repo, "branch", "--format=%(refname:short) %(objectname)")
                .splitlines() if not b.startswith("factory/") and head]
    return (git(repo, "symbolic-ref", "--short", "HEAD"),
            git(repo, "rev-parse", "HEAD") if head else "",
            git(repo, "status", "--porcelain=v1", "--untracked-files=all"), "\n".join(branches))


def verify_stage(ledger: Ledger, aid: str, head: str) -> engine.AdvanceResult:
    _, view = engine.load(ledger, aid)
    target = registry.of_intake(ledger, view.intake)
    stage = ledger.config.stage(view.intake.line, "verify")
    v = engine.start_stage(ledger, aid)
    planned = gates.planned_checks(view, stage, target.checks)
    engine.submit(ledger, v.cell, full_report(aid, head, planned))
    return engine.advance(ledger, aid)


@pytest.fixture
def on_target(ledger: Ledger, tmp_path: Path) -> tuple[Ledger, str, Path, Path]:
    clone, upstream = project(tmp_path)
    register(ledger, "deploy-bot", clone, slug="acme/deploy-bot", setup=[VENV],
             checks=[CHECK_COMMAND, PROBE])
    ledger = Ledger.open(ledger.repo.root)
    aid = new_intake(ledger, **DEMAND, target="deploy-bot").artifact
    return ledger, aid, clone, upstream


def test_the_line_works_in_the_target_and_touches_neither_brain_nor_clone(
        on_target: tuple[Ledger, str, Path, Path], tmp_path: Path) -> None:
    ledger, aid, clone, upstream = on_target
    brain = ledger.repo.root
    # the user's own work in progress, in both repos
    (brain / "README.md").write_text("# brain, being edited\n")
    (brain / "notes.txt").write_text("draft\n")
    (clone / "sample" / "durations.py").write_text("# half-done local edit\n")
    (clone / "scratch.txt").write_text("mine\n")
    git(clone, "checkout", "-q", "-b", "my-feature")
    brain_before, clone_before = snapshot(brain, head=False), snapshot(clone)
    brain_start = git(brain, "rev-parse", "HEAD").strip()
    brain_worktrees = git(brain, "worktree", "list", "--porcelain").count("worktree ")
    # upstream moved on since the clone was made: the stage starts from upstream's tip
    tip = push_upstream(upstream, tmp_path, "main", "CHANGELOG.md", "# changes\n")
    s = engine.start_stage(ledger, aid)
    engine.submit(ledger, s.cell, scout_memo(aid))
    assert engine.advance(ledger, aid).passed
    engine.refresh_base(ledger, aid)
    b = engine.start_stage(ledger, aid)
    assert b.base_commit == tip != git(brain, "rev-parse", "HEAD").strip()
    patch = build_on_target(ledger, b, FIXED_SOURCE)
    engine.submit(ledger, b.cell, patch)  # a ledger commit: the stage's base does not move
    [_, started] = events(ledger, aid, "stage_started")
    assert isinstance(started, StageStarted) and started.base_commit == tip
    res = engine.advance(ledger, aid)
    assert res.passed, res.reasons
    head = patch["head"]
    assert res.outcome is not None and res.outcome.commit == head
    # the built commit is upstream's tip plus the builder's change: no ledger, no factory/
    assert git(clone, "rev-parse", f"{head}^").strip() == tip
    assert not [p for p in git(clone, "ls-tree", "-r", "--name-only", head).split()
                if p.startswith("factory/")]
    assert git(clone, "log", "--format=%H", f"{tip}..{head}").split() == [head]
    res = verify_stage(ledger, aid, head)
    assert res.passed, res.reasons
    [_, gate] = [e for e in events(ledger, aid, "gate_passed") if e.stage in ("build", "verify")]
    assert isinstance(gate, GatePassed)
    assert gate.target == TargetRef(name="deploy-bot", url=str(upstream), slug="acme/deploy-bot")
    assert gate.commit == head and gate.tree == git(clone, "rev-parse", f"{head}^{{tree}}").strip()
    probe = next(c for c in gate.checks if c.command == PROBE)
    env_dir = ledger.runtime_dir / "envs" / "deploy-bot"
    assert f"head={head}" in probe.output_tail  # a checkout of exactly the built commit
    assert f"env={env_dir}/" in probe.output_tail  # in the target's own environment
    assert f"cwd={clone / '.git' / 'factory-worktrees'}/verify-" in probe.output_tail
    # made when the contract was tried at the base (the scout's gate), reused since
    assert any("in the target's environment" in n for n in gate.notes)
    # nothing of the user's changed; every factory worktree is gone again
    assert snapshot(brain, head=False) == brain_before and snapshot(clone) == clone_before
    # the brain moved by ledger commits only: each has its trailers and touches factory/ only
    ledger_commits = git(brain, "log", "--format=%H", f"{brain_start}..HEAD").split()
    assert len(ledger_commits) >= 8
    for c in ledger_commits:
        assert "Factory-Event: " in git(brain, "show", "-s", "--format=%B", c)
        assert all(p.startswith("factory/") for p in
                   git(brain, "show", "--format=", "--name-only", c).split())
    assert git(brain, "worktree", "list", "--porcelain").count("worktree ") == brain_worktrees == 1
    assert git(clone, "worktree", "list").count("\n") == 1
    assert git(clone, "for-each-ref", "--format=%(refname)", "refs/factory/").split() == [
        "refs/factory/bases/main"]
    assert [str(p) for p in verify_ledger(ledger)] == []


def test_a_build_on_the_brains_head_is_refused(on_target: tuple[Ledger, str, Path, Path],
                                               tmp_path: Path) -> None:
    ledger, aid, clone, _ = on_target
    brain = ledger.repo.root
    s = engine.start_stage(ledger, aid)
    engine.submit(ledger, s.cell, scout_memo(aid))
    assert engine.advance(ledger, aid).passed
    b = engine.start_stage(ledger, aid)
    # a builder that worked in the brain, as before targets existed
    wt = tmp_path / "brain-wt"
    git(brain, "worktree", "add", "-q", "-b", "wrong", str(wt), "HEAD")
    (wt / "fix.py").write_text("x = 1\n")
    git(wt, "add", "fix.py")
    git(wt, "commit", "-q", "-m", "fix")
    brain_head = git(brain, "rev-parse", "HEAD").strip()
    patch = {**build_on_target(ledger, b, FIXED_SOURCE), "base": brain_head,
             "head": git(wt, "rev-parse", "HEAD").strip(), "files_changed": ["fix.py"]}
    engine.submit(ledger, b.cell, patch)
    res = engine.advance(ledger, aid)
    assert not res.passed
    assert any(f"base commit {brain_head!r} does not exist in target deploy-bot" in r
               for r in res.reasons), res.reasons
    # the ledger's history merged into a branch of the target is refused too
    b = engine.start_stage(ledger, aid)
    wd = worktrees.prepare(registry.of_intake(ledger, engine.load(ledger, aid)[1].intake).repo,
                           engine.load(ledger, aid)[1], b.cell, False, b.base_commit)
    git(wd.path, "fetch", "-q", str(brain), "master")
    git(wd.path, "merge", "-q", "--allow-unrelated-histories", "-X", "ours", "-m", "merge",
        "FETCH_HEAD")
    head = git(wd.path, "rev-parse", "HEAD").strip()
    files = git(wd.path, "diff", "--name-only", str(b.base_commit), head).split()
    engine.submit(ledger, b.cell, {**patch, "base": b.base_commit, "head": head,
                                   "files_changed": files})
    res = engine.advance(ledger, aid)
    assert not res.passed and "factory ledger commit(s)" in res.reasons[0], res.reasons


def test_the_environment_is_made_once_and_remade_when_its_inputs_change(
        ledger: Ledger, tmp_path: Path) -> None:
    clone, _ = project(tmp_path)
    made = tmp_path / "made.log"
    (clone / "requirements.txt").write_text("# none\n")
    git(clone, "add", "requirements.txt")
    git(clone, "commit", "-q", "-m", "requirements")
    first = git(clone, "rev-parse", "HEAD").strip()
    target = register(ledger, "deploy-bot", clone,
                      setup=[VENV, f"echo made >> {made}"], setup_inputs=["requirements.txt"],
                      checks=['test "$VIRTUAL_ENV" = "$FACTORY_ENV" && '
                              '[ "$(command -v python3)" = "$FACTORY_ENV/bin/python3" ]'])
    ledger = Ledger.open(ledger.repo.root)

    def run(commit: str) -> envs.TargetEnv:
        results, env = gates.run_in_target(ledger, target, commit, target.checks, 60)
        assert [r.exit_code for r in results] == [0], results
        return env

    one, two = run(first), run(first)
    assert one.made and not two.made and one.path == two.path
    assert made.read_text() == "made\n"
    # a commit that leaves the inputs alone reuses it; one that changes them makes another
    (clone / "README.md").write_text("# changed\n")
    git(clone, "commit", "-qam", "docs")
    assert not run(git(clone, "rev-parse", "HEAD").strip()).made
    (clone / "requirements.txt").write_text("six\n")
    git(clone, "commit", "-qam", "deps")
    three = run(git(clone, "rev-parse", "HEAD").strip())
    assert three.made and three.key != one.key
    assert made.read_text() == "made\nmade\n"
    assert not run(first).made  # the first one is still there
    assert [e["key"] for e in envs.made_envs(ledger.runtime_dir, "deploy-bot")] == [
        one.key, three.key]


def test_a_setup_that_cannot_run_is_an_environment_failure(
        on_target: tuple[Ledger, str, Path, Path]) -> None:
    ledger, aid, _, _ = on_target
    head = through_build(ledger, aid, FIXED_SOURCE)
    made = set((ledger.runtime_dir / "envs" / "deploy-bot").glob("*.ready"))
    config = ledger.dir / "factory.yaml"
    good = config.read_text()
    config.write_text(good.replace(VENV, "no-such-installer --all"))
    ledger = Ledger.open(ledger.repo.root)
    res = verify_stage(ledger, aid, head)
    assert not res.passed and res.outcome is not None
    env = res.outcome.environment
    assert env is not None and env.kind == "command_not_found"
    assert "no-such-installer" in env.cause
    assert res.outcome.rework_to is None
    assert res.reasons == [f"the set-up `no-such-installer --all` could not run: {env.cause}"]
    # not a verdict on the build: the stage waits, nothing is spent, nothing is reworked
    [failed] = events(ledger, aid, "environment_failed")
    assert (failed.what, failed.failure, failed.command) == ("check", "command_not_found",
                                                             "no-such-installer --all")
    assert events(ledger, aid, "gate_failed") == [] and events(ledger, aid, "rework") == []
    _, view = engine.load(ledger, aid)
    assert (view.state, view.status, view.blocked_by) == ("patched", "blocked", "environment_gate")
    assert view.attempts == {"scout": 1, "build": 1, "verify": 1}
    assert set((ledger.runtime_dir / "envs" / "deploy-bot").glob("*.ready")) == made
    # a set-up that runs and fails is one too, with the target's fix
    config.write_text(good.replace(VENV, "echo broken index; exit 3"))
    ledger = Ledger.open(ledger.repo.root)
    res = engine.advance(ledger, aid)
    env = res.outcome.environment if res.outcome else None
    assert env is not None and env.kind == "setup_failed"
    assert "exited 3: broken index" in env.cause and "targets.deploy-bot.setup" in env.fix
    # fixed: the same handoff passes on the next advance, in the environment made now
    config.write_text(good)
    ledger = Ledger.open(ledger.repo.root)
    again = engine.advance(ledger, aid)
    assert again.passed, again.reasons
    assert engine.load(ledger, aid)[1].state == "verified"
    assert set((ledger.runtime_dir / "envs" / "deploy-bot").glob("*.ready")) == made
    assert [str(p) for p in verify_ledger(ledger)] == []


def test_a_check_that_cannot_run_is_not_a_failed_plan(ledger: Ledger, tmp_path: Path) -> None:
    clone, _ = project(tmp_path)
    register(ledger, "deploy-bot", clone, checks=["no-such-test-runner -q"])
    ledger = Ledger.open(ledger.repo.root)
    aid = new_intake(ledger, **DEMAND, target="deploy-bot").artifact
    s = engine.start_stage(ledger, aid)
    engine.submit(ledger, s.cell, scout_memo(aid))
    res = engine.advance(ledger, aid)  # the contract is tried at the base: it cannot run
    assert res.outcome is not None and res.outcome.environment is not None
    assert res.outcome.environment.kind == "command_not_found"
    assert res.outcome.environment_command == "no-such-test-runner -q"
    assert res.outcome.rework_to is None and res.state == "idea"
    assert res.reasons[0].startswith("`no-such-test-runner -q` could not run: ")
    assert events(ledger, aid, "rework") == []


def test_a_target_without_a_remote(ledger: Ledger, tmp_path: Path) -> None:
    clone = local_project(tmp_path, branch="develop")
    register(ledger, "lib", clone)
    ledger = Ledger.open(ledger.repo.root)
    aid = new_intake(ledger, **DEMAND, target="lib").artifact
    tip = git(clone, "rev-parse", "develop").strip()
    target = registry.resolve(ledger, "lib")
    assert bases.base_commit(target) == tip and bases.base_ref(target) == "refs/heads/develop"
    head = through_build(ledger, aid, FIXED_SOURCE)
    assert git(clone, "rev-parse", f"{head}^").strip() == tip
    assert verify_stage(ledger, aid, head).passed
    p = engine.start_stage(ledger, aid)
    engine.submit(ledger, p.cell, {**RELEASE_PACKAGE, "artifact": aid})
    with pytest.raises(UsageError, match="target 'lib' has no GitHub repository"):
        publish(ledger, aid, target="pr")
    with pytest.raises(UsageError, match=r"target 'lib' \(.*\) has no git remote 'origin'"):
        publish(ledger, aid, target="branch")
    res = publish(ledger, aid, target="note")
    assert res.published
    assert engine.advance(ledger, aid).passed
    assert "not on develop nor in a release tag" in bases.landed(target, head).evidence
    git(clone, "merge", "-q", "--ff-only", head)  # the user merged it into their branch
    assert bases.landed(target, head).landed


def test_two_artifacts_on_two_targets_in_one_brain(ledger: Ledger, tmp_path: Path) -> None:
    alpha, _ = project(tmp_path, "alpha")
    beta, beta_up = project(tmp_path, "beta", branch="trunk")  # not master, not main
    push_upstream(beta_up, tmp_path, "trunk", "NOTES.md", "beta\n")  # not alpha's history
    register(ledger, "alpha", alpha)
    register(ledger, "beta", beta)
    ledger = Ledger.open(ledger.repo.root)
    a = new_intake(ledger, **DEMAND, target="alpha").artifact
    b = new_intake(ledger, **DEMAND, target="beta").artifact
    ha = through_build(ledger, a, FIXED_SOURCE)
    hb = through_build(ledger, b, FIXED_SOURCE)
    assert git(beta, "rev-parse", f"{hb}^").strip() == git(beta_up, "rev-parse", "trunk").strip()
    # each commit lives in its own target only
    for repo, mine, other in ((alpha, ha, hb), (beta, hb, ha)):
        assert GitRepo.discover(repo).resolve_commit(mine) == mine
        assert GitRepo.discover(repo).resolve_commit(other) is None
    assert verify_stage(ledger, a, ha).passed and verify_stage(ledger, b, hb).passed
    targets = {e.target.name for aid in (a, b) for e in events(ledger, aid, "gate_passed")
               if e.target is not None}
    assert targets == {"alpha", "beta"}


def test_package_pushes_to_the_target_and_opens_the_pr_there(
        on_target: tuple[Ledger, str, Path, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    ledger, aid, clone, upstream = on_target
    gh = fake_gh.install(tmp_path, monkeypatch)
    gh.respond("pr create", stdout="https://github.com/acme/deploy-bot/pull/18\n")
    head = through_build(ledger, aid, FIXED_SOURCE)
    assert verify_stage(ledger, aid, head).passed
    p = engine.start_stage(ledger, aid)
    engine.submit(ledger, p.cell, {**RELEASE_PACKAGE, "artifact": aid})
    res = publish(ledger, aid, target="pr")
    assert res.published and res.where == "https://github.com/acme/deploy-bot/pull/18"
    branch = res.package.branch
    assert branch and git(upstream, "rev-parse", f"refs/heads/{branch}").strip() == head
    [create] = [c for c in gh.calls() if c[:2] == ["pr", "create"]]
    assert create[2:8] == ["--repo", "acme/deploy-bot", "--head", branch, "--base", "main"]
    body = Path(create[create.index("--body-file") + 1]).read_text()
    assert "- **Target:** `deploy-bot` — `acme/deploy-bot`, base branch `main`" in body
    assert f"commit `{head[:12]}`" in body and "gate_passed" in body  # the ledger evidence
    assert res.ran[0] == f"git -C {clone} push origin {branch}"
    # the rendered package is in the brain, committed with the event; not in the target
    assert (ledger.dir / "packages" / "pr" / f"{aid}.md").is_file()
    assert not [p for p in git(upstream, "ls-tree", "-r", "--name-only", branch).split()
                if p.startswith("factory/")]
    assert engine.advance(ledger, aid).passed


def test_branch_publication_and_adoption_read_from_the_target(
        on_target: tuple[Ledger, str, Path, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    ledger, aid, _, upstream = on_target
    gh = fake_gh.install(tmp_path, monkeypatch)
    gh.respond_json("issue view", {"state": "OPEN", "stateReason": None, "url": "u"})
    head = through_build(ledger, aid, FIXED_SOURCE)
    assert verify_stage(ledger, aid, head).passed
    p = engine.start_stage(ledger, aid)
    engine.submit(ledger, p.cell, {**RELEASE_PACKAGE, "artifact": aid})
    res = publish(ledger, aid, target="branch")
    assert res.published and res.where.startswith(f"{res.package.branch} on {upstream}")
    assert res.commands[0].startswith("gh pr create --repo acme/deploy-bot --head ")
    assert not [c for c in gh.calls() if c[:2] == ["pr", "create"]]  # left for a person
    assert engine.advance(ledger, aid).passed
    before = measure(ledger, aid, dry_run=True, terminal="the demand is met")
    assert before.report["adoption"][0]["status"] == "unknown"
    assert any(f"commit {head[:12]} is not on origin/main" in f for f in before.facts)
    # a maintainer merges it upstream (from another clone): adoption is read with git
    other = tmp_path / "maintainer"
    git(tmp_path, "clone", "-q", str(upstream), str(other))
    git(other, "fetch", "-q", "origin", str(res.package.branch))
    git(other, "merge", "-q", "--ff-only", "FETCH_HEAD")
    git(other, "push", "-q", "origin", "main")
    after = measure(ledger, aid, terminal="the demand is met")
    assert after.recorded
    assert {a["status"] for a in after.report["adoption"]} == {"used"}
    assert f"target deploy-bot: commit {head[:12]} is on origin/main" in after.facts
    assert ["issue", "view", "17", "--repo", "acme/deploy-bot"] == [
        c for c in gh.calls() if c[:2] == ["issue", "view"]][0][:5]


def test_a_release_tag_counts_as_landed(on_target: tuple[Ledger, str, Path, Path],
                                        tmp_path: Path) -> None:
    ledger, aid, _, upstream = on_target
    head = through_build(ledger, aid, FIXED_SOURCE)
    target = registry.resolve(ledger, "deploy-bot")
    target.repo.push("origin", "release-1", head)
    git(upstream, "tag", "v1.1.0", head)
    found = bases.landed(target, head)
    assert found.landed and "release tag(s) v1.1.0" in found.evidence


def test_cell_worktrees_live_in_the_target(on_target: tuple[Ledger, str, Path, Path]) -> None:
    ledger, aid, clone, _ = on_target
    s = engine.start_stage(ledger, aid)
    _, view = engine.load(ledger, aid)
    target = registry.of_intake(ledger, view.intake)
    wd = worktrees.prepare(target.repo, view, s.cell, True, s.base_commit)
    assert wd.path.parent == clone / ".git" / "factory-worktrees"
    assert wd.read_only and wd.commit == s.base_commit
    assert git(wd.path, "rev-parse", "HEAD").strip() == s.base_commit
    assert subprocess.run(["git", "symbolic-ref", "-q", "HEAD"], cwd=wd.path).returncode == 1
    assert str(wd.path) in git(clone, "worktree", "list")
    assert str(wd.path) not in git(ledger.repo.root, "worktree", "list")
    assert worktrees.repo_of(str(clone), ledger.repo).root == clone
    worktrees.discard(target.repo, wd.path)
    assert not wd.path.exists() and git(clone, "worktree", "list").count("\n") == 1


def test_a_cell_on_a_target_works_in_its_clone_and_its_brief_names_both_repos(
        on_target: tuple[Ledger, str, Path, Path], cell_env: Path) -> None:
    from gptme_factory.cells import spawn as cells

    ledger, aid, clone, upstream = on_target
    rec = cells.spawn(ledger, aid, cells.SpawnOptions(
        backend="command", command="echo at $(git rev-parse HEAD) in $PWD"))
    assert Path(rec.workdir).parent == clone / ".git" / "factory-worktrees"
    assert rec.repo == str(clone) and rec.read_only
    brief = (ledger.repo.root / (rec.brief or "")).read_text()
    assert f"- brain repo (the ledger): `{ledger.repo.root}`" in brief
    assert (f"- target project: `deploy-bot` — its clone `{clone}`, remote `origin` "
            f"({upstream}), GitHub `acme/deploy-bot`, base branch `main`") in brief
    assert "## Required checks (target deploy-bot" in brief and CHECK_COMMAND in brief
    got: list[cells.Reaped] = []
    deadline = time.monotonic() + 20
    while not got and time.monotonic() < deadline:
        got = cells.collect(ledger, [aid])[0]
        time.sleep(0.1)
    [fin] = events(ledger, aid, "cell_finished")
    tip = git(upstream, "rev-parse", "main").strip()
    assert f"at {tip} in {rec.workdir}" in fin.output_tail  # a checkout of the base
    assert not Path(rec.workdir).exists()
    assert git(clone, "worktree", "list").count("\n") == 1
    assert git(ledger.repo.root, "status", "--porcelain") == ""


def test_old_environments_are_pruned_unless_in_use(ledger: Ledger, tmp_path: Path) -> None:
    from gptme_factory.line.checks import run_check
    from gptme_factory.targets.checkouts import checkout

    clone, _ = project(tmp_path)
    target = register(ledger, "deploy-bot", clone, setup=['mkdir -p "$FACTORY_ENV/bin"'],
                      setup_inputs=["dep.txt"])
    ledger = Ledger.open(ledger.repo.root)
    commits = []
    for i in range(envs.KEEP + 3):
        (clone / "dep.txt").write_text(f"v{i}\n")
        git(clone, "add", "dep.txt")
        git(clone, "commit", "-q", "-m", f"dep v{i}")
        commits.append(git(clone, "rev-parse", "HEAD").strip())

    def make(commit: str) -> str:
        _, env = gates.run_in_target(ledger, target, commit, ["true"], 30)
        assert env.made and env.key
        return env.key

    with checkout(target.repo, commits[0], "hold") as path, envs.activated(
            ledger.runtime_dir, target, path, commits[0], run=run_check, timeout_s=30) as held:
        keys = [make(c) for c in commits[1:]]
        kept = {e["key"] for e in envs.made_envs(ledger.runtime_dir, "deploy-bot")}
        # the newest KEEP stay, and the one a gate is using right now
        assert kept == {*keys[-envs.KEEP:], held.key}
        assert held.path is not None and held.path.is_dir()
    assert not (ledger.runtime_dir / "envs" / "deploy-bot" / keys[0]).exists()


def test_the_ledger_is_not_found_inside_a_target_cell_worktree(
        on_target: tuple[Ledger, str, Path, Path]) -> None:
    from gptme_factory.errors import NotAFactory

    ledger, aid, _, _ = on_target
    s = engine.start_stage(ledger, aid)
    _, view = engine.load(ledger, aid)
    target = registry.of_intake(ledger, view.intake)
    wd = worktrees.prepare(target.repo, view, s.cell, True, s.base_commit)
    with pytest.raises(NotAFactory, match="is a factory cell's worktree, not the brain repo: "
                                          "pass --repo BRAIN"):
        Ledger.open(wd.path)
    worktrees.discard(target.repo, wd.path)


def test_links_share_what_the_setup_made_in_the_checkout(ledger: Ledger, tmp_path: Path) -> None:
    clone, _ = project(tmp_path)
    made = tmp_path / "made.log"
    target = register(ledger, "deploy-bot", clone, links=["node_modules"],
                      setup=[f"mkdir -p node_modules/lib && echo 1 > node_modules/lib/v && "
                             f"echo made >> {made}"],
                      checks=["test -L node_modules && cat node_modules/lib/v"])
    ledger = Ledger.open(ledger.repo.root)
    head = git(clone, "rev-parse", "HEAD").strip()
    for _ in range(2):
        results, env = gates.run_in_target(ledger, target, head, target.checks, 30)
        assert [(r.exit_code, r.output_tail) for r in results] == [(0, "1")]
    assert made.read_text() == "made\n"  # made once; the second checkout got the symlink
    assert env.path is not None and (env.path / "links" / "node_modules" / "lib" / "v").is_file()
    assert git(clone, "status", "--porcelain") == ""


def test_preflight_reads_a_targets_checks_unless_its_environment_decides(
        ledger: Ledger, tmp_path: Path) -> None:
    from gptme_factory.cells.preflight import command_problems

    clone, _ = project(tmp_path)
    register(ledger, "bare-env", clone, checks=["no-such-runner-xyz --all"])
    register(ledger, "own-env", clone, checks=["no-such-runner-xyz --all"], setup=[VENV])
    ledger = Ledger.open(ledger.repo.root)
    for name, expect in (("bare-env", ["no-such-runner-xyz"]), ("own-env", [])):
        aid = new_intake(ledger, **DEMAND, target=name).artifact
        _, view = engine.load(ledger, aid)
        # the scout's gate runs the target's checks at the base: caught before the scout runs
        assert view.stage is not None and view.stage.gate == "plan"
        found = command_problems(ledger, view, view.stage)
        assert [p.cause.split()[0] for p in found] == expect, found


def test_gc_collects_in_target_clones_too(on_target: tuple[Ledger, str, Path, Path]) -> None:
    from gptme_factory.cells.gc import collect_garbage

    ledger, aid, clone, _ = on_target
    head = through_build(ledger, aid, FIXED_SOURCE)  # accepted, in progress: its branch stays
    done = new_intake(ledger, **DEMAND, target="deploy-bot").artifact
    through_build(ledger, done, FIXED_SOURCE)
    engine.finish(ledger, done, "abandoned", "not needed")
    target = registry.resolve(ledger, "deploy-bot")
    stale = target.repo.worktree_base() / f"{done}.scout.dead"
    target.repo.worktree_add(stale, head)
    mine = git(clone, "branch", "--format=%(refname:short)").split()
    [kept] = [b for b in target.repo.branches("factory/") if b.startswith(f"factory/{aid}.")]
    [gone] = [b for b in target.repo.branches("factory/") if b.startswith(f"factory/{done}.")]
    out = collect_garbage(ledger)
    assert out.branches == [f"deploy-bot:{gone}"]
    assert out.worktrees == [f"deploy-bot:{stale.name}"] and not stale.exists()
    assert target.repo.branches("factory/") == [kept]
    assert [b for b in git(clone, "branch", "--format=%(refname:short)").split()
            if not b.startswith("factory/")] == [b for b in mine if not b.startswith("factory/")]
