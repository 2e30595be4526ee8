"""Concurrent writers and killed writers: no event is lost, none is half-written.

Writers are separate Python processes using the real ledger. Crashes are injected at the git
boundary only: a wrapper `git` early on the writer's PATH SIGKILLs the writer right before or
right after a chosen git subcommand (or makes a real user commit to move HEAD), then runs the
real git. Our code is never patched.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gptme_factory.ledger.layout import fanned
from gptme_factory.ledger.store import Ledger
from gptme_factory.line.verify import verify_ledger
from tests.conftest import git
from tests.ledger_helpers import append_next, commit_count, git_state, new_artifact

PROJECT = Path(__file__).resolve().parents[1]

WRITER = """
import os, sys, time
from pathlib import Path
from gptme_factory.ledger.store import Ledger
from tests.ledger_helpers import next_payload
repo, aid, ready, go = sys.argv[1:5]
ledger = Ledger.open(repo)
ledger.config
Path(ready).touch()
while go and not os.path.exists(go):
    time.sleep(0.005)
with ledger.locked():
    chain = ledger.read(aid)
    ledger.record(chain, next_payload(ledger, chain))
"""

FAKE_GIT = """#!/bin/sh
if [ "$1" = "$FACTORY_TEST_KILL_BEFORE" ]; then kill -9 $PPID; exit 137; fi
if [ "$1" = "$FACTORY_TEST_COMMIT_BEFORE" ]; then
  "$REAL_GIT" commit -q --allow-empty -m "a user commit, just in time"
fi
"$REAL_GIT" "$@"
rc=$?
if [ "$1" = "$FACTORY_TEST_KILL_AFTER" ]; then kill -9 $PPID; sleep 5; fi
exit $rc
"""


def writer(repo: Path, aid: str, ready: Path, go: Path | None = None,
           env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    full = {**os.environ, "PYTHONPATH": str(PROJECT), **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(repo), aid, str(ready), str(go or "")],
        env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


def ledger_files(repo: Path, aid: str) -> dict[str, list[str]]:
    """The artifact's files as HEAD, the index and the working tree see them."""
    rel = f"factory/artifacts/{fanned(aid)}"
    return {
        "head": sorted(git(repo, "ls-tree", "-r", "--name-only", "HEAD", rel).split()),
        "index": sorted(git(repo, "ls-files", rel).split()),
        "worktree": sorted(
            f"{rel}/{p.name}" for p in (repo / rel).iterdir() if p.is_file()
        ),
    }


def assert_consistent(ledger: Ledger, aid: str) -> int:
    """Every event is in HEAD, the index and the worktree, or in none; returns the count."""
    repo = ledger.repo.root
    files = ledger_files(repo, aid)
    assert files["head"] == files["index"] == files["worktree"], files
    assert not (ledger.repo.git_dir / "factory-pending.json").exists()
    assert not (ledger.repo.git_dir / "factory-tmp").exists()
    assert "factory/" not in git(repo, "status", "--porcelain", "--untracked-files=all")
    assert verify_ledger(ledger) == []
    return len(files["head"]) - 1


@pytest.mark.slow
@pytest.mark.parametrize("shared", [False, True], ids=["16-artifacts", "one-artifact"])
def test_sixteen_concurrent_writers(ledger: Ledger, tmp_path: Path, shared: bool) -> None:
    repo = ledger.repo.root
    aids = [new_artifact(ledger, "Shared")] * 16 if shared else [
        new_artifact(ledger, f"Artifact {i}") for i in range(16)]
    before = commit_count(repo)
    go = tmp_path / "go"
    procs = [writer(repo, aid, tmp_path / f"ready-{i}", go) for i, aid in enumerate(aids)]
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"ready-{i}").exists() for i in range(16)):
        assert time.monotonic() < deadline, "writers did not start"
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        time.sleep(0.01)
    go.touch()  # release all sixteen at once
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    assert commit_count(repo) == before + 16
    assert verify_ledger(ledger) == []
    assert git(repo, "status", "--porcelain") == ""
    if shared:
        chain = ledger.read(aids[0])
        assert [e.seq for e in chain.events] == list(range(1, 17))
        assert [e.event.kind for e in chain.events] == ["stage_started", "cell_finished"] * 8
    else:
        assert all(len(ledger.read(aid).events) == 1 for aid in aids)
    subjects = git(repo, "log", "-16", "--format=%s").splitlines()
    assert all(s.startswith("factory(") for s in subjects)


@pytest.fixture
def fake_git(tmp_path: Path) -> dict[str, str]:
    """Env for a writer whose `git` is a crash-injecting wrapper around the real one."""
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    script = bindir / "git"
    script.write_text(FAKE_GIT)
    script.chmod(0o755)
    real = shutil.which("git")
    assert real
    return {"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}", "REAL_GIT": real}


def user_work(repo: Path) -> dict[str, str]:
    (repo / "wip.py").write_text("staged\n")
    git(repo, "add", "wip.py")
    (repo / "README.md").write_text("# brain\nunstaged\n")
    (repo / "scratch.txt").write_text("untracked\n")
    return git_state(repo)


@pytest.mark.parametrize(
    ("when", "command", "committed"),
    [
        ("BEFORE", "hash-object", False),
        ("AFTER", "hash-object", False),
        ("BEFORE", "cat-file", False),
        ("AFTER", "commit-tree", False),
        ("BEFORE", "update-ref", False),
        ("AFTER", "update-ref", True),  # HEAD moved; files not yet in place
        ("BEFORE", "update-index", True),  # files in place; index not refreshed
        ("AFTER", "update-index", True),  # done but the journal was not removed
    ],
)
def test_killed_writer_leaves_event_all_or_nothing(
    ledger: Ledger, tmp_path: Path, fake_git: dict[str, str],
    when: str, command: str, committed: bool,
) -> None:
    repo = ledger.repo.root
    aid = new_artifact(ledger)
    append_next(ledger, aid)
    work = user_work(repo)
    head = ledger.repo.head()
    env = {**fake_git, f"FACTORY_TEST_KILL_{when}": command}
    proc = writer(repo, aid, tmp_path / "ready", env=env)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert (ledger.repo.head() != head) is committed
    reopened = Ledger.open(repo)  # any later command recovers first
    assert assert_consistent(reopened, aid) == (2 if committed else 1)
    assert git_state(repo) == work
    append_next(reopened, aid)  # and the next write just works
    assert assert_consistent(reopened, aid) == (3 if committed else 2)
    assert git_state(repo) == work


def test_next_writer_recovers_without_reopening(
    ledger: Ledger, tmp_path: Path, fake_git: dict[str, str]
) -> None:
    repo = ledger.repo.root
    aid = new_artifact(ledger)
    proc = writer(repo, aid, tmp_path / "ready", env={**fake_git,
                                                      "FACTORY_TEST_KILL_AFTER": "update-ref"})
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert (ledger.repo.git_dir / "factory-pending.json").exists()
    append_next(ledger, aid)  # the same long-lived Ledger object: the lock recovers first
    assert assert_consistent(ledger, aid) == 2


def test_recovery_restores_from_head_when_the_temporary_copy_is_gone(
    ledger: Ledger, tmp_path: Path, fake_git: dict[str, str]
) -> None:
    repo = ledger.repo.root
    aid = new_artifact(ledger)
    proc = writer(repo, aid, tmp_path / "ready", env={**fake_git,
                                                      "FACTORY_TEST_KILL_AFTER": "update-ref"})
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    shutil.rmtree(ledger.repo.git_dir / "factory-tmp")  # e.g. a cleaner wiped it
    assert assert_consistent(Ledger.open(repo), aid) == 1


def test_head_moved_by_user_commit_is_a_conflict_and_leaves_nothing(
    ledger: Ledger, tmp_path: Path, fake_git: dict[str, str]
) -> None:
    repo = ledger.repo.root
    aid = new_artifact(ledger)
    proc = writer(repo, aid, tmp_path / "ready",
                  env={**fake_git, "FACTORY_TEST_COMMIT_BEFORE": "update-ref"})
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert b"LedgerConflict" in err and b"HEAD moved" in err
    assert git(repo, "log", "-1", "--format=%s").strip() == "a user commit, just in time"
    assert assert_consistent(ledger, aid) == 0
    append_next(ledger, aid)  # a retry succeeds on top of the user's commit
    assert assert_consistent(ledger, aid) == 1


@pytest.mark.slow
def test_writers_killed_at_random_moments(ledger: Ledger, tmp_path: Path) -> None:
    repo = ledger.repo.root
    aid = new_artifact(ledger)
    rng = random.Random(20260102)
    expected = 0
    for trial in range(12):
        proc = writer(repo, aid, tmp_path / f"ready-{trial}")
        while not (tmp_path / f"ready-{trial}").exists() and proc.poll() is None:
            time.sleep(0.002)
        time.sleep(rng.uniform(0, 0.08))
        proc.kill()
        proc.communicate(timeout=60)
        count = assert_consistent(Ledger.open(repo), aid)
        assert count in (expected, expected + 1)
        expected = count
    append_next(ledger, aid)
    assert assert_consistent(ledger, aid) == expected + 1
