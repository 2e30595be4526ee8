"""Merge safety: clones sharing a bare remote merge without conflicts; same-artifact forks show."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from gptme_factory.cli import main
from gptme_factory.errors import ForkDetected
from gptme_factory.ledger.layout import fanned
from gptme_factory.ledger.records import Abandoned
from gptme_factory.ledger.store import Ledger
from gptme_factory.line.verify import verify_ledger
from tests.conftest import git
from tests.ledger_helpers import abandon, append_next, new_artifact


@pytest.fixture
def clones(tmp_path: Path, factory_repo: Path) -> tuple[Ledger, Ledger]:
    """Two clones of one factory brain repo, through a bare remote."""
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "master", str(remote))
    git(factory_repo, "remote", "add", "origin", str(remote))
    git(factory_repo, "push", "-q", "origin", "master")
    git(tmp_path, "clone", "-q", str(remote), "other")
    return Ledger.open(factory_repo), Ledger.open(tmp_path / "other")


def sync(ledger: Ledger) -> str:
    """Fetch and merge origin/master (a real merge, no rebase); return git's output."""
    root = ledger.repo.root
    git(root, "fetch", "-q", "origin")
    return git(root, "merge", "--no-edit", "origin/master")


def push(ledger: Ledger) -> None:
    git(ledger.repo.root, "push", "-q", "origin", "HEAD:master")


def test_different_artifacts_merge_cleanly(clones: tuple[Ledger, Ledger]) -> None:
    a, b = clones
    x = new_artifact(a, "Fix login timeout")
    append_next(a, x)
    y = new_artifact(b, "Add dark mode")
    append_next(b, y)
    append_next(b, y)
    push(a)
    out = sync(b)
    assert "CONFLICT" not in out
    assert git(b.repo.root, "log", "-1", "--format=%P").count(" ") == 1  # a real merge commit
    assert git(b.repo.root, "status", "--porcelain") == ""
    push(b)
    sync(a)
    for side in (a, b):
        assert side.artifact_ids() == sorted([x, y])
        assert verify_ledger(side) == []
        assert [len(side.read(aid).events) for aid in (x, y)] == [1, 2]
    # both sides keep working after the merge
    append_next(a, y)
    assert verify_ledger(a) == []


def test_same_artifact_advanced_twice_is_a_detected_fork(clones: tuple[Ledger, Ledger]) -> None:
    a, b = clones
    x = new_artifact(a)
    push(a)
    sync(b)
    theirs = abandon(a, x, "the customer withdrew the request")
    ours = append_next(b, x)
    push(a)
    out = sync(b)
    assert "CONFLICT" not in out  # two different file names: no textual conflict
    assert (b.repo.root / theirs.path).is_file() and (b.repo.root / ours.path).is_file()
    problems = verify_ledger(b)
    assert len(problems) == 1
    assert problems[0].where == f"factory/artifacts/{fanned(x)}"
    assert problems[0].message.startswith("fork: ")
    assert theirs.path in problems[0].message and ours.path in problems[0].message
    result = CliRunner().invoke(main, ["verify", "--repo", str(b.repo.root)])
    assert result.exit_code == 9 and "fork" in result.output
    head = b.repo.head()
    with b.locked(), pytest.raises(ForkDetected, match="has a fork; nothing was recorded"):
        b.record(b.read(x), Abandoned(reason="try to paper over it"))
    assert b.repo.head() == head
    # Resolution, as the message says: revert the other side's commit, then carry on.
    theirs_commit = git(b.repo.root, "log", "-1", "--format=%H", "origin/master").strip()
    git(b.repo.root, "revert", "--no-edit", theirs_commit)
    assert verify_ledger(b) == []
    append_next(b, x)
    assert verify_ledger(b) == []


def test_status_and_show_survive_a_merge(clones: tuple[Ledger, Ledger]) -> None:
    a, b = clones
    x = new_artifact(a)
    y = new_artifact(b, "Second")
    push(a)
    sync(b)
    runner = CliRunner()
    result = runner.invoke(main, ["status", "--json", "--repo", str(b.repo.root)])
    assert result.exit_code == 0
    states = {s["artifact"]: s["state"] for s in json.loads(result.output)["artifacts"]}
    assert states == {x: "idea", y: "idea"}
    result = runner.invoke(main, ["log", x, "--repo", str(b.repo.root)])
    assert result.exit_code == 0 and "intake" in result.output
