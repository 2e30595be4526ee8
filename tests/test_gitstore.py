"""gitstore and init: plumbing commits that touch only the ledger files, on any branch."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from gptme_factory.errors import GitBusy, GitError, NotAFactory, NotAGitRepo, UsageError
from gptme_factory.ledger.gitstore import GitRepo
from gptme_factory.ledger.layout import fanned
from gptme_factory.ledger.store import Ledger, short_id
from gptme_factory.line import engine
from tests.conftest import git
from tests.ledger_helpers import (
    abandon,
    append_next,
    commit_count,
    git_state,
    new_artifact,
    run,
)


def test_init_creates_config_and_gitignore_in_one_commit(brain: Path) -> None:
    before = commit_count(brain)
    ledger, changed = Ledger.init(brain)
    assert changed == ["factory/.gitignore", "factory/factory.yaml"]
    assert commit_count(brain) == before + 1
    assert git(brain, "show", "--name-only", "--format=%s", "HEAD").split() == [
        "factory:", "init", "the", "ledger",
        "factory/.gitignore", "factory/factory.yaml",
    ]
    assert "Factory-Event: init" in git(brain, "log", "-1", "--format=%B")
    assert "/.runtime/" in (brain / "factory/.gitignore").read_text()
    assert (brain / "factory/factory.yaml").read_bytes().startswith(b"kind: factory_config\n")
    assert git(brain, "status", "--porcelain") == ""  # index refreshed: nothing pending
    assert Ledger.open(brain).config.default_line == ledger.config.default_line


def test_init_is_idempotent(factory_repo: Path) -> None:
    head = git(factory_repo, "rev-parse", "HEAD")
    snapshot = {p: p.read_bytes() for p in (factory_repo / "factory").rglob("*") if p.is_file()}
    _, changed = Ledger.init(factory_repo)
    assert changed == []
    assert git(factory_repo, "rev-parse", "HEAD") == head
    assert {p: p.read_bytes() for p in (factory_repo / "factory").rglob("*") if p.is_file()} \
        == snapshot
    assert git(factory_repo, "status", "--porcelain") == ""


def test_init_outside_git_writes_nothing(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(NotAGitRepo, match="not inside a git working tree"):
        Ledger.init(plain)
    assert list(plain.iterdir()) == []
    with pytest.raises(NotAGitRepo, match="does not exist"):
        Ledger.init(tmp_path / "missing")
    assert not (tmp_path / "missing").exists()


def test_open_without_init_says_what_to_do(brain: Path) -> None:
    with pytest.raises(NotAFactory, match="run `gptme-factory init`"):
        Ledger.open(brain)


@pytest.mark.parametrize("branch", ["master", "main", "feature/ledger-x"])
def test_works_on_any_branch_name(tmp_path: Path, branch: str) -> None:
    repo = tmp_path / "r"
    repo.mkdir()
    git(repo, "init", "-q", "-b", branch)
    (repo / "a.txt").write_text("a\n")
    git(repo, "add", "a.txt")
    git(repo, "commit", "-q", "-m", "first")
    ledger, _ = Ledger.init(repo)
    aid = new_artifact(ledger)
    assert git(repo, "symbolic-ref", "--short", "HEAD").strip() == branch
    assert git(repo, "rev-list", "--count", branch).strip() == "3"
    assert git(repo, "log", "-1", "--format=%s", branch).startswith(
        f"factory({short_id(aid)}): intake: ")


def test_works_in_repo_without_commits(tmp_path: Path) -> None:
    repo = tmp_path / "unborn"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "trunk")
    (repo / "staged.txt").write_text("staged\n")
    git(repo, "add", "staged.txt")
    ledger, changed = Ledger.init(repo)
    assert changed and commit_count(repo) == 1
    assert git(repo, "log", "--format=%P").strip() == ""  # a root commit
    assert git(repo, "symbolic-ref", "--short", "HEAD").strip() == "trunk"
    aid = new_artifact(ledger)
    assert commit_count(repo) == 2
    # the user's staged file was not swept into either commit and is still staged
    assert "staged.txt" not in git(repo, "log", "--name-only", "--format=")
    assert git(repo, "status", "--porcelain") == "A  staged.txt\n"
    assert (repo / f"factory/artifacts/{fanned(aid)}/intake.yaml").is_file()


def test_each_mutation_is_one_commit_with_only_its_files(ledger: Ledger) -> None:
    root = ledger.repo.root
    start = commit_count(root)
    aid = new_artifact(ledger)
    first = append_next(ledger, aid)  # straight through Ledger.record: the subject is its kind
    second = engine.finish(ledger, aid, "abandoned", "no longer needed")
    assert commit_count(root) == start + 3
    subjects = git(root, "log", f"-{3}", "--format=%s").splitlines()
    assert subjects == [
        f"factory({short_id(aid)}): abandoned: no longer needed",
        f"factory({short_id(aid)}): stage_started",
        f"factory({short_id(aid)}): intake: Fix login timeout",
    ]
    for rev, path, event, seq in (
        ("HEAD", second.path, "abandoned", 2),
        ("HEAD~1", first.path, "stage_started", 1),
        ("HEAD~2", f"factory/artifacts/{fanned(aid)}/intake.yaml", "intake", 0),
    ):
        assert git(root, "show", "--name-only", "--format=", rev).split() == [path]
        trailers = git(root, "log", "-1", "--format=%(trailers:only,unfold)", rev)
        assert trailers.strip().splitlines() == [
            f"Factory-Artifact: {aid}",
            f"Factory-Event: {event}",
            f"Factory-Seq: {seq}",
            f"Factory-Hash: {hashlib.sha256((root / path).read_bytes()).hexdigest()}",
        ]
    assert git(root, "status", "--porcelain") == ""


def test_user_staged_unstaged_and_untracked_work_is_untouched(ledger: Ledger) -> None:
    root = ledger.repo.root
    (root / "new_staged.py").write_text("print('staged')\n")
    git(root, "add", "new_staged.py")
    (root / "README.md").write_text("# brain\nstaged edit\n")
    git(root, "add", "README.md")
    (root / "README.md").write_text("# brain\nstaged edit\nunstaged edit\n")
    (root / "notes.txt").write_text("untracked\n")
    (root / "factory" / "scratch.md").write_text("untracked inside factory/\n")
    before = git_state(root)
    assert "A  new_staged.py" in before["status"] and "MM README.md" in before["status"]
    aid = new_artifact(ledger)
    append_next(ledger, aid)
    abandon(ledger, aid, "done with it")
    assert git_state(root) == before
    assert git(root, "show", "--name-only", "--format=", "HEAD").split() == [
        p for p in git(root, "show", "--name-only", "--format=", "HEAD").split()
        if p.startswith(f"factory/artifacts/{fanned(aid)}/")
    ]
    assert "README.md" not in git(root, "log", "-3", "--name-only", "--format=")


@pytest.mark.parametrize("setting", [None, "false"])
def test_a_large_index_is_written_split_unless_the_repo_says_otherwise(
        ledger: Ledger, monkeypatch: pytest.MonkeyPatch, setting: str | None) -> None:
    """A commit rewrites the index: a large one is split (only what changed is written)."""
    from gptme_factory.ledger import gitstore

    root = ledger.repo.root
    (root / "notes.txt").write_text("untracked\n")
    (root / "README.md").write_text("# brain\nunstaged edit\n")
    if setting is not None:
        git(root, "config", "core.splitIndex", setting)
    monkeypatch.setattr(gitstore, "SPLIT_INDEX_AT", 0)  # every index counts as large here
    before = git_state(root)
    aid = new_artifact(ledger)
    append_next(ledger, aid)
    shared = list(ledger.repo.git_dir.glob("sharedindex.*"))
    assert bool(shared) == (setting is None)
    assert git_state(root) == before  # the user's work as it was, whichever way it is written
    assert f"factory/artifacts/{fanned(aid)}/intake.yaml" in git(root, "ls-files").split()
    assert git(root, "status", "--porcelain", "--", "factory") == ""
    if setting is None:  # the next commit writes the small part only (in a repo this small,
        # any change is past the default 20% that has git merge and split again)
        git(root, "config", "splitIndex.maxPercentChange", "100")
        size = shared[0].stat().st_size
        abandon(ledger, aid, "done with it")
        assert [p.stat().st_size for p in ledger.repo.git_dir.glob("sharedindex.*")] == [size]
        assert git(root, "status", "--porcelain", "--", "factory") == ""


def test_commit_files_skips_an_empty_commit_and_refuses_bad_paths(ledger: Ledger) -> None:
    repo = ledger.repo
    head = repo.head()
    content = (repo.root / "factory/factory.yaml").read_bytes()
    with repo.exclusive():
        assert repo.commit_files({"factory/factory.yaml": content}, "factory: noop\n") == head
        for bad in ("../outside.yaml", "/etc/x.yaml", "factory/../../x", "a//b", ".git/config",
                    "factory/x\0y"):
            with pytest.raises(GitError, match="not a plain path"):
                repo.commit_files({bad: b"x: 1\n"}, "factory: bad\n")
    assert repo.head() == head
    assert not (repo.root.parent / "outside.yaml").exists()
    assert git(repo.root, "status", "--porcelain") == ""


def test_discover_from_subdirectory_and_log(ledger: Ledger) -> None:
    sub = ledger.repo.root / "factory"
    repo = GitRepo.discover(sub)
    assert repo.root == ledger.repo.root
    aid = new_artifact(ledger)
    entries = Ledger.open(sub).history([aid])
    assert [e.trailers["Factory-Event"] for e in entries] == [["intake"]]
    assert entries[0].author == "Factory Test <test@factory.invalid>"
    assert entries[0].time == "2026-01-02T03:04:05+00:00"


def test_ledger_dir_from_env_is_used_by_init_and_open(
    brain: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GPTME_FACTORY_DIR", "ops/ledger")
    ledger, changed = Ledger.init(brain)
    assert changed == ["ops/ledger/.gitignore", "ops/ledger/factory.yaml"]
    aid = new_artifact(Ledger.open(brain))
    assert (brain / f"ops/ledger/artifacts/{fanned(aid)}/intake.yaml").is_file()
    assert not (brain / "factory").exists()
    for bad in ("../outside", "ops/../..", ".git/x"):
        monkeypatch.setenv("GPTME_FACTORY_DIR", bad)
        with pytest.raises(UsageError, match="plain path inside the repo"):
            Ledger.init(brain)
    assert not (brain.parent / "outside").exists()


def _conflict(root: Path, op: str) -> None:
    """Stop `op` (rebase, merge, cherry-pick, revert) on a conflict in README.md."""
    git(root, "checkout", "-q", "-b", "topic")
    (root / "README.md").write_text("topic\n")
    git(root, "commit", "-qam", "topic edit")
    git(root, "checkout", "-q", "master")
    (root / "README.md").write_text("master\n")
    git(root, "commit", "-qam", "master edit")
    args = {"rebase": ["checkout", "-q", "topic"], "merge": [], "cherry-pick": [],
            "revert": []}[op]
    if args:
        git(root, *args)
    cmd = {"rebase": ["rebase", "master"], "merge": ["merge", "topic"],
           "cherry-pick": ["cherry-pick", "topic"], "revert": ["revert", "--no-edit", "HEAD~1"]}
    if op == "revert":  # revert the older edit under the newer one: a conflict
        git(root, "commit", "-q", "--allow-empty", "-m", "x")
        (root / "README.md").write_text("again\n")
        git(root, "commit", "-qam", "third edit")
        cmd["revert"] = ["revert", "--no-edit", "HEAD~2"]
    assert run(root, *cmd[op]).returncode != 0, f"{op} was meant to stop on a conflict"


@pytest.mark.parametrize("op", ["rebase", "merge", "cherry-pick", "revert"])
def test_the_ledger_is_never_written_while_git_is_mid_operation(ledger: Ledger, op: str) -> None:
    root = ledger.repo.root
    kept = new_artifact(ledger)
    _conflict(root, op)
    head, state = git(root, "rev-parse", "HEAD"), git_state(root)
    with pytest.raises(GitBusy, match=f"{op.replace('-', '.')}.* is in progress") as err:
        new_artifact(ledger, "Written during the operation")
    assert "nothing was recorded" in str(err.value) and "--abort" in str(err.value)
    with pytest.raises(GitBusy):
        abandon(ledger, kept, "not now")
    assert git(root, "rev-parse", "HEAD") == head and git_state(root) == state
    abort = {"rebase": ["rebase", "--abort"], "merge": ["merge", "--abort"],
             "cherry-pick": ["cherry-pick", "--abort"], "revert": ["revert", "--abort"]}[op]
    git(root, *abort)
    again = new_artifact(ledger, "After the operation")  # once git is done, writes go on
    assert set(ledger.artifact_ids()) == {kept, again}


def test_history_by_trailer_finds_what_a_full_walk_finds(ledger: Ledger) -> None:
    """`log` greps the Factory-Artifact trailers; a pathspec walk over every tree agrees."""
    root = ledger.repo.root
    a, b, c = (new_artifact(ledger, t) for t in ("Alpha", "Beta", "Gamma"))
    for aid in (a, b, a, c, a, b):
        append_next(ledger, aid)
    (root / "notes.md").write_text("the user's own commit\n")
    git(root, "add", "notes.md")
    git(root, "commit", "-q", "-m", f"notes (mentions Factory-Artifact: {a} in passing)")
    last_of_b = ledger.history([b])[-1].commit
    git(root, "revert", "--no-edit", last_of_b)  # a revert carries no trailers of its own
    abandon(ledger, c, "dropped")
    for aid in (a, b, c):
        walked = git(root, "log", "--reverse", "--format=%H", "--",
                     ledger.artifact_rel(aid)).split()
        assert [e.commit for e in ledger.history([aid])] == walked
    reverted = ledger.history([b])[-1]
    assert reverted.subject.startswith("Revert ") and reverted.trailers == {}
    both = [e.commit for e in ledger.history([a, c])]
    assert both == git(root, "log", "--reverse", "--format=%H", "--", ledger.artifact_rel(a),
                       ledger.artifact_rel(c)).split()


def test_untracked_of_names_the_files_the_index_does_not_hold(brain: Path) -> None:
    repo = GitRepo.discover(brain)
    (brain / "kept.txt").write_text("a\n")
    git(brain, "add", "kept.txt")
    (brain / "loose.txt").write_text("b\n")
    (brain / "odd name: with colon.txt").write_text("c\n")
    asked = ["kept.txt", "loose.txt", "odd name: with colon.txt", "gone.txt"]
    assert repo.untracked_of(asked) == ["loose.txt", "odd name: with colon.txt", "gone.txt"]
    assert repo.untracked_of([]) == []


@pytest.mark.parametrize("leave_a_core", [False, True])
def test_changed_against_head_sees_an_edit_in_place_and_a_deletion(
        brain: Path, leave_a_core: bool) -> None:
    # leave_a_core only changes how many threads git lstat()s with, never what it finds
    for name in ("a.txt", "b.txt", "c.txt"):
        (brain / "d" / name).parent.mkdir(exist_ok=True)
        (brain / "d" / name).write_text(f"{name}\n")
    git(brain, "add", "d")
    git(brain, "commit", "-q", "-m", "three files")
    repo = GitRepo.discover(brain)
    (brain / "d/a.txt").write_text("A.TXT\n")  # same size, new bytes
    (brain / "d/c.txt").unlink()
    (brain / "d/new.txt").write_text("untracked\n")
    got = repo.start_changed_against_head(["d"], leave_a_core=leave_a_core)()
    assert sorted(got) == [("d/a.txt", "modified"), ("d/c.txt", "deleted")]


def test_worktree_and_index_against_head_find_what_diff_index_does(brain: Path) -> None:
    """Only the folders asked about are looked at; with the index check, diff-index's answer."""
    for i in range(620):  # more folders than one ls-tree command line takes
        (brain / "d" / f"f{i:03d}").mkdir(parents=True)
        (brain / "d" / f"f{i:03d}" / "r.txt").write_text(f"{i}\n")
    (brain / "d/f000/tool.sh").write_text("#!/bin/sh\n")
    (brain / "d/f000/tool.sh").chmod(0o755)
    git(brain, "add", "d")
    git(brain, "commit", "-q", "-m", "many folders")
    repo = GitRepo.discover(brain)
    folders = [f"d/f{i:03d}" for i in range(620)]
    assert repo.worktree_against("HEAD", folders) == []
    (brain / "d/f001/r.txt").write_text("1!\n")  # same size, new bytes
    (brain / "d/f002/r.txt").unlink()
    (brain / "d/f003/r.txt").unlink()
    (brain / "d/f003/r.txt").symlink_to("elsewhere")  # no longer a plain file
    (brain / "d/f000/tool.sh").chmod(0o644)  # its executable bit moved
    (brain / "d/f610/new.txt").write_text("untracked\n")  # not HEAD's: not reported here
    git(brain, "rm", "-q", "--cached", "d/f005/r.txt")  # the index only, the file stays
    (brain / "d/f619/r.txt").write_text("619 staged\n")
    git(brain, "add", "d/f619/r.txt")
    disk = repo.worktree_against("HEAD", folders)
    assert disk == [("d/f000/tool.sh", "modified"), ("d/f001/r.txt", "modified"),
                    ("d/f002/r.txt", "deleted"), ("d/f003/r.txt", "modified"),
                    ("d/f619/r.txt", "modified")]
    assert repo.worktree_against("HEAD", ["d/f001"]) == [("d/f001/r.txt", "modified")]
    staged = repo.start_staged_against_head(["d"])()
    assert sorted(staged) == [("d/f005/r.txt", "deleted"), ("d/f619/r.txt", "modified")]
    both = sorted(set(disk) | set(staged))
    diff_index = sorted(repo.start_changed_against_head(["d"])())
    assert both == diff_index
