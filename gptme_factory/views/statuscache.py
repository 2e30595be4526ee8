"""The status cache: board summaries keyed by git content ids, so a warm `status` reads nothing.

Kept in factory/.runtime/status-cache/ (gitignored), one small file per bucket of artifact ids
(`2a.marshal`: the artifacts whose ids end in `2a`, as the ledger fans its folders out), so a
write rewrites one small file, never a file of every artifact. The files are Python's
`marshal` format, as `.pyc` files are: a cache of derived data that only this code reads,
loaded in under half the time JSON takes (a warm `status` loads every shard: ~4 MB at 10,000
artifacts); a file that does not load, or holds anything but the expected shape, is rebuilt,
and the key names the Python version. It can make `status` slower,
never wrong. The same engine keeps other per-artifact values, one `Kind` and one folder each
(factcache.py: the metrics' facts); a caller that needs several kinds gets them from one
freshness check and reads a changed artifact once. Each artifact's value is stored with

- the git tree id of the artifact's folder as it was on disk when the value was derived
  (gitstore.dir_tree_id: the record bytes that were parsed, plus everything else in the
  folder, a cell's committed brief included) — a content key, not a timestamp;
- the inode, mtime and ctime of the folder, taken *before* its files were read (or, when the
  folder had just changed, the names in it: see 3).

A later run uses a stored value only when all of these hold, and re-reads the artifact
otherwise (so the cost grows with what changed, not with the ledger):

1. HEAD's tree for the artifact's folder has the stored id: HEAD holds exactly those bytes.
   HEAD's trees are read only where they moved: the `factory/artifacts` tree id and its
   buckets' ids are remembered (trees-cache.json), so after a commit only its bucket and
   shelf are listed, and while HEAD's ledger is unchanged no tree is read at all;
2. `git diff-index HEAD` lists no path in the folder: the index and every tracked file on
   disk still hold HEAD's content. Git compares each file's full stat data (mtime, ctime,
   size, inode, ...) with what it recorded and re-reads "racily clean" files, so an in-place
   edit is caught even though it leaves the folder's mtime alone — which is why per-folder
   mtimes alone are not enough. Git does this in C on every core, while Python checks the
   folders; it is the dominant cost of a warm run;
3. no file was added, removed or renamed in the folder since the read (git does not look at
   untracked files): the folder's inode, mtime and ctime are unchanged — or, for a folder
   that changed within RACY_NS of the read (a second change in the same timestamp tick would
   not move its mtime: git's "racily clean" rule), its content is the same: the folder's
   tree id computed from the bytes on disk (a few small files, read but not parsed) is the
   stored one, which also covers an in-place edit git's second-granular stat check misses;
4. the factory config's bytes and the code that derives the values are unchanged.

Together: by (1) and (2) the tracked files hold exactly the bytes the value came from, and by
(3) no file has joined them. An untracked or uncommitted record makes (1) fail, so that
artifact is simply re-read each time until it is committed. HEAD is resolved once, before its
tree, and (2) compares with that commit, so a concurrent commit cannot pair an old tree with a
new working tree. A cache file copied from elsewhere (say, force-added to a clone) is useless,
not harmful: its inodes do not match. What this cannot see is what git is told not to look at:
`update-index --assume-unchanged`/`--skip-worktree` on ledger files or `core.ignoreStat`;
`status --no-cache` reads everything regardless.

A write keeps the cache warm (`keep_fresh`): the process that committed — which has the models
loaded and has just read the artifact — derives the changed artifacts' values at once and
stores them, so the next `status` finds them and need not load the models to re-read them.
With a watcher, it also hands the shards it rewrote over to the next pass
(cachewatch.hand_over), which then hashes only the folders the watcher names, not every
folder of the rewritten shard's bucket.

Why not cheaper: an in-place edit changes only the file's own stat, so every ledger file must
be looked at (about 93,000 `lstat`s at 10,000 artifacts: ~0.27 s of CPU here, 0.16 s on two
cores) unless a daemon watches the tree. Git does those in C, on all cores, while Python does
the rest; the folders themselves are listed again only where a directory moved
(listingcache.py). When watchman runs here, a daemon does watch it: checks 2 and 3 (and the
listing) give way to the watcher's word on what changed since the last pass (cachewatch.py).
"""

from __future__ import annotations

import gc
import hashlib
import json
import marshal
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import FactoryError
from ..ledger.gitstore import TreeReader, dir_tree_id
from ..ledger.layout import bucket, group_of
from ..ledger.runtime import write_bytes, write_json
from ..ledger.store import CONFIG_FILE, Ledger
from . import cachewatch, listingcache
from .cachewatch import SHARD_SUFFIX, KindState, ShardStat, shard_file, shard_stat
from .summary import ArtifactSummary, summarize_artifact

if TYPE_CHECKING:
    from datetime import datetime

    from ..ledger.kinds import ArtifactChain
    from .linestatus import HasLineAndTime, LineStatus

CACHE_DIR = "status-cache"
TREES_FILE = "trees-cache.json"
LINES_CACHE_FILE = "lines-cache.json"
CONFIG_VALUES_FILE = "config-cache.json"
CACHE_VERSION = 5
RACY_NS = 3_000_000_000
# The modules whose code decides what a summary says: editing any of them drops the cache.
_CODE = ("views/summary.py", "ledger/config.py", "ledger/contracts.py", "ledger/gitstore.py",
         "ledger/kinds.py", "ledger/layout.py", "ledger/records.py", "ledger/store.py",
         "ledger/stream.py", "ledger/yamlio.py", "line/lifecycle.py", "line/replay.py",
         "line/transitions.py", "views/linestatus.py", "views/statuscache.py")

# derive(ledger, artifact id, its chain or None, the error reading it raised or None)
#   -> (value, row to cache or None: not cached, derived again on every call)
Derive = Callable[[Ledger, str, "ArtifactChain | None", "FactoryError | None"], tuple[Any, "list[Any] | None"]]


@dataclass(frozen=True)
class Kind:
    """One thing cached per artifact: its cache folder and how a value is derived and restored.

    `restore` turns a cached row back into the value (TypeError/ValueError if the row is
    damaged: then the artifact is read again); `artifact_of` says which artifact a restored
    value is about (it must be the one it is stored under); `key` adds what else the values
    depend on.
    """

    file: str  # the folder under factory/.runtime holding its shards
    code: tuple[str, ...]
    derive: Derive
    restore: Callable[[list[Any]], Any]
    artifact_of: Callable[[Any], str] = attrgetter("artifact")
    key: Callable[[Ledger], str] = lambda ledger: ""


def _derive_summary(ledger: Ledger, aid: str, chain: ArtifactChain | None,
                    error: FactoryError | None) -> tuple[ArtifactSummary, list[Any] | None]:
    summary = summarize_artifact(ledger, aid, chain=chain, error=error)
    return summary, None if summary.state == "broken" else summary.to_row()


SUMMARIES = Kind(file=CACHE_DIR, code=_CODE, derive=_derive_summary,
                 restore=ArtifactSummary.from_row)


def shard(ledger: Ledger, kind: Kind, artifact: str) -> Path:
    """The cache file holding `artifact`'s value of `kind` (one file per bucket of ids)."""
    return shard_file(ledger.runtime_dir / kind.file, bucket(artifact))


def cached_summaries(ledger: Ledger) -> list[ArtifactSummary]:
    """Summaries for every artifact, sorted by id, re-reading only what may have changed."""
    return cached(ledger, [SUMMARIES])[0]


def cached(ledger: Ledger, kinds: Sequence[Kind]) -> list[list[Any]]:
    """For each kind, every artifact's value in id order; one freshness check serves them all."""
    with Pass(ledger, kinds) as p:
        return [p.values(kind) for kind in kinds]


# One artifact's content as a read saw it: (tree id or None, folder mark or None). The mark is
# the folder's [inode, mtime, ctime], or {"ls": names} when it changed too recently to trust.
Content = tuple["str | None", "list[int] | dict[str, list[str]] | None"]


class Pass:
    """One freshness check of every artifact, serving as many kinds as are asked of it.

    The checks of the module docstring are made once: HEAD's trees, `git diff-index` (run in
    the background while the first kind's cache is loaded and its entries checked), the
    folders' stat. An artifact read for one kind is read for every kind in `kinds` at once,
    and only what is derived from it is kept (never the records: a cold pass over 30,000
    artifacts must not hold them all). `fingerprint` identifies the content of every
    artifact, so a value computed from all of them (the metrics report) can be kept and
    reused until one changes.
    """

    def __init__(self, ledger: Ledger, kinds: Sequence[Kind] = ()) -> None:
        self.ledger = ledger
        self.kinds = list(kinds)
        self.rel = f"{ledger.rel}/artifacts"
        repo = ledger.repo
        self._gc = gc.isenabled()
        gc.disable()  # tens of thousands of small lists, none cyclic: collections only cost time
        head = repo.start_tree_at_head(self.rel)  # git works while the watcher is asked
        # What the file watcher saw change since the last pass, asked before anything is
        # listed or read (cachewatch.py); nothing without a watcher.
        self.begun = cachewatch.start(ledger)
        self.watched = self.begun.listing is not None
        self.snap = head()  # (commit, tree of factory/artifacts in it)
        self.top = self.snap[1] if self.snap else None
        self._wait: Callable[[], set[str] | None] | None = None
        if self.snap and not (self.watched and all(
                self.begun.kind(k.file) is not None for k in self.kinds)):
            # git lstat()s every ledger file in the background while this process does the
            # rest of the checks (1, 3 and 4 of the module docstring) and builds candidate
            # values; with the watcher's word for every kind, nothing needs it.
            self._wait = repo.start_changed_paths(self.snap[0], self.rel)
        self._dirty: set[str] | None = None
        self._waited = False
        # the watcher's listing, or the one kept by its directories' marks (listingcache.py)
        self.listing = self.begun.listing or listingcache.current(ledger)
        self.folders = self.listing.folders  # id -> folder under artifacts/
        self.ids = list(self.folders)
        self.stats = _Stats(str(ledger.artifacts_dir), self.folders)
        if not self.watched:  # every folder's, at once (watched: those looked at, when they are)
            self.stats.update(_dir_stats(str(ledger.artifacts_dir), self.folders))
        self.algo = "sha256" if self.snap and len(self.snap[0]) == 64 else "sha1"
        self.racy_after = time.time_ns() - RACY_NS
        self._checked: dict[str, dict[str, ShardStat]] = {}  # kind -> bucket -> its shard
        self._reader: TreeReader | None = None
        self._groups: dict[str, str] | None = None  # bucket -> its tree id in HEAD
        self._derived: dict[tuple[int, str], tuple[Any, list[Any] | None]] = {}
        self._content: dict[str, Content] = {}
        self._oids: dict[str, str | None] = {}

    def __enter__(self) -> Pass:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(keep=exc_type is None)

    def close(self, keep: bool = True) -> None:
        """Wait for git if nobody did, end the tree reader, restore the garbage collector.

        With `keep`, what the file watcher needs next time is kept (cachewatch.save).
        """
        if self._wait is not None and not self._waited:
            self._changed()
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._gc:
            # What the pass made is not cyclic: the collector need not walk it ever (enabled
            # again, it would walk every object made meanwhile at the next allocation).
            gc.freeze()
            gc.enable()
            self._gc = False
        if keep:
            cachewatch.save(self.ledger, self.begun, self.listing, self._checked)
            self._checked = {}

    # -- HEAD's trees -------------------------------------------------------------------

    def _trees(self) -> TreeReader:
        if self._reader is None:
            self._reader = self.ledger.repo.tree_reader()
        return self._reader

    def group_tree(self, group: str) -> str | None:
        """HEAD's tree id of a folder of artifacts: a bucket, or "" (the flat layout's top)."""
        if not group or self.top is None:
            return self.top
        if self._groups is None:
            path = self.ledger.runtime_dir / TREES_FILE
            try:
                data = json.loads(path.read_bytes().decode())
                if data["top"] == self.top and isinstance(data["groups"], dict):
                    self._groups = data["groups"]
            except (OSError, ValueError, KeyError, TypeError):
                pass
            if self._groups is None:
                entries = self._trees().entries(self.top) or {}
                self._groups = {n: o for n, o in entries.items() if len(n) == 2}
                _write_json(path, {"top": self.top, "groups": self._groups})
        return self._groups.get(group)

    def head_of(self, aid: str) -> str | None:
        """HEAD's tree id of an artifact's folder (None if HEAD has none)."""
        folder = self.folders[aid]
        group = group_of(folder)
        tree = self.group_tree(group)
        for name in folder[len(group):].lstrip("/").split("/"):  # the shelf, then the folder
            entries = self._trees().entries(tree) if tree else None
            tree = entries.get(name) if entries else None
        return tree

    def _changed(self) -> set[str] | None:
        """Artifacts with a path that differs from HEAD (None: git could not say: all)."""
        if not self._waited:
            self._waited = True
            if self._wait is None and self.snap:  # not started with the pass: the watcher's
                self._wait = self.ledger.repo.start_changed_paths(self.snap[0], self.rel)
            changed = self._wait() if self._wait else None
            if changed is not None:
                cut = len(self.rel) + 1
                owners = (self.listing.owner(path[cut:]) for path in changed)
                self._dirty = {aid for aid in owners if aid is not None}
            self.racy_after = time.time_ns() - RACY_NS
        return self._dirty

    # -- values -------------------------------------------------------------------------

    def _same_content(self, aid: str, oid: Any) -> bool:
        """True if the artifact's folder on disk, hashed now, has tree id `oid`.

        Its stat is taken first: the mark a value stored again keeps.
        """
        self.stats[aid]  # noqa: B018 - taken before the read
        got = dir_tree_id(str(self.ledger.artifacts_dir / self.folders[aid]), {}, self.algo)
        return got is not None and got[0] == oid

    def _same_folder(self, aid: str, mark: Any, st: list[int] | None, oid: Any) -> bool:
        if st is None:
            return False
        if mark.__class__ is list:
            return bool(mark == st)
        if mark.__class__ is dict:  # a folder that had just changed: compare what is in it,
            # byte for byte (git's stat check cannot see an in-place edit that keeps size and
            # mtime within the second its index entry was written; reading a few files can)
            got = dir_tree_id(str(self.ledger.artifacts_dir / self.folders[aid]), {}, self.algo)
            return got is not None and got[0] == oid and got[1] == mark.get("ls")
        return False

    def values(self, kind: Kind, *, restore: bool = True) -> list[Any]:
        """Every artifact's value of `kind`, in id order; rewrites the shards that changed.

        Without `restore`, a cached value comes as its stored row, unchecked: enough to learn
        every artifact's content id (`fingerprint`) without building the values.
        """
        ledger, ids, stats = self.ledger, self.ids, self.stats
        key = _global_key(ledger, kind)
        folder = ledger.runtime_dir / kind.file
        by_bucket: dict[str, list[str]] = {}
        for aid in ids:
            by_bucket.setdefault(bucket(aid), []).append(aid)
        shards = {b: _load_shard(shard_file(folder, b), key) for b in by_bucket}
        build = kind.restore if restore else None
        trust = self.begun.kind(kind.file) if self.watched else None
        if trust is not None:
            found, whole = self._watched(trust, by_bucket, shards, build, kind.artifact_of)
        else:
            found, whole = self._unwatched(by_bucket, shards, build, kind.artifact_of)
        checked = self._checked.setdefault(kind.file, {})
        index = self._index(kind)
        out: dict[str, Any] = {}  # filled bucket by bucket, returned in id order
        oids = self._oids
        for b, aids in by_bucket.items():
            entries, groups, stored = shards[b]
            bulk = whole.get(b)
            if bulk is not None:  # as stored: nothing to derive, nothing to write
                out.update(zip(aids, bulk, strict=True))
                oids.update(zip(aids, map(_OID, entries.values()), strict=True))
                if stored is not None:
                    checked[b] = stored
                continue
            new: dict[str, list[Any]] = {}
            changed = False
            for aid in aids:
                hit = found.get(aid)
                if hit is not None:
                    entry = entries[aid]
                    st = stats[aid]
                    if trust is not None:  # a hit says nothing of HEAD here: ask it
                        mark = st if st is not None and max(st[1], st[2]) < self.racy_after \
                            else entry[2]
                        kept = [entry[0], entry[0] == self.head_of(aid), mark, entry[3]]
                        new[aid] = entry if kept == entry else kept
                        changed = changed or kept != entry
                    else:
                        assert st is not None  # a hit had its folder's stat
                        mark = st if max(st[1], st[2]) < self.racy_after else entry[2]
                        if entry[1] is True and (mark is entry[2] or mark == entry[2]):
                            new[aid] = entry
                        else:
                            new[aid] = [entry[0], True, mark, entry[3]]
                            changed = True
                    oids[aid] = entry[0]
                    out[aid] = hit
                    continue
                value, row = self._derive(index, aid)
                out[aid] = value
                oid, mark = self._content[aid]
                if row is None or oid is None or mark is None:
                    continue  # not cached: read (and reported) again every time
                new[aid] = [oid, self.snap is not None and oid == self.head_of(aid), mark, row]
                changed = True
            current = {g: self.group_tree(g) for g in
                       {group_of(self.folders[a]) for a in new}} if self.snap else {}
            if changed or current != groups or new.keys() != entries.keys():
                stored = _write_shard(shard_file(folder, b),
                                      {"key": key, "groups": current, "artifacts": new})
            if stored is not None:
                checked[b] = stored
        _drop_shards(folder, set(by_bucket))
        return [out[aid] for aid in ids]

    def _watched(self, trust: KindState, by_bucket: dict[str, list[str]],
                 shards: dict[str, Shard], build: Callable[[list[Any]], Any] | None,
                 artifact_of: Callable[[Any], str]) -> tuple[dict[str, Any], Whole]:
        """(values found, buckets found entire) by the watcher's word (cachewatch.py).

        A stored value holds when its shard is the file the last pass left and nothing of
        its artifact changed since, or when the folder's content is the stored tree id.
        """
        found: dict[str, Any] = {}
        whole: Whole = {}
        pending = trust.pending
        for b, aids in by_bucket.items() if self.snap else ():
            entries, _, stored = shards[b]
            same = stored is not None and trust.shards.get(b) == stored
            if same and pending.isdisjoint(aids) and list(entries) == aids:
                bulk = _rows(entries, aids, build, artifact_of)
                if bulk is not None:
                    whole[b] = bulk
                    continue
            for aid in aids:
                entry = entries.get(aid)
                if entry.__class__ is not list or len(entry) != 4:
                    continue
                if (same and aid not in pending) or self._same_content(aid, entry[0]):
                    value = _restored(entry[3], aid, build, artifact_of)
                    if value is not None:
                        found[aid] = value
        return found, whole

    def _unwatched(self, by_bucket: dict[str, list[str]], shards: dict[str, Shard],
                   build: Callable[[list[Any]], Any] | None,
                   artifact_of: Callable[[Any], str]) -> tuple[dict[str, Any], Whole]:
        """(values found, buckets found entire) by the checks of the module docstring."""
        stats = self.stats
        found: dict[str, Any] = {}
        whole: Whole = {}  # buckets found entire, as stored
        for b, aids in by_bucket.items() if self.snap else ():
            entries, groups, _ = shards[b]
            bulk = self._whole_bucket(b, aids, entries, groups, build, artifact_of)
            if bulk is not None:
                whole[b] = bulk
                continue
            same_group: dict[str, bool] = {}  # group -> its tree in HEAD is the one stored
            for aid in aids:
                entry = entries.get(aid)
                # [tree id of the folder read, tree id == HEAD's?, folder mark, row]
                if entry.__class__ is not list or len(entry) != 4:
                    continue
                mark, st = entry[2], stats[aid]
                if not (mark.__class__ is list and mark == st) \
                        and not self._same_folder(aid, mark, st, entry[0]):
                    continue
                group = group_of(self.folders[aid])
                same = same_group.get(group)
                if same is None:
                    same = same_group[group] = groups.get(group, 0) == self.group_tree(group)
                if not (entry[1] is True and same or entry[0] == self.head_of(aid)):
                    continue
                value = _restored(entry[3], aid, build, artifact_of)
                if value is not None:
                    found[aid] = value
        dirty = self._changed()
        if dirty is None:
            return {}, {}  # git could not say what changed: trust nothing
        for aid in dirty:  # check 2: no path of the artifact differs from HEAD in the index
            b = bucket(aid)  # (or on disk)
            bulk = whole.pop(b, None)
            if bulk is not None:  # the rest of its bucket still holds, one by one
                found.update(zip(by_bucket[b], bulk, strict=True))
            found.pop(aid, None)
        return found, whole

    def _whole_bucket(self, b: str, aids: list[str], entries: dict[str, Any],
                      groups: dict[str, Any], build: Callable[[list[Any]], Any] | None,
                      artifact_of: Callable[[Any], str]) -> list[Any] | None:
        """The values of bucket `b` if every artifact in it is as its shard stored it, else None.

        The checks `values` makes one artifact at a time, made for the whole bucket at once
        (the common case: nothing in it moved since it was stored): the same artifacts, each
        folder's mark unchanged and not racy, each tree id HEAD's when stored and the bucket's
        tree in HEAD unchanged since. Anything else (None): the bucket is checked one by one.
        Without `build`, the stored rows themselves.
        """
        if self.listing.flat or list(entries) != aids or groups != {b: self.group_tree(b)}:
            return None  # (a flat folder's group is the top, not its bucket: one by one)
        stats = self.stats
        if not all(entry.__class__ is list and len(entry) == 4 and entry[1] is True
                   and entry[2].__class__ is list and entry[2] == stats[aid]
                   for aid, entry in entries.items()):
            return None
        return _rows(entries, aids, build, artifact_of)

    def _index(self, kind: Kind) -> int:
        """The kind's place in this pass (one kind per cache folder)."""
        for i, known in enumerate(self.kinds):
            if known.file == kind.file:
                return i
        self.kinds.append(kind)
        return len(self.kinds) - 1

    def _derive(self, index: int, aid: str) -> tuple[Any, list[Any] | None]:
        """The value of kind `index` for `aid`, reading it (for every kind of the pass) once."""
        got = self._derived.get((index, aid))
        if got is not None:
            return got
        raw: dict[str, bytes] = {}
        chain: ArtifactChain | None = None
        error: FactoryError | None = None
        st = self.stats[aid]  # taken before the read
        try:
            chain = self.ledger.read(aid, raw=raw)
        except FactoryError as exc:
            error = exc
        self._content[aid] = content = _content_of(
            str(self.ledger.artifacts_dir / self.folders[aid]), raw, st, self.algo,
            self.racy_after, error is None)
        self._oids[aid] = content[0]
        for i, kind in enumerate(self.kinds):
            if (i, aid) not in self._derived:
                self._derived[(i, aid)] = kind.derive(self.ledger, aid, chain, error)
        return self._derived[(index, aid)]

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


# A shard as loaded: (entries, HEAD's group tree ids when written, its file's stat or None).
Shard = tuple[dict[str, list[Any]], dict[str, Any], "ShardStat | None"]


# Values found for whole buckets: bucket -> its values, in the order of its ids.
Whole = dict[str, list[Any]]
_OID, _ROW = itemgetter(0), itemgetter(3)  # of an entry [tree id, HEAD's?, mark, row]


def _rows(entries: dict[str, Any], aids: list[str], build: Callable[[list[Any]], Any] | None,
          artifact_of: Callable[[Any], str]) -> list[Any] | None:
    """Every stored value of a bucket whose entries are `aids`, in order; None if one is damaged.

    Without `build`, the stored rows themselves. (One pass in C per step: a warm `status`
    restores 10,000 values this way.)
    """
    try:
        if set(map(len, entries.values())) != {4}:
            return None
        rows = list(map(_ROW, entries.values()))
        if build is None:
            return rows
        values = list(map(build, rows))
        return values if list(map(artifact_of, values)) == aids else None
    except (TypeError, ValueError, KeyError, IndexError, AttributeError):
        return None  # a damaged entry: one by one finds it


def _restored(row: Any, aid: str, build: Callable[[list[Any]], Any] | None,
              artifact_of: Callable[[Any], str]) -> Any:
    """One stored value (the row itself without `build`); None if it is damaged."""
    if build is None:
        return row
    try:
        value = build(row)
        return value if artifact_of(value) == aid else None
    except (TypeError, ValueError, KeyError, IndexError, AttributeError):
        return None  # a damaged entry: read the artifact instead


def _content_of(folder: str, raw: dict[str, bytes], st: list[int] | None, algo: str,
                racy_after: int, readable: bool) -> Content:
    """The content id and folder mark of an artifact just read (None where unknown)."""
    if not readable or st is None:
        return None, None
    got = dir_tree_id(folder, raw, algo)
    if got is None:
        return None, None
    oid, names = got
    if max(st[1], st[2]) >= racy_after:
        return oid, {"ls": names}  # changed just now: next time, compare the names
    return oid, st


# -- keeping the cache warm across writes ------------------------------------------------


def keep_fresh(ledger: Ledger, kinds: Callable[[Ledger], Sequence[Kind]]) -> None:
    """After each commit of `ledger`, store the changed artifacts' values of `kinds(ledger)`.

    The committing process has the models loaded and the files in place: deriving one
    artifact's values there costs milliseconds, while a later `status` that finds them
    missing must load the models first. (factcache.keep_warm keeps the summaries and the
    metric facts: what the CLI and the gptme tool keep.)
    """
    def refresh_after(committed: Ledger, artifacts: list[str]) -> None:
        refresh(committed, artifacts, kinds(committed))

    ledger.after_commit.append(refresh_after)


def refresh(ledger: Ledger, artifacts: Iterable[str], kinds: Sequence[Kind]) -> None:
    """Derive and store these artifacts' values of `kinds` now (what a write changed)."""
    wanted = sorted(set(artifacts))
    if not wanted or not kinds:
        return
    before = cachewatch.snapshot(ledger)  # taken before anything is read (hand_over)
    algo = "sha256" if len(ledger.repo.head() or "") == 64 else "sha1"
    racy_after = time.time_ns() - RACY_NS
    folders = {aid: ledger.artifact_folder(aid) for aid in wanted}
    stats = _dir_stats(str(ledger.artifacts_dir), folders)
    rows: dict[str, tuple[Content, list[list[Any] | None]]] = {}
    for aid in wanted:
        raw: dict[str, bytes] = {}
        chain: ArtifactChain | None = None
        error: FactoryError | None = None
        try:
            chain = ledger.read(aid, raw=raw)
        except FactoryError as exc:
            error = exc
        content = _content_of(str(ledger.artifacts_dir / folders[aid]), raw, stats[aid], algo,
                              racy_after, error is None)
        rows[aid] = content, [kind.derive(ledger, aid, chain, error)[1] for kind in kinds]
    rewritten: dict[str, dict[str, tuple[ShardStat, ShardStat]]] = {}
    for i, kind in enumerate(kinds):
        key = _global_key(ledger, kind)
        folder = ledger.runtime_dir / kind.file
        for b in sorted({bucket(aid) for aid in wanted}):
            path = shard_file(folder, b)
            entries, groups, loaded = _load_shard(path, key)
            for aid in (a for a in wanted if bucket(a) == b):
                (oid, mark), derived = rows[aid]
                if derived[i] is None or oid is None or mark is None:
                    entries.pop(aid, None)
                else:  # compared with HEAD's tree by the next pass
                    entries[aid] = [oid, False, mark, derived[i]]
            written = _write_shard(path, {"key": key, "groups": groups, "artifacts": entries})
            if loaded is not None and written is not None:
                rewritten.setdefault(kind.file, {})[b] = (loaded, written)
    cachewatch.hand_over(ledger, before, rewritten)


# -- settings a warm board needs ------------------------------------------------------------


def config_values(ledger: Ledger) -> dict[str, Any]:
    """factory.yaml's scalar settings that `status` shows (cells' stall time, the cell cap).

    Kept by the file's bytes, so a warm `status` with running cells does not load the
    models to read two numbers; an invalid file raises as `Ledger.config` does.
    """
    path = ledger.runtime_dir / CONFIG_VALUES_FILE
    try:
        key = hashlib.sha256((ledger.dir / CONFIG_FILE).read_bytes()).hexdigest()
    except OSError:
        key = ""
    try:
        data = json.loads(path.read_bytes().decode())
        if key and data["key"] == key and isinstance(data["values"], dict):
            values: dict[str, Any] = data["values"]
            return values
    except (OSError, ValueError, KeyError, TypeError):
        pass
    cfg = ledger.config
    values = {"stall_after_s": cfg.stall_after_s, "max_concurrent_cells": cfg.max_concurrent_cells}
    if key:
        _write_json(path, {"key": key, "values": values})
    return values


# -- lines ---------------------------------------------------------------------------------


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


# -- files -----------------------------------------------------------------------------------


def _dir_stats(base: str, folders: dict[str, str]) -> dict[str, list[int] | None]:
    """[inode, mtime, ctime] of each artifact folder under `base` (None if it cannot be stat'ed)."""
    out: dict[str, list[int] | None] = {}
    fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY) if folders else -1
    try:
        stat = os.stat
        for aid, rel in folders.items():
            try:  # relative to the base's fd: a short lookup, not a walk from /
                st = stat(rel, dir_fd=fd, follow_symlinks=False)
                out[aid] = [st.st_ino, st.st_mtime_ns, st.st_ctime_ns]
            except OSError:
                out[aid] = None
    finally:
        if fd >= 0:
            os.close(fd)
    return out


class _Stats(dict[str, "list[int] | None"]):
    """[inode, mtime, ctime] of artifact folders (None if one cannot be stat'ed).

    Each is taken when first asked for: a watched pass looks at the folders that changed only.
    """

    def __init__(self, base: str, folders: dict[str, str]) -> None:
        super().__init__()
        self.base, self.folders = base, folders

    def __missing__(self, aid: str) -> list[int] | None:
        try:
            st = os.stat(os.path.join(self.base, self.folders[aid]), follow_symlinks=False)
            got: list[int] | None = [st.st_ino, st.st_mtime_ns, st.st_ctime_ns]
        except OSError:
            got = None
        self[aid] = got
        return got


def _sorted_entries(path: str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(path) as it:
            return sorted(it, key=lambda e: e.name)
    except OSError:
        return []


def _global_key(ledger: Ledger, kind: Kind) -> str:
    """What every entry depends on: cache format, ledger path, config bytes, the kind's code."""
    parts = [str(CACHE_VERSION), f"py{sys.version_info[0]}.{sys.version_info[1]}", ledger.rel]
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


def _load_shard(path: Path, key: str) -> Shard:
    """(entries, HEAD's group tree ids when written, the file's stat) of a shard written with `key`.

    Empty if missing or damaged (the stat None if missing). Entries are checked one by one
    where they are used: a damaged one is a miss. The stat is of the file read (cachewatch:
    a later writer's file has another).
    """
    try:
        with open(path, "rb") as fh:
            stored = shard_stat(os.fstat(fh.fileno()))
            raw = fh.read()
    except OSError:
        return {}, {}, None
    try:
        data = marshal.loads(raw)
        if data.__class__ is not dict or data["key"] != key \
                or data["artifacts"].__class__ is not dict \
                or data["groups"].__class__ is not dict:
            return {}, {}, stored
        entries: dict[str, list[Any]] = data["artifacts"]  # each entry is checked where used
        groups: dict[str, Any] = data["groups"]
        return entries, groups, stored
    except (ValueError, EOFError, KeyError, TypeError, AttributeError):
        return {}, {}, stored  # damaged: rebuilt from the ledger


def _drop_shards(folder: Path, keep: set[str]) -> None:
    """Remove the shards of buckets that hold no artifact any more (and an older format's)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if name.startswith("."):
            continue  # a writer's temporary file
        stem, _, _ = name.partition(".")
        if stem not in keep or not name.endswith(SHARD_SUFFIX):
            try:
                os.unlink(folder / name)
            except OSError:
                pass


def _write_shard(path: Path, data: dict[str, Any]) -> ShardStat | None:
    """Write a shard; the stat of what was written, or None if it could not be."""
    try:
        return shard_stat(write_bytes(path, marshal.dumps(data)))
    except (OSError, ValueError):
        return None  # a read-only checkout still gets a correct (uncached) status


def _write_json(path: Path, data: dict[str, Any]) -> ShardStat | None:
    """Write a cache file; the stat of what was written, or None if it could not be."""
    try:
        return shard_stat(write_json(path, data, compact=True))
    except OSError:
        return None  # a read-only checkout still gets a correct (uncached) status
