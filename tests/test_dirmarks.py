"""dirmarks: a directory's entries changing is seen; an unchanged directory costs one lstat."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from gptme_factory.ledger import dirmarks


def settled(path: Path) -> None:
    """Stamp `path` (and everything in it) a minute ago, and wait for the next tick.

    Setting a stamp moves the ctime to now: the marks are trusted once the filesystem's
    clock has moved past it.
    """
    past = (os.stat(path).st_mtime_ns - 60_000_000_000)
    for here, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            os.utime(os.path.join(here, name), ns=(past, past))
    os.utime(path, ns=(past, past))
    scratch = str(path.parent / "scratch")
    deadline = time.monotonic() + 5
    while dirmarks.fs_now(scratch) <= os.stat(path).st_ctime_ns and time.monotonic() < deadline:
        time.sleep(0.002)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for rel in ("top/a/x", "top/b"):
        (tmp_path / rel).mkdir(parents=True)
    (tmp_path / "top/a/x/one.yaml").write_text("1\n")
    (tmp_path / "scratch").mkdir()
    settled(tmp_path / "top")
    return tmp_path


def test_nothing_changed_means_no_changes_and_the_same_marks(tree: Path) -> None:
    snap = dirmarks.take(str(tree), ["top"], str(tree / "scratch"), 3)
    assert set(snap.dirs) == {"top", "top/a", "top/a/x", "top/b"}
    assert None not in snap.dirs.values()
    moved = dirmarks.changes(str(tree), snap, ["top"], str(tree / "scratch"), 3)
    assert (moved.dirs, moved.files, moved.now.dirs) == (set(), set(), snap.dirs)


def test_nothing_below_the_depth_is_looked_at(tree: Path) -> None:
    snap = dirmarks.take(str(tree), ["top"], str(tree / "scratch"), 1)
    assert set(snap.dirs) == {"top", "top/a", "top/b"}
    (tree / "top/a/x/two.yaml").write_text("2\n")  # below the depth: not seen
    (tree / "top/b/y").mkdir()  # below the depth too: its parent changed, it is not walked
    moved = dirmarks.changes(str(tree), snap, ["top"], str(tree / "scratch"), 1)
    assert moved.dirs == {"top/b"} and "top/b/y" not in moved.now.dirs


def test_new_nested_directories_are_found_and_marked_for_next_time(tree: Path) -> None:
    snap = dirmarks.take(str(tree), ["top"], str(tree / "scratch"), 3)
    (tree / "top/b/new/deeper").mkdir(parents=True)
    moved = dirmarks.changes(str(tree), snap, ["top"], str(tree / "scratch"), 3)
    assert moved.dirs == {"top/b", "top/b/new", "top/b/new/deeper"}
    assert {"top/b/new", "top/b/new/deeper"} <= set(moved.now.dirs)
    settled(tree / "top")
    stable = dirmarks.take(str(tree), ["top"], str(tree / "scratch"), 3)
    (tree / "top/b/new/deeper/two.yaml").write_text("2\n")  # a file joins a new directory
    moved = dirmarks.changes(str(tree), stable, ["top"], str(tree / "scratch"), 3)
    assert moved.dirs == {"top/b/new/deeper"}


def test_a_removed_directory_and_its_parent_are_changes(tree: Path) -> None:
    snap = dirmarks.take(str(tree), ["top"], str(tree / "scratch"), 3)
    (tree / "top/a/x/one.yaml").unlink()
    (tree / "top/a/x").rmdir()
    moved = dirmarks.changes(str(tree), snap, ["top"], str(tree / "scratch"), 3)
    assert moved.dirs == {"top/a", "top/a/x"}
    assert "top/a/x" not in moved.now.dirs


def test_an_in_place_edit_moves_only_the_file_mark(tree: Path) -> None:
    snap = dirmarks.take(str(tree), ["top"], str(tree / "scratch"), 3)
    dirmarks.add_files(str(tree), snap, ["top/a/x/one.yaml"], str(tree / "scratch"))
    assert snap.files["top/a/x/one.yaml"] is not None
    with open(tree / "top/a/x/one.yaml", "ab") as fh:
        fh.write(b"more\n")
    moved = dirmarks.changes(str(tree), snap, ["top"], str(tree / "scratch"), 3)
    assert (moved.dirs, moved.files) == (set(), {"top/a/x/one.yaml"})
    (tree / "top/a/x/one.yaml").unlink()
    gone = dirmarks.changes(str(tree), moved.now, ["top"], str(tree / "scratch"), 3)
    assert "top/a/x/one.yaml" in gone.files and "top/a/x/one.yaml" not in gone.now.files


def test_what_changed_in_the_current_tick_has_no_mark(tree: Path) -> None:
    (tree / "top/b/fresh").mkdir()
    # stamped in the filesystem's current tick (or later: a clock ahead) — a second change
    # within it would not move the stamp — is unknown, whatever the tick's length
    ahead = dirmarks.fs_now(str(tree / "scratch")) + 5_000_000_000
    for rel in ("top/b/fresh", "top/b"):
        os.utime(tree / rel, ns=(ahead, ahead))
    snap = dirmarks.take(str(tree), ["top"], str(tree / "scratch"), 3)
    assert snap.dirs["top/b/fresh"] is None and snap.dirs["top/b"] is None
    assert snap.dirs["top/a"] is not None
    moved = dirmarks.changes(str(tree), snap, ["top"], str(tree / "scratch"), 3)
    assert {"top/b", "top/b/fresh"} <= moved.dirs  # unknown marks count as changed


def test_the_snapshot_survives_json_and_rejects_other_data(tree: Path) -> None:
    import json

    snap = dirmarks.take(str(tree), ["top"], str(tree / "scratch"), 3)
    back = dirmarks.Snapshot.from_json(json.loads(json.dumps(snap.to_json())))
    assert back is not None and back.dirs == snap.dirs and back.files == snap.files
    assert dirmarks.Snapshot.from_json({"dirs": []}) is None
    assert dirmarks.Snapshot.from_json("nope") is None
    # a damaged mark makes the whole snapshot unusable (verify then checks everything)
    for bad in (7, [1, 2], ["1", 2, 3], [1, 2, 3.5], {"a": 1}):
        assert dirmarks.Snapshot.from_json({"dirs": {"top": bad}, "files": {}}) is None
    assert dirmarks.Snapshot.from_json({"dirs": {"top": None}, "files": {"f": [1, 2, 3, 4]}})
