"""`sync`: clones of one brain exchange ledger events through a real bare remote.

Every test uses real clones of a real bare repository. Refusals are checked to change
nothing: HEAD, the branch, the index, the working tree and the user's files all stay.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from gptme_factory.cli import main
from gptme_factory.errors import RemoteUnreachable, SyncRefused, UsageError
from gptme_factory.ledger.store import Ledger
from gptme_factory.ledger.sync import sync
from gptme_factory.line.verify import verify_ledger
from tests.conftest import git
from tests.ledger_helpers import abandon, append_next, git_state, new_artifact
from tests.sync_helpers import PROJECT, Shared, head, merges, shared_clones


@pytest.fixture
def shared(tmp_path: Path) -> Shared:
    return shared_clones(tmp_path, 2)


def unchanged(repo: Path) -> dict[str, str]:
    """Everything a refused sync must leave as it was."""
    return {**git_state(repo), "head": head(repo),
            "branch": git(repo, "symbolic-ref", "HEAD"),
            "files": "\n".join(sorted(str(p.relative_to(repo)) for p in repo.rglob("*")
                                      if ".git" not in p.parts))}


def test_events_of_both_clones_meet_on_the_remote_in_one_line_of_history(shared: Shared) -> None:
    a, b = shared.ledger(0), shared.ledger(1)
    x = new_artifact(a, "Fix login timeout")
    append_next(a, x)
    y = new_artifact(b, "Add dark mode")
    append_next(b, y)
    append_next(b, y)
    first = sync(a)
    assert (first.pushed_commits, first.pushed_events, first.incoming_commits) == (2, 2, 0)
    report = sync(b)  # b's three commits are replayed on a's two and pushed
    assert report.incoming_commits == 2 and report.incoming_events == 2
    assert report.hosts == {"host-0": 2}
    assert report.pushed_commits == 3 and report.forks == []
    sync(a)
    for side in (a, b):
        assert side.artifact_ids() == sorted([x, y])
        assert verify_ledger(side) == []
        assert [len(side.read(aid).events) for aid in (x, y)] == [1, 2]
        assert merges(side.repo.root) == 0  # a rebase, not a merge commit per sync
        assert git(side.repo.root, "status", "--porcelain") == ""
    assert head(a.repo.root) == head(b.repo.root) == shared.remote_head()
    # the replayed commits keep their subjects and trailers, with the host that made them
    log = git(b.repo.root, "log", "--format=%s|%(trailers:key=Factory-Host,valueonly)", "-5")
    assert log.count("|host-1") == 3 and log.count("|host-0") == 2


def test_incoming_events_leave_the_users_other_work_alone(shared: Shared) -> None:
    a, b = shared.ledger(0), shared.ledger(1)
    x = new_artifact(a)
    sync(a)
    root = b.repo.root
    (root / "wip.py").write_text("staged\n")
    git(root, "add", "wip.py")
    (root / "README.md").write_text("# brain\nunstaged edit\n")
    (root / "notes.txt").write_text("untracked\n")
    before = git_state(root)
    report = sync(b)
    assert report.incoming_events == 1
    assert (b.artifact_dir(x) / "intake.yaml").is_file()
    assert git_state(root) == before  # still staged, still unstaged, still untracked
    assert verify_ledger(b) == []


def test_sync_refuses_to_push_the_users_own_commits(shared: Shared) -> None:
    a = shared.ledger(0)
    root = a.repo.root
    (root / "journal.md").write_text("today\n")
    git(root, "add", "journal.md")
    git(root, "commit", "-q", "-m", "journal: today")
    new_artifact(a)
    before = unchanged(root)
    remote_before = shared.remote_head()
    with pytest.raises(SyncRefused) as err:
        sync(a)
    msg = str(err.value)
    assert "1 commit of your own" in msg and "journal: today" in msg
    assert "nothing was changed" in msg and "git push origin HEAD:master" in msg
    assert unchanged(root) == before
    assert shared.remote_head() == remote_before


def test_own_commits_push_policy_pushes_them_along(tmp_path: Path) -> None:
    shared = shared_clones(tmp_path, 2, extra="  own_commits: push\n")
    a, b = shared.ledger(0), shared.ledger(1)
    new_artifact(b)
    sync(b)
    root = a.repo.root
    (root / "journal.md").write_text("today\n")
    git(root, "add", "journal.md")
    git(root, "commit", "-q", "-m", "journal: today")
    sync(a)
    assert "journal.md" in git(shared.remote, "ls-tree", "--name-only", "master")


def test_sync_refuses_when_incoming_files_would_overwrite_uncommitted_ones(
    shared: Shared,
) -> None:
    a, b = shared.ledger(0), shared.ledger(1)
    # another machine's user pushed a README change and an event
    other = a.repo.root
    (other / "README.md").write_text("# brain\nfrom the other machine\n")
    git(other, "commit", "-q", "-am", "docs: readme")
    git(other, "push", "-q", "origin", "master")
    new_artifact(a)
    sync(a)
    root = b.repo.root
    (root / "README.md").write_text("# brain\nmy unsaved edit\n")
    aid = new_artifact(b, "Mine")
    before = unchanged(root)
    with pytest.raises(SyncRefused) as err:
        sync(b)
    assert "would overwrite uncommitted or untracked files" in str(err.value)
    assert "README.md" in str(err.value)
    assert unchanged(root) == before
    assert aid not in {p.split("/")[2] for p in shared.remote_files("factory/artifacts")}
    git(root, "checkout", "--", "README.md")  # the edit saved elsewhere: now it goes through
    assert sync(b).pushed_commits == 1
    assert (root / "README.md").read_text() == "# brain\nfrom the other machine\n"


def test_sync_refuses_an_untracked_file_where_an_incoming_one_goes(shared: Shared) -> None:
    a, b = shared.ledger(0), shared.ledger(1)
    other = a.repo.root
    (other / "plan.md").write_text("the plan\n")
    git(other, "add", "plan.md")
    git(other, "commit", "-q", "-m", "docs: plan")
    git(other, "push", "-q", "origin", "master")
    root = b.repo.root
    (root / "plan.md").write_text("my own plan, never committed\n")
    before = unchanged(root)
    with pytest.raises(SyncRefused, match="plan.md"):
        sync(b)
    assert unchanged(root) == before
    assert (root / "plan.md").read_text() == "my own plan, never committed\n"


def test_a_path_changed_on_both_sides_is_refused(shared: Shared) -> None:
    a, b = shared.ledger(0), shared.ledger(1)
    for side, budget in ((a, 600), (b, 900)):
        cfg = side.dir / "factory.yaml"
        cfg.write_text(cfg.read_text().replace("timeout_s: 1800", f"timeout_s: {budget}"))
        git(side.repo.root, "commit", "-q", "-am", f"factory: budget {budget}")
    sync(a)
    before = unchanged(b.repo.root)
    with pytest.raises(SyncRefused, match="factory/factory.yaml changed both here and on"):
        sync(b)
    assert unchanged(b.repo.root) == before


def test_offline_sync_integrates_the_last_fetch_and_touches_no_network(shared: Shared) -> None:
    a, b = shared.ledger(0), shared.ledger(1)
    x = new_artifact(a)
    sync(a)
    git(b.repo.root, "fetch", "-q", "origin")
    mine = new_artifact(b, "Mine")
    moved = shared.remote.with_name("gone.git")
    shared.remote.rename(moved)  # no network from here on
    report = sync(b, offline_only=True)
    assert report.offline and report.incoming_events == 1 and report.unpushed_commits == 1
    assert set(b.artifact_ids()) == {x, mine}
    assert verify_ledger(b) == []
    with pytest.raises(RemoteUnreachable, match="could not fetch from origin"):
        sync(b)
    moved.rename(shared.remote)
    assert sync(b).pushed_commits == 1


def test_sync_names_a_fork_made_offline(shared: Shared) -> None:
    a, b = shared.ledger(0), shared.ledger(1)
    x = new_artifact(a)
    sync(a)
    sync(b)
    abandon(a, x, "not needed here")
    abandon(b, x, "not needed there either")
    sync(a)
    report = sync(b)
    assert report.forks == [x]
    assert any("fork" in line and f"resolve {x}" in line for line in report.lines())
    assert [p.code for p in verify_ledger(b)] == ["fork"]


def test_sync_without_a_remote_says_how_to_set_one(factory_repo: Path) -> None:
    with pytest.raises(UsageError, match=r"sync: \{remote: origin\}"):
        sync(Ledger.open(factory_repo))


def test_sync_uses_the_branchs_upstream_when_the_ledger_is_not_shared(
    factory_repo: Path, tmp_path: Path,
) -> None:
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "master", str(remote))
    git(factory_repo, "remote", "add", "origin", str(remote))
    git(factory_repo, "push", "-q", "-u", "origin", "master")
    ledger = Ledger.open(factory_repo)
    new_artifact(ledger)
    assert sync(ledger).pushed_commits == 1
    assert git(remote, "rev-parse", "master") == git(factory_repo, "rev-parse", "HEAD")


def test_a_remote_without_the_branch_is_refused(tmp_path: Path) -> None:
    shared = shared_clones(tmp_path, 1, extra="  branch: ledger\n")
    ledger = shared.ledger(0)
    new_artifact(ledger)
    before = unchanged(ledger.repo.root)
    with pytest.raises(SyncRefused, match=r"has no branch ledger yet: publish the brain once"):
        sync(ledger)
    assert unchanged(ledger.repo.root) == before


def test_cli_sync_reports_in_words_and_json(shared: Shared) -> None:
    a = shared.ledger(0)
    new_artifact(a)
    runner = CliRunner()
    res = runner.invoke(main, ["sync", "--repo", str(a.repo.root)])
    assert res.exit_code == 0, res.output
    assert "out: pushed 1 event(s) in 1 commit(s) to origin/master" in res.output
    res = runner.invoke(main, ["sync", "--json", "--repo", str(shared.clones[1])])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["incoming_events"] == 1 and data["hosts"] == {"host-0": 1}
    status = runner.invoke(main, ["status", "--repo", str(shared.clones[1])])
    assert "origin/master: everything pushed" in status.output
    assert "1 event(s) in from host-0 (1)" in status.output
    new_artifact(shared.ledger(1), "Not pushed")
    git(shared.clones[1], "remote", "set-url", "origin", str(shared.remote) + "-gone")
    status = runner.invoke(main, ["--offline", "status", "--repo", str(shared.clones[1])],
                           env={"GPTME_FACTORY_OFFLINE": None})  # restored afterwards
    assert "origin/master: 1 commit(s) not pushed yet" in status.output
    as_json = runner.invoke(main, ["status", "--json", "--repo", str(shared.clones[1])])
    assert json.loads(as_json.output)["sync"]["unpushed_commits"] == 1
    refused = runner.invoke(main, ["sync", "--repo", str(shared.clones[1])])
    assert refused.exit_code == 6 and "could not fetch from origin" in refused.output


KILLER_GIT = """#!/bin/sh
# Kill the sync right after HEAD moved to the integrated commit (before the working tree).
if [ "$1" = "read-tree" ] && [ "$4" != "-n" ]; then kill -9 $PPID; sleep 5; fi
exec "$REAL_GIT" "$@"
"""

SYNCER = """
import sys
from gptme_factory.ledger.store import Ledger
from gptme_factory.ledger.sync import sync
sync(Ledger.open(sys.argv[1]))
"""


def test_a_sync_killed_half_way_is_finished_by_the_next_command(
    shared: Shared, tmp_path: Path,
) -> None:
    a, b = shared.ledger(0), shared.ledger(1)
    x = new_artifact(a)
    append_next(a, x)
    sync(a)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "git").write_text(KILLER_GIT)
    (bindir / "git").chmod(0o755)
    real = shutil.which("git")
    assert real
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}",
           "REAL_GIT": real, "PYTHONPATH": str(PROJECT)}
    proc = subprocess.run([sys.executable, "-c", SYNCER, str(b.repo.root)], env=env,
                          capture_output=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert (b.repo.git_dir / "factory-sync.json").exists()
    assert head(b.repo.root) == shared.remote_head()  # HEAD moved, the tree did not
    reopened = Ledger.open(b.repo.root)  # recovers first
    assert not (b.repo.git_dir / "factory-sync.json").exists()
    assert git(b.repo.root, "status", "--porcelain") == ""
    assert [len(reopened.read(x).events)] == [1]
    assert verify_ledger(reopened) == []


@pytest.mark.parametrize(("section", "problem"), [
    ("sync:\n  remote: 'no such thing!'\n", "sync.remote: Value error, a git remote name"),
    ("sync:\n  remote: origin\n  lease: 5\n", "sync.lease: unknown field"),
    ("sync:\n  remote: origin\n  branch: -x\n", "sync.branch: Value error, a branch name"),
])
def test_a_bad_sync_section_is_named_by_sync_and_by_every_other_command(
    factory_repo: Path, section: str, problem: str,
) -> None:
    from gptme_factory.errors import ConfigError

    cfg = factory_repo / "factory" / "factory.yaml"
    cfg.write_text(cfg.read_text() + section)
    with pytest.raises(ConfigError) as light:
        sync(Ledger.open(factory_repo))  # reads only the sync section
    with pytest.raises(ConfigError) as full:
        Ledger.open(factory_repo).config  # noqa: B018 - the whole file
    for err in (light, full):
        assert "factory/factory.yaml: " in str(err.value)
        assert problem.replace("Value error, ", "") in str(err.value)


def test_sync_waits_for_the_users_merge_to_finish(shared: Shared) -> None:
    a, b = shared.ledger(0), shared.ledger(1)
    new_artifact(a)
    sync(a)
    (b.repo.git_dir / "MERGE_HEAD").write_text(head(b.repo.root) + "\n")  # a merge under way
    before = unchanged(b.repo.root)
    with pytest.raises(SyncRefused, match=r"a merge is in progress .*git merge --abort"):
        sync(b)
    assert unchanged(b.repo.root) == before
    (b.repo.git_dir / "MERGE_HEAD").unlink()
    assert sync(b).incoming_events == 1
