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

from ..errors import FactoryError
from ..ledger.gitstore import tree_id
from ..ledger.store import CONFIG_FILE, Ledger
from .summary import ArtifactSummary, summarize_artifact

if TYPE_CHECKING:
    from collections.abc import Iterable
    from datetime import datetime

    from ..ledger.kinds import ArtifactChain
    from .linestatus import HasLineAndTime, LineStatus

CACHE_FILE = "status-cache.json"
LINES_CACHE_FILE = "lines-cache.json"
CACHE_VERSION = 3
RACY_NS = 3_000_000_000
# The modules whose code decides what a summary says: editing any of them drops the cache.
_CODE = ("views/summary.py", "ledger/config.py", "ledger/contracts.py", "ledger/gitstore.py",
         "ledger/kinds.py", "ledger/records.py", "ledger/store.py", "ledger/stream.py",
         "ledger/yamlio.py", "line/lifecycle.py", "line/replay.py", "line/transitions.py",
         "views/linestatus.py", "views/statuscache.py")

# derive(ledger, artifact id, its chain or None, the error reading it raised or None)
#   -> (value, row to cache or None: not cached, derived again on every call)
Derive = Callable[[Ledger, str, "ArtifactChain | None", "FactoryError | None"], tuple[Any, "list[Any] | None"]]


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


def _derive_summary(ledger: Ledger, aid: str, chain: ArtifactChain | None,
                    error: FactoryError | None) -> tuple[ArtifactSummary, list[Any] | None]:
    summary = summarize_artifact(ledger, aid, chain=chain, error=error)
    return summary, None if summary.state == "broken" else summary.to_row()


SUMMARIES = Kind(file=CACHE_FILE, code=_CODE, derive=_derive_summary,
                 restore=ArtifactSummary.from_row, check=lambda s, aid: s.artifact == aid)


def cached_summaries(ledger: Ledger) -> list[ArtifactSummary]:
    """Summaries for every artifact, sorted by id, re-reading only what may have changed."""
    return cached(ledger, [SUMMARIES])[0]


def cached(ledger: Ledger, kinds: Sequence[Kind]) -> list[list[Any]]:
    """For each kind, every artifact's value in id order; one freshness check serves them all."""
    with Pass(ledger) as p:
        return [p.values(kind) for kind in kinds]


class Pass:
    """One freshness check of every artifact, serving as many kinds as are asked of it.

    The checks of the module docstring are made once: HEAD's tree, `git diff-index` (run in
    the background while the first kind's cache file is loaded and its entries checked), the
    directories' stat. An artifact read for one kind is not read again for another.
    `fingerprint` identifies the content of every artifact, so a value computed from all of
    them (the metrics report) can be kept and reused until one changes.
    """

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.rel = f"{ledger.rel}/artifacts"
        repo = ledger.repo
        self.snap = repo.tree_at_head(self.rel)  # (commit, tree of factory/artifacts in it)
        self.top = self.snap[1] if self.snap else None
        self._heads: dict[str, str] | None = None
        # git lstat()s every ledger file in the background while this process does the rest
        # of the checks (1, 3 and 4 of the module docstring) and builds candidate values.
        self._wait = repo.start_changed_paths(self.snap[0], self.rel) if self.snap else None
        self._dirty: set[str] | None = None
        self._waited = False
        self.ids = ledger.artifact_ids()
        self.stats = _dir_stats(str(ledger.artifacts_dir), self.ids)
        self.algo = "sha256" if self.snap and len(self.snap[0]) == 64 else "sha1"
        self.racy_after = 0
        # what this pass read: aid -> (chain, error, content id or None)
        self._read: dict[str, tuple[ArtifactChain | None, FactoryError | None, str | None]] = {}
        self._oids: dict[str, str | None] = {}
        self._gc = gc.isenabled()
        gc.disable()  # tens of thousands of small lists, none cyclic: collections only cost time

    def __enter__(self) -> Pass:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Wait for git if nobody did, and restore the garbage collector."""
        self._changed()
        if self._gc:
            gc.enable()
            self._gc = False

    def _head_of(self, aid: str) -> str | None:
        if self._heads is None:
            self._heads = self.ledger.repo.tree_entries(self.snap[1]) if self.snap else {}
        return self._heads.get(aid)

    def _changed(self) -> set[str] | None:
        """Artifacts with a path that differs from HEAD (None: git could not say: all)."""
        if not self._waited:
            self._waited = True
            changed = self._wait() if self._wait else None
            if changed is not None:
                cut = len(self.rel) + 1
                self._dirty = {path[cut:].partition("/")[0] for path in changed}
            self.racy_after = time.time_ns() - RACY_NS
        return self._dirty

    def values(self, kind: Kind) -> list[Any]:
        """Every artifact's value of `kind`, in id order; writes the kind's cache file."""
        ledger, ids, stats = self.ledger, self.ids, self.stats
        key = _global_key(ledger, kind)
        old, old_top = _load(ledger.runtime_dir / kind.file, key)
        same_top = bool(old) and old_top == self.top
        found: dict[str, Any] = {}
        restore, check, head_of = kind.restore, kind.check, self._head_of
        for aid in ids if self.snap else ():
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
        dirty = self._changed()
        if dirty is None:
            found = {}  # git could not say what changed: trust nothing
        else:  # check 2: no path of the artifact differs from HEAD in the index or on disk
            for aid in dirty:
                found.pop(aid, None)

        new: dict[str, list[Any]] = {}
        out: list[Any] = []
        stored = False
        oids = self._oids
        for aid in ids:
            st = stats[aid]
            hit = found.get(aid)
            if hit is not None:
                entry = old[aid]
                new[aid] = entry if entry[1] is True else [entry[0], True, st, entry[3]]
                oids[aid] = entry[0]
                out.append(hit)
                continue
            chain, error, oid = self._read_once(aid, st)
            value, row = kind.derive(ledger, aid, chain, error)
            out.append(value)
            if row is None or oid is None:
                continue  # not cached: read (and reported) again every time
            if st is not None and max(st[1], st[2]) >= self.racy_after:
                st = None  # changed just now: check again next time
            new[aid] = [oid, self.snap is not None and oid == head_of(aid), st, row]
            stored = True
        if stored or not same_top or old.keys() != new.keys():
            _write_json(ledger.runtime_dir / kind.file,
                        {"key": key, "top": self.top, "artifacts": new})
        return out

    def _read_once(self, aid: str, st: list[int] | None
                   ) -> tuple[ArtifactChain | None, FactoryError | None, str | None]:
        got = self._read.get(aid)
        if got is None:
            raw: dict[str, bytes] = {}
            chain: ArtifactChain | None = None
            error: FactoryError | None = None
            try:
                chain = self.ledger.read(aid, raw=raw)
            except FactoryError as exc:
                error = exc
            oid = tree_id(raw, self.algo) if error is None and st is not None else None
            got = self._read[aid] = (chain, error, oid)
            self._oids[aid] = oid
        return got

    def fingerprint(self) -> str | None:
        """An id of every artifact's content as this pass saw it; None when one is unknown.

        Known once a kind's values were asked for: from the cached entries (their tree ids,
        checked against HEAD) and from what was read. An artifact that could not be read or
        stat'ed has no content id, and then nothing derived from all artifacts can be kept.
        """
        got = self._oids
        oids = [oid for oid in map(got.get, self.ids) if oid is not None]
        if len(oids) != len(self.ids):
            return None
        text = "\n".join(map("\0".join, zip(self.ids, oids, strict=True)))
        return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()


def cached_line_statuses(
    ledger: Ledger, summaries: Iterable[HasLineAndTime], now: datetime
) -> list[LineStatus]:
    """`linestatus.line_statuses`, with each line's replayed state cached by content.

    The key hashes factory.yaml and every file under factory/lines/ (few and small: one per
    park/unpark/archive), so it is exact; only a change there re-reads the streams.
    """
    from .linestatus import LineBase, statuses

    h = hashlib.sha256(_global_key(ledger, SUMMARIES).encode())
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


def _global_key(ledger: Ledger, kind: Kind) -> str:
    """What every entry depends on: cache format, ledger path, config bytes, the kind's code."""
    parts = [str(CACHE_VERSION), ledger.rel]
    try:
        parts.append(hashlib.sha256((ledger.dir / CONFIG_FILE).read_bytes()).hexdigest())
    except OSError:
        parts.append("-")
    parts.append(kind.key(ledger))
    here = Path(__file__).parent.parent  # the gptme_factory package
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
