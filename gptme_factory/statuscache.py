"""The status cache: board summaries keyed by git content ids, so a warm `status` reads nothing.

Kept in factory/.runtime/status-cache.json (gitignored). It can make `status` slower, never
wrong. The same engine (`cached`) keeps other per-artifact values, one `Kind` and one file
each (factcache.py: the metrics' facts); a caller that needs several kinds gets them from
one freshness check and reads a changed artifact once. Each artifact's summary is stored with

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .board import ArtifactSummary, summarize_artifact
from .errors import FactoryError
from .gitstore import tree_id
from .ledger import CONFIG_FILE, Ledger

if TYPE_CHECKING:
    from collections.abc import Iterable
    from datetime import datetime

    from .ledger import Chain
    from .linestatus import HasLineAndTime, LineStatus

CACHE_FILE = "status-cache.json"
LINES_CACHE_FILE = "lines-cache.json"
CACHE_VERSION = 3
RACY_NS = 3_000_000_000
# The modules whose code decides what a summary says: editing any of them drops the cache.
_CODE = ("board.py", "config.py", "contracts.py", "gitstore.py", "ledger.py", "lines.py",
         "linestatus.py", "records.py", "replay.py", "statuscache.py", "yamlio.py")

# derive(ledger, artifact id, its chain or None, the error reading it raised or None)
#   -> (value, row to cache or None: not cached, derived again on every call)
Derive = Callable[[Ledger, str, "Chain | None", "FactoryError | None"], tuple[Any, "list[Any] | None"]]


@dataclass(frozen=True)
class Kind:
    """One thing cached per artifact: its cache file and how a value is derived and restored.

    `restore` turns a cached row back into the value (TypeError/ValueError if the row is
    damaged: then the artifact is read again); `key` adds what else the values depend on.
    """

    file: str
    code: tuple[str, ...]
    derive: Derive
    restore: Callable[[list[Any]], Any]
    check: Callable[[Any, str], bool]  # does a restored value belong to this artifact id?
    key: Callable[[Ledger], str] = lambda ledger: ""


def _derive_summary(ledger: Ledger, aid: str, chain: Chain | None,
                    error: FactoryError | None) -> tuple[ArtifactSummary, list[Any] | None]:
    summary = summarize_artifact(ledger, aid, chain=chain, error=error)
    return summary, None if summary.state == "broken" else summary.to_row()


SUMMARIES = Kind(file=CACHE_FILE, code=_CODE, derive=_derive_summary,
                 restore=ArtifactSummary.from_row, check=lambda s, aid: s.artifact == aid)


def cached_summaries(ledger: Ledger) -> list[ArtifactSummary]:
    """Summaries for every artifact, sorted by id, re-reading only what may have changed."""
    return cached(ledger, [SUMMARIES])[0]


def cached(ledger: Ledger, kinds: Sequence[Kind]) -> list[list[Any]]:
    """For each kind, every artifact's value in id order; one freshness check serves them all.

    An artifact that misses in any kind is read once, and each missing kind derived from it.
    """
    gc_was_enabled = gc.isenabled()
    gc.disable()  # tens of thousands of small lists, none cyclic: collections only cost time
    try:
        return _cached(ledger, kinds)
    finally:
        if gc_was_enabled:
            gc.enable()


def _cached(ledger: Ledger, kinds: Sequence[Kind]) -> list[list[Any]]:
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
    # the checks (1, 3 and 4 of the module docstring) and builds the candidate values.
    wait_changed = repo.start_changed_paths(snap[0], rel) if snap else None
    olds: list[dict[str, list[Any]]] = []
    keys: list[str] = []
    same_tops: list[bool] = []
    candidates: list[dict[str, Any]] = []
    try:
        ids = ledger.artifact_ids()
        stats = _dir_stats(str(ledger.artifacts_dir), ids)
        for kind in kinds:
            key = _global_key(ledger, kind)
            old, old_top = _load(ledger.runtime_dir / kind.file, key)
            same_top = bool(old) and old_top == top
            olds.append(old)
            keys.append(key)
            same_tops.append(same_top)
            found: dict[str, Any] = {}
            restore, check = kind.restore, kind.check
            for aid in ids if snap else ():
                entry, st = old.get(aid), stats[aid]
                # [tree id of the bytes read, tree id == HEAD's?, dir stat before the read, row]
                if st is None or entry.__class__ is not list or len(entry) != 4 or entry[2] != st:
                    continue
                if not (entry[1] is True if same_top else entry[0] == head_of(aid)):
                    continue
                try:
                    value = restore(entry[3])
                except (TypeError, ValueError, KeyError, AttributeError):
                    continue  # a damaged entry: read the artifact instead
                if check(value, aid):
                    found[aid] = value
            candidates.append(found)
    finally:
        changed = wait_changed() if wait_changed else None
    if changed is None:
        candidates = [{} for _ in kinds]  # git could not say what changed: trust nothing
    else:  # check 2: no path of the artifact differs from HEAD in the index or on disk
        dirty = {path[len(rel) + 1 :].partition("/")[0] for path in changed}
        for found in candidates:
            for aid in dirty:
                found.pop(aid, None)

    news: list[dict[str, list[Any]]] = [{} for _ in kinds]
    outs: list[list[Any]] = [[] for _ in kinds]
    stored = [False] * len(kinds)
    racy_after = time.time_ns() - RACY_NS
    algo = "sha256" if snap and len(snap[0]) == 64 else "sha1"
    for aid in ids:
        st = stats[aid]
        misses = []
        for i, found in enumerate(candidates):
            hit = found.get(aid)
            if hit is None:
                misses.append(i)
                continue
            entry = olds[i][aid]
            news[i][aid] = entry if entry[1] is True else [entry[0], True, st, entry[3]]
            outs[i].append(hit)
        if not misses:
            continue
        raw: dict[str, bytes] = {}
        chain: Chain | None = None
        error: FactoryError | None = None
        try:
            chain = ledger.read(aid, raw=raw)
        except FactoryError as exc:
            error = exc
        oid = tree_id(raw, algo) if error is None and st is not None else None
        if st is not None and max(st[1], st[2]) >= racy_after:
            st = None  # changed just now: check again next time
        for i in misses:
            value, row = kinds[i].derive(ledger, aid, chain, error)
            outs[i].append(value)
            if row is None or oid is None:
                continue  # not cached: read (and reported) again every time
            news[i][aid] = [oid, snap is not None and oid == head_of(aid), st, row]
            stored[i] = True
    for i, kind in enumerate(kinds):
        if stored[i] or not same_tops[i] or olds[i].keys() != news[i].keys():
            _write_json(ledger.runtime_dir / kind.file,
                        {"key": keys[i], "top": top, "artifacts": news[i]})
    return outs


def cached_line_statuses(
    ledger: Ledger, summaries: Iterable[HasLineAndTime], now: datetime
) -> list[LineStatus]:
    """`lines.line_statuses`, with each line's replayed state cached by content.

    The key hashes factory.yaml and every file under factory/lines/ (few and small: one per
    park/unpark/archive), so it is exact; only a change there re-reads the streams.
    """
    from .linestatus import LineBase, statuses

    h = hashlib.sha256(_global_key(ledger, SUMMARIES).encode())
    # Exactly what `lines.line_bases` reads: factory/lines/<line>/<file>, symlinks followed.
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
        from .lines import line_bases

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


def _global_key(ledger: Ledger, kind: Kind) -> str:
    """What every entry depends on: cache format, ledger path, config bytes, the kind's code."""
    parts = [str(CACHE_VERSION), ledger.rel]
    try:
        parts.append(hashlib.sha256((ledger.dir / CONFIG_FILE).read_bytes()).hexdigest())
    except OSError:
        parts.append("-")
    parts.append(kind.key(ledger))
    here = Path(__file__).parent
    for name in kind.code:
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
