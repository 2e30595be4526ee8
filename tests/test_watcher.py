"""watcher: what the real watchman daemon saw change under a tree since a clock."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from gptme_factory.ledger import watcher
from tests.conftest import unwatch_under


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A watched-to-be tree with a stream folder and something beside it."""
    if shutil.which("watchman") is None:
        pytest.fail("watchman is not installed: `apt-get install -y watchman` (.ci/run does)")
    monkeypatch.setenv(watcher.ENV, "1")
    root = tmp_path / "repo"
    (root / "factory" / "artifacts" / "2a" / "fix-2a").mkdir(parents=True)
    (root / "factory" / "artifacts" / "2a" / "fix-2a" / "intake.yaml").write_text("a: 1\n")
    (root / "other").mkdir()
    yield root
    unwatch_under(tmp_path)


def test_it_is_asked_only_when_on_path_and_not_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(watcher.ENV, "0")
    assert not watcher.available()
    monkeypatch.setenv(watcher.ENV, "1")
    assert watcher.available() == (shutil.which("watchman") is not None)
    monkeypatch.setenv("PATH", "/nonexistent")
    assert not watcher.available()


def test_changes_since_a_clock_under_the_folders_asked(tree: Path) -> None:
    start = watcher.now(str(tree), "factory/artifacts")
    assert start is not None and start.rel == ""
    quiet = watcher.since(start, ["factory/artifacts"])
    assert quiet is not None and quiet.paths == []
    folder = tree / "factory" / "artifacts" / "2a" / "fix-2a"
    with open(folder / "intake.yaml", "a") as fh:  # in place: the folder does not change
        fh.write("b: 2\n")
    (folder / "0001-x.yaml").write_text("new\n")
    (tree / "other" / "note.txt").write_text("not asked about\n")
    got = watcher.since(start, ["factory/artifacts"])
    assert got is not None and got.watch.clock != start.clock
    assert set(got.paths) - {"factory/artifacts/2a/fix-2a"} == {
        "factory/artifacts/2a/fix-2a/intake.yaml", "factory/artifacts/2a/fix-2a/0001-x.yaml"}
    os.rename(folder, folder.with_name("moved-2a"))
    moved = watcher.since(got.watch, ["factory/artifacts"])
    assert moved is not None
    assert {"factory/artifacts/2a/fix-2a", "factory/artifacts/2a/moved-2a/intake.yaml"} \
        <= set(moved.paths)
    assert watcher.since(moved.watch, ["factory/artifacts"]).paths == []  # type: ignore[union-attr]


def test_a_tree_inside_a_watched_one_is_asked_by_its_relative_path(tree: Path) -> None:
    outer = watcher.now(str(tree), "factory/artifacts")
    assert outer is not None
    inner = watcher.now(str(tree / "factory"), "artifacts")
    assert inner is not None and (inner.root, inner.rel) == (str(tree), "factory")
    (tree / "factory" / "artifacts" / "2a" / "fix-2a" / "0002-y.yaml").write_text("y\n")
    got = watcher.since(inner, ["artifacts"])
    assert got is not None
    assert set(got.paths) - {"artifacts/2a/fix-2a"} == {"artifacts/2a/fix-2a/0002-y.yaml"}


def test_a_clock_it_cannot_answer_for_is_none(tree: Path) -> None:
    start = watcher.now(str(tree), "factory/artifacts")
    assert start is not None
    forged = watcher.Watch(start.root, "", "c:1:1:1:1")  # another daemon instance's clock
    assert watcher.since(forged, ["factory"]) is None
    subprocess.run(["watchman", "watch-del", str(tree)], capture_output=True, check=True)
    assert watcher.since(start, ["factory"]) is None  # not watched any more
    assert watcher.Watch.from_json(start.to_json()) == start
    assert watcher.Watch.from_json({"root": 1, "rel": "", "clock": "c"}) is None


def test_a_tree_whose_folder_the_watcher_ignores_gets_no_clock(tree: Path) -> None:
    (tree / ".watchmanconfig").write_text('{"ignore_dirs": ["factory"]}')
    assert watcher.now(str(tree), "factory/artifacts") is None
    assert watcher.now(str(tree), "other") is not None  # the rest of the tree is watched
    assert not any(p.name.startswith(".watch-probe") for p in tree.rglob("*"))
