"""Which directories of a tree changed since a snapshot, without listing the ones that did not.

Git's untracked cache, in a few lines of Python: a snapshot keeps, for every directory under
some roots, its [inode, mtime, ctime]. Adding, removing or renaming an entry moves its
directory's mtime, so a directory whose mark is unchanged still has the same entries: only
changed directories are listed again (to find the subdirectories that joined them), every
other one costs one `lstat`. At 10,000 artifacts that is ~10,300 `lstat`s (the buckets and
the artifact folders) instead of reading every directory of the ledger and matching ~90,000
names against git's index (`git ls-files --others`).

What a directory's mark cannot see is a file edited in place: for tracked files git's own
stat check (`diff-index`) sees that; the snapshot keeps the full stat of the files it is told
about (`files`: the untracked ones, which git does not look at), so an edit to one of those is
seen too.

A directory that changed in the filesystem's current timestamp tick is kept without a mark
(`None`): a second change within the same tick would not move its mtime (git's "racily
clean" rule), so it counts as changed next time. The current tick is read from the
filesystem itself (the mtime of a file just written in `scratch`), so a filesystem with
coarse timestamps gets a wide window and one with nanoseconds a narrow one; without a
writable `scratch`, anything that changed in the last RACY_NS counts as racy.

Plain os only, no git: the caller asks git what it needs about the changed directories.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

RACY_NS = 3_000_000_000

Mark = list[int]  # a directory: [inode, mtime_ns, ctime_ns]; a file: also its size


@dataclass
class Snapshot:
    """Directories (repo-relative) with their marks, and files with theirs; None: unknown."""

    dirs: dict[str, Mark | None] = field(default_factory=dict)
    files: dict[str, Mark | None] = field(default_factory=dict)

    def to_json(self) -> dict[str, dict[str, Mark | None]]:
        """The snapshot as plain JSON data (`from_json` reads it back)."""
        return {"dirs": self.dirs, "files": self.files}

    @classmethod
    def from_json(cls, data: object) -> Snapshot | None:
        """The snapshot in `data` (as `to_json` wrote it), or None if it is not one."""
        if not isinstance(data, dict):
            return None
        dirs, files = data.get("dirs"), data.get("files")
        if not (isinstance(dirs, dict) and isinstance(files, dict)
                and _marks(dirs, 3) and _marks(files, 4)):
            return None  # damaged: the caller checks everything, as with no snapshot
        return cls(dirs, files)


def _marks(marks: dict[object, object], size: int) -> bool:
    """True if every value is None or a list of `size` ints, under a string key."""
    for key, mark in marks.items():
        if not isinstance(key, str):
            return False
        if mark is not None and not (mark.__class__ is list and len(mark) == size
                                     and all(v.__class__ is int for v in mark)):
            return False
    return True


@dataclass
class Changes:
    """What moved since a snapshot, and the snapshot of now (marks taken before any read)."""

    dirs: set[str]  # changed, new or gone directories
    files: set[str]  # snapshot files edited, replaced or gone
    now: Snapshot
    listed: list[str] = field(default_factory=list)  # the files in changed and new directories


def _mark(st: os.stat_result, racy_after: int) -> Mark | None:
    if max(st.st_mtime_ns, st.st_ctime_ns) >= racy_after:
        return None
    return [st.st_ino, st.st_mtime_ns, st.st_ctime_ns]


def _file_mark(st: os.stat_result, racy_after: int) -> Mark | None:
    if max(st.st_mtime_ns, st.st_ctime_ns) >= racy_after:
        return None
    return [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def _list(path: str) -> tuple[list[str], list[str]]:
    """(subdirectories, other entries) of a directory, by name."""
    subs: list[str] = []
    others: list[str] = []
    with os.scandir(path) as it:
        for entry in it:
            (subs if entry.is_dir(follow_symlinks=False) else others).append(entry.name)
    return subs, others


def _limit(rel: str, tops: Sequence[str], depth: int) -> int:
    """How many slashes a directory of `rel`'s top may have to be in the snapshot."""
    top = max((t for t in tops if rel == t or rel.startswith(t + "/")), key=len, default=rel)
    return top.count("/") + depth


def _walk(root: str, rel: str, racy_after: int, into: dict[str, Mark | None],
          changed: set[str], listed: list[str], limit: int) -> None:
    """Mark `rel` and the directories below it down to `limit` slashes (all new to the snapshot)."""
    stack = [rel]
    while stack:
        here = stack.pop()
        try:
            st = os.lstat(os.path.join(root, here))
            subs, others = _list(os.path.join(root, here))
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode):
            continue
        into[here] = _mark(st, racy_after)
        changed.add(here)
        listed += [f"{here}/{name}" for name in others]
        if here.count("/") < limit:
            stack += [f"{here}/{name}" for name in subs]


def fs_now(scratch: str) -> int:
    """The filesystem's current timestamp (ns), as a file written now in `scratch` gets it.

    Anything stamped at or after it may change again without its stamp moving. Falls back
    to RACY_NS before the clock when `scratch` cannot be written.
    """
    try:
        os.makedirs(scratch, exist_ok=True)
        path = os.path.join(scratch, f".tick.{os.getpid()}")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"t")
            stamp = os.fstat(fd).st_mtime_ns
        finally:
            os.close(fd)
            os.unlink(path)
        return stamp
    except OSError:
        return time.time_ns() - RACY_NS


def take(root: str, tops: Sequence[str], scratch: str, depth: int) -> Snapshot:
    """A snapshot of the directories under `tops` (repo-relative), `depth` levels down.

    Deeper directories are not looked at: a caller that reads only the files of the
    directories `depth` levels below a top (the ledger's stream folders) needs no more.
    """
    racy_after = fs_now(scratch)
    snap = Snapshot()
    for top in tops:
        _walk(root, top, racy_after, snap.dirs, set(), [], top.count("/") + depth)
    return snap


def changes(root: str, old: Snapshot, tops: Sequence[str], scratch: str, depth: int
            ) -> Changes:
    """What changed under `tops` since `old`, and a snapshot of now with the same files.

    Directories of `old` are stat'ed; a changed one is listed again, and a directory found in
    it that `old` did not have is walked (all of it is new). A top that `old` lacks is walked
    whole. The files found in what was listed are `listed` (for the caller to ask git which
    of them it does not track). The files of `old` are stat'ed and kept in the new snapshot while they exist.
    `scratch` is where the filesystem's clock is read (`fs_now`); `depth` as for `take`.
    """
    racy_after = fs_now(scratch)
    now = Snapshot()
    changed: set[str] = set()
    listed: list[str] = []
    moved: dict[str, os.stat_result] = {}  # changed directories that are still directories
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for rel, mark in old.dirs.items():
            try:  # relative to the root's fd: a short lookup, not a walk from /
                st = os.stat(rel, dir_fd=fd, follow_symlinks=False)
            except OSError:
                changed.add(rel)  # gone
                continue
            is_dir = stat.S_ISDIR(st.st_mode)
            if mark is not None and st.st_mtime_ns == mark[1] and st.st_ctime_ns == mark[2] \
                    and st.st_ino == mark[0] and is_dir:
                now.dirs[rel] = mark
                continue
            changed.add(rel)
            if is_dir:
                moved[rel] = st
    finally:
        os.close(fd)
    for rel in sorted(moved):
        now.dirs[rel] = _mark(moved[rel], racy_after)
        try:
            subs, others = _list(os.path.join(root, rel))
        except OSError:
            continue
        listed += [f"{rel}/{name}" for name in others]
        limit = _limit(rel, tops, depth)
        if rel.count("/") >= limit:
            continue
        for name in subs:
            sub = f"{rel}/{name}"
            if sub not in old.dirs:
                _walk(root, sub, racy_after, now.dirs, changed, listed, limit)
    for top in tops:
        if top not in old.dirs:
            _walk(root, top, racy_after, now.dirs, changed, listed, top.count("/") + depth)
    edited = _files(root, old.files, racy_after, now.files)
    return Changes(changed, edited, now, listed)


def _files(root: str, old: Mapping[str, Mark | None], racy_after: int,
           into: dict[str, Mark | None]) -> set[str]:
    edited: set[str] = set()
    for rel, mark in old.items():
        try:
            st = os.lstat(os.path.join(root, rel))
        except OSError:
            edited.add(rel)
            continue
        got = [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
        if got != mark:
            edited.add(rel)
            into[rel] = _file_mark(st, racy_after)
        else:
            into[rel] = mark
    return edited


def add_files(root: str, snap: Snapshot, paths: Iterable[str], scratch: str) -> None:
    """Keep the full stat of `paths` (repo-relative files) in `snap`."""
    racy_after = fs_now(scratch)
    for rel in paths:
        try:
            snap.files[rel] = _file_mark(os.lstat(os.path.join(root, rel)), racy_after)
        except OSError:
            snap.files.pop(rel, None)
