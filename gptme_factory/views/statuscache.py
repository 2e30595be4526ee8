"""The status cache: board summaries keyed by git content ids, so a warm `status` reads nothing.

Kept in factory/.runtime/status-cache.json (gitignored). It can make `status` slower, never
wrong. Each artifact's summary is stored with

- the git tree id computed (gitstore.tree_id) from the exact bytes the summary was derived
  from: the files `Ledger.read` parsed, names and contents — a content key, not a timestamp;
- the inode, mtime and ctime of the artifact's directory, taken *before* those files were read.

A later run uses a stored summary only when all of these hold, and re-reads the artifact
otherwise (so the cost grows with what changed, not with the ledger):

1. HEAD's tree for the artifact directory has the stored id: HEAD holds exactly those bytes;
2. `git diff-index HEAD` lists no path in the directory: the index and every tracked file on
   disk still hold HEAD's content. Git compares each file's full stat data (mtime, ctime,
   size, inode, ...) with what it recorded and re-reads "racily clean" files, so an in-place
   edit is caught even though it leaves the directory's mtime alone — which is why
   per-directory mtimes alone are not enough. Git does this in C on every core, while Python
   checks the directories; it is the dominant cost of a warm run;
3. the directory's inode, mtime and ctime are unchanged: no file was added, removed or renamed
   in it since the read (git does not look at untracked files; a new event file, a `git
   checkout` or a deleted and re-created directory all change them). A directory changed
   within RACY_NS of the read is never trusted: a second change in the same timestamp tick
   would not move its mtime (git's "racily clean" rule);
4. the factory config's bytes and the code that derives summaries are unchanged.

Together: by (1) and (2) the tracked files hold exactly the bytes the summary came from, and by
(3) no file has joined them. An untracked or uncommitted record makes (1) fail, so that
artifact is simply re-read each time until it is committed. HEAD is resolved once, before its
tree, and (2) compares with that commit, so a concurrent commit cannot pair an old tree with a
new working tree. A cache file copied from elsewhere (say, force-added to a clone) is useless,
not harmful: its inodes do not match. What this cannot see is what git is told not to look at:
`update-index --assume-unchanged`/`--skip-worktree` on ledger files or `core.ignoreStat`;
`status --no-cache` reads everything regardless.

Why not cheaper: an in-place edit changes only the file's own inode, so every ledger file must
be looked at (about 90,000 `lstat`s at 10,000 artifacts, ~0.1 s of CPU) unless a daemon watches
the tree. Git does those in C, on all cores, while Python does the rest.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..ledger.gitstore import tree_id
from ..ledger.store import CONFIG_FILE, Ledger
from .summary import ArtifactSummary, summarize_artifact

if TYPE_CHECKING:
    from collections.abc import Iterable
    from datetime import datetime

    from .linestatus import HasLineAndTime, LineStatus

CACHE_FILE = "status-cache.json"
LINES_CACHE_FILE = "lines-cache.json"
CACHE_VERSION = 2
RACY_NS = 3_000_000_000
# The modules whose code decides what a summary says: editing any of them drops the cache.
_CODE = ("views/summary.py", "ledger/config.py", "ledger/contracts.py", "ledger/gitstore.py",
         "ledger/kinds.py", "ledger/records.py", "ledger/store.py", "ledger/stream.py",
         "ledger/yamlio.py", "line/lifecycle.py", "line/replay.py", "line/transitions.py",
         "views/linestatus.py", "views/statuscache.py")


def cached_summaries(ledger: Ledger) -> list[ArtifactSummary]:
    """Summaries for every artifact, sorted by id, re-reading only what may have changed."""
    gc_was_enabled = gc.isenabled()
    gc.disable()  # tens of thousands of small lists, none cyclic: collections only cost time
    try:
        return _cached_summaries(ledger)
    finally:
        if gc_was_enabled:
            gc.enable()


def _cached_summaries(ledger: Ledger) -> list[ArtifactSummary]:
    repo = ledger.repo
    rel = f"{ledger.rel}/artifacts"
    snap = repo.tree_at_head(rel)  # (commit, tree of factory/artifacts in it)
    top = snap[1] if snap else None
    heads: dict[str, str] | None = None

    def head_of(aid: str) -> str | None:
        nonlocal heads
        if heads is None:
            heads = repo.tree_entries(snap[1]) if snap else {}
        return heads.get(aid)

    # git lstat()s every ledger file in the background while this process does the rest of
    # the checks (1, 3 and 4 of the module docstring) and builds the candidate summaries.
    wait_changed = repo.start_changed_paths(snap[0], rel) if snap else None
    try:
        cache_path = ledger.runtime_dir / CACHE_FILE
        key = _global_key(ledger)
        old, old_top = _load(cache_path, key)
        same_top = bool(old) and old_top == top
        ids = ledger.artifact_ids()
        stats = _dir_stats(str(ledger.artifacts_dir), ids)
        candidates: dict[str, ArtifactSummary] = {}
        for aid in ids if snap else ():
            entry, st = old.get(aid), stats[aid]
            # [tree id of the bytes read, tree id == HEAD's?, dir stat before the read, row]
            if st is None or entry.__class__ is not list or len(entry) != 4 or entry[2] != st:
                continue
            if not (entry[1] is True if same_top else entry[0] == head_of(aid)):
                continue
            try:
                summary = ArtifactSummary.from_row(entry[3])
            except (TypeError, ValueError):
                continue  # a damaged entry: read the artifact instead
            if summary.artifact == aid:
                candidates[aid] = summary
    finally:
        changed = wait_changed() if wait_changed else None
    if changed is None:
        candidates = {}  # git could not say what changed: trust nothing
    else:  # check 2: no path of the artifact differs from HEAD in the index or on disk
        for path in changed:
            candidates.pop(path[len(rel) + 1 :].partition("/")[0], None)

    new: dict[str, list[Any]] = {}
    out: list[ArtifactSummary] = []
    stored = False
    racy_after = time.time_ns() - RACY_NS
    algo = "sha256" if snap and len(snap[0]) == 64 else "sha1"
    for aid in ids:
        st = stats[aid]
        hit = candidates.get(aid)
        if hit is not None:
            entry = old[aid]
            new[aid] = entry if entry[1] is True else [entry[0], True, st, entry[3]]
            out.append(hit)
            continue
        raw: dict[str, bytes] = {}
        summary = summarize_artifact(ledger, aid, raw)
        out.append(summary)
        if summary.state == "broken" or st is None:
            continue  # not cached: read (and reported) again every time
        oid = tree_id(raw, algo)
        if max(st[1], st[2]) >= racy_after:
            st = None  # changed just now: check again next time
        new[aid] = [oid, snap is not None and oid == head_of(aid), st, summary.to_row()]
        stored = True
    if stored or not same_top or old.keys() != new.keys():
        _write_json(cache_path, {"key": key, "top": top, "artifacts": new})
    return out


def cached_line_statuses(
    ledger: Ledger, summaries: Iterable[HasLineAndTime], now: datetime
) -> list[LineStatus]:
    """`linestatus.line_statuses`, with each line's replayed state cached by content.

    The key hashes factory.yaml and every file under factory/lines/ (few and small: one per
    park/unpark/archive), so it is exact; only a change there re-reads the streams.
    """
    from .linestatus import LineBase, statuses

    h = hashlib.sha256(_global_key(ledger).encode())
    # Exactly what `linestatus.line_bases` reads: factory/lines/<line>/<file>, symlinks followed.
    for line_dir in _sorted_entries(str(ledger.dir / "lines")):
        h.update(b"\0line\0" + os.fsencode(line_dir.name))
        if not line_dir.is_dir():
            continue
        for entry in _sorted_entries(line_dir.path):
            h.update(b"\0file\0" + os.fsencode(entry.name) + b"\0")
            try:
                with open(entry.path, "rb") as fh:
                    h.update(fh.read())
            except OSError as exc:
                h.update(f"unreadable {exc.errno}".encode())
    key = h.hexdigest()
    path = ledger.runtime_dir / LINES_CACHE_FILE
    bases: list[LineBase] | None = None
    try:
        data = json.loads(path.read_bytes().decode())
        if data["key"] == key:
            bases = [LineBase(**b) for b in data["lines"]]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        bases = None
    if bases is None:
        from .linestatus import line_bases

        bases = line_bases(ledger)
        _write_json(path, {"key": key, "lines": [b.__dict__ for b in bases]})
    return statuses(bases, summaries, now)


def _dir_stats(base: str, names: list[str]) -> dict[str, list[int] | None]:
    """[inode, mtime, ctime] of each directory `base/name` (None if it cannot be stat'ed)."""
    out: dict[str, list[int] | None] = {}
    fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY) if names else -1
    try:
        stat = os.stat
        for name in names:
            try:  # relative to the parent's fd: a one-component lookup, not a path walk
                st = stat(name, dir_fd=fd, follow_symlinks=False)
                out[name] = [st.st_ino, st.st_mtime_ns, st.st_ctime_ns]
            except OSError:
                out[name] = None
    finally:
        if fd >= 0:
            os.close(fd)
    return out


def _sorted_entries(path: str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(path) as it:
            return sorted(it, key=lambda e: e.name)
    except OSError:
        return []


def _global_key(ledger: Ledger) -> str:
    """What every entry depends on: cache format, ledger path, config bytes, summary code."""
    parts = [str(CACHE_VERSION), ledger.rel]
    try:
        parts.append(hashlib.sha256((ledger.dir / CONFIG_FILE).read_bytes()).hexdigest())
    except OSError:
        parts.append("-")
    here = Path(__file__).parent.parent  # the gptme_factory package
    for name in _CODE:
        try:
            st = os.stat(here / name)
            parts.append(f"{name}:{st.st_size}:{st.st_mtime_ns}")
        except OSError:
            parts.append(f"{name}:-")
    return "|".join(parts)


def _load(path: Path, key: str) -> tuple[dict[str, list[Any]], str | None]:
    """The entries of a cache file written with `key` (empty if missing or damaged).

    Entries are checked one by one where they are used: a damaged one is a miss. (The bytes
    are decoded here: `json.loads(bytes)` decodes with "surrogatepass", which is ~50x slower
    than plain UTF-8 on a few MB.)
    """
    try:
        data = json.loads(path.read_bytes().decode())
        if data["key"] != key or not isinstance(data["artifacts"], dict):
            return {}, None
        entries: dict[str, list[Any]] = data["artifacts"]  # each entry is checked where used
        top = data["top"]
        return entries, top if isinstance(top, str) else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}, None  # missing or damaged: rebuilt from the ledger


def _write_json(path: Path, data: dict[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, separators=(",", ":")))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only checkout still gets a correct (uncached) status
