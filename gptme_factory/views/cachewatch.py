"""What the file watcher saw change since the status cache was last checked.

Without a watcher, a pass of the status cache (statuscache.Pass) `stat`s every directory of
artifact folders (listingcache.py) and every artifact folder, and has git `lstat` every ledger
file (`diff-index`), because an edit in place shows nowhere else. With watchman running (ledger/watcher.py) it asks instead which paths
under factory/artifacts changed since a clock, and looks at those alone. What it needs for
that is kept in factory/.runtime/status-watch.marshal (gitignored; Python's `marshal` format,
like the shards: only this code reads it, and a file that does not load is no state):

- the watcher's clock, read when the last pass began, before it listed or read anything;
- the listing of artifact folders (ledger/layout.Listing) as that pass saw it, so the next
  lists only the shelves where a folder came or went;
- for each kind of cached value (a folder of shards): the stat (inode, mtime, size) of each
  shard file as that pass left it, every entry in it checked then; and the ids that changed
  since without a pass of that kind looking ("pending": a `metrics` pass must not use up what
  only `status` was told, and the other way round).

A pass then takes a stored value as it is when its shard is the same file and nothing of its
artifact changed since the clock; for an artifact that changed, when the folder's content,
hashed from disk, is the stored tree id. A shard another process rewrote is checked the same
way, artifact by artifact — except one a writer keeping the cache warm hands over
(`hand_over`): it loaded the very shard the state vouches for, under the clock the state
still holds, and added only values of the artifacts it had just written and read after that
clock, which the watcher reports as changed anyway. Anything the watcher cannot vouch
for — no state yet, a clock watchman no longer knows (it restarted, or aged out what it had
seen), a kind never checked — is checked the way the cache checks without a watcher, and the
state is written again from there.
"""

from __future__ import annotations

import marshal
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..ledger import watcher
from ..ledger.layout import Listing, touched
from ..ledger.runtime import write_bytes

if TYPE_CHECKING:
    from ..ledger.store import Ledger

STATE_FILE = "status-watch.marshal"
OLD_STATE_FILE = "status-watch.json"  # what version 1 wrote
VERSION = 2
ShardStat = list[int]  # [inode, mtime_ns, size] of a shard file


SHARD_SUFFIX = ".marshal"  # the status cache's shard files (statuscache.py)


def shard_file(folder: Path, bucket: str) -> Path:
    """The shard file of a bucket in a kind's cache folder."""
    return folder / f"{bucket}{SHARD_SUFFIX}"


def shard_stat(st: os.stat_result) -> ShardStat:
    """What identifies a version of a shard file (a rewrite is a rename: a new inode)."""
    return [st.st_ino, st.st_mtime_ns, st.st_size]


@dataclass
class KindState:
    """One kind's shards as the last pass of that kind left them, and what changed since."""

    shards: dict[str, ShardStat] = field(default_factory=dict)  # bucket -> its shard's stat
    pending: set[str] = field(default_factory=set)  # ids changed since that pass


@dataclass
class State:
    """The last pass's clock and listing, and each kind's shards."""

    watch: watcher.Watch
    listing: Listing
    kinds: dict[str, KindState]
    base: str  # the repo-relative artifacts folder it is about

    def to_json(self) -> dict[str, Any]:
        """The state as plain JSON data (`load` reads it back)."""
        return {"version": VERSION, "base": self.base, "watch": self.watch.to_json(),
                "listing": self.listing.to_json(),
                "kinds": {k: {"shards": v.shards, "pending": sorted(v.pending)}
                          for k, v in sorted(self.kinds.items())}}


@dataclass
class Start:
    """What the watcher said when a pass began."""

    clock: watcher.Watch | None  # to keep for the next pass (None: no watcher here)
    state: State | None = None  # the last pass's, when the watcher could say what changed since
    touched: set[str] = field(default_factory=set)  # ids of artifacts that changed since
    listing: Listing | None = None  # the artifact folders now (with `state`)

    def kind(self, name: str) -> KindState | None:
        """A kind's state with what changed since folded in; None: check it without the watcher."""
        got = self.state.kinds.get(name) if self.state else None
        return None if got is None else KindState(got.shards, got.pending | self.touched)


def load(ledger: Ledger) -> State | None:
    """The state the last pass kept, or None (none, damaged, or about another folder)."""
    base = f"{ledger.rel}/artifacts"
    try:
        data = marshal.loads((ledger.runtime_dir / STATE_FILE).read_bytes())
        watch = watcher.Watch.from_json(data["watch"])
        if data["version"] != VERSION or data["base"] != base or watch is None:
            return None
        kinds = {str(name): KindState({str(b): [int(x) for x in st] for b, st in
                                       k["shards"].items()}, {str(a) for a in k["pending"]})
                 for name, k in data["kinds"].items()}
        return State(watch, Listing.from_json(data["listing"]), kinds, base)
    except (OSError, ValueError, EOFError, KeyError, TypeError, AttributeError):
        return None


def start(ledger: Ledger) -> Start:
    """Ask the watcher what changed since the last pass (before anything is listed or read).

    With a state and a watcher that can say: the ids touched since, and the listing with the
    shelves where something came or went listed again. Otherwise only a clock to keep (None
    when no watcher runs here), and the pass checks everything itself.
    """
    if not watcher.available():
        return Start(None)
    base = f"{ledger.rel}/artifacts"
    state = load(ledger)
    seen = watcher.since(state.watch, [base]) if state is not None else None
    if state is None or seen is None:
        return Start(watcher.now(str(ledger.repo.root), base))
    cut = len(base) + 1
    ids, reread, _ = touched(p[cut:] for p in seen.paths if p.startswith(base + "/"))
    listing = state.listing
    if reread:
        listing = listing.merged(ledger.artifact_listing(reread), reread)
    return Start(seen.watch, state, ids, listing)


def save(ledger: Ledger, begun: Start, listing: Listing,
         checked: dict[str, dict[str, ShardStat]]) -> None:
    """Keep the state for the next pass: `checked` holds each kind this pass checked.

    A shard whose file changed since this pass left it (another process wrote it) is not
    kept: the next pass checks its artifacts one by one. Kinds this pass did not check keep
    their shards and add what changed to their pending ids. Nothing is written when nothing
    changed: the last state still holds.
    """
    if begun.clock is None:
        return
    old = begun.state
    kinds: dict[str, KindState] = {}
    for name, recorded in checked.items():
        folder = ledger.runtime_dir / name
        shards = {}
        for b, st in recorded.items():
            try:
                if shard_stat(os.stat(shard_file(folder, b))) == st:
                    shards[b] = st
            except OSError:
                pass
        kinds[name] = KindState(shards)
    for name, was in old.kinds.items() if old else ():
        if name not in kinds:
            kinds[name] = KindState(was.shards, was.pending | begun.touched)
    if old is not None and not begun.touched and listing is begun.listing and kinds == old.kinds:
        return
    state = State(begun.clock, listing, kinds, f"{ledger.rel}/artifacts")
    try:
        write_bytes(ledger.runtime_dir / STATE_FILE, marshal.dumps(state.to_json()))
        (ledger.runtime_dir / OLD_STATE_FILE).unlink(missing_ok=True)
    except OSError:
        pass  # a read-only checkout: the next pass checks everything again


def snapshot(ledger: Ledger) -> dict[str, Any] | None:
    """The state as stored now, unparsed (what `hand_over` compares with); None if there is none.

    A writer takes it before it reads what it wrote, so the clock in it is older than that read.
    """
    try:
        data = marshal.loads((ledger.runtime_dir / STATE_FILE).read_bytes())
    except (OSError, ValueError, EOFError, TypeError):
        return None
    return data if data.__class__ is dict and data.get("version") == VERSION else None


def hand_over(ledger: Ledger, before: dict[str, Any] | None,
              rewritten: dict[str, dict[str, tuple[ShardStat, ShardStat]]]) -> bool:
    """Let the next pass take shards a writer rewrote as if that pass had left them.

    `rewritten` maps a kind's folder to {bucket: (stat of the shard the writer loaded, stat of
    the one it wrote)}. A shard is handed over when the state still holds the clock of
    `before` (no pass kept a state since the writer took it) and vouches for the very file the
    writer loaded: every other value in it holds by that state's word, and the writer's own
    were derived from folders read after that clock, which the watcher names as changed, so
    the next pass hashes those folders and nothing else of the bucket. Anything else is left
    as it is, and the next pass checks the bucket one by one. A pass that keeps its state at
    the same moment wins or loses the race either way soundly: a state with the older clock
    only reports more as changed. True if the state was written.
    """
    if before is None or not rewritten:
        return False
    now = snapshot(ledger)
    if now is None or now.get("watch") != before.get("watch"):
        return False
    changed = False
    try:
        kinds = now["kinds"]
        for name, shards in rewritten.items():
            kept = kinds.get(name)
            if kept is None:
                continue
            for b, (loaded, written) in shards.items():
                if kept["shards"].get(b) == loaded:
                    kept["shards"][b] = written
                    changed = True
    except (KeyError, TypeError, AttributeError):
        return False  # a state of another shape: the next pass checks everything
    if not changed:
        return False
    try:
        write_bytes(ledger.runtime_dir / STATE_FILE, marshal.dumps(now))
    except (OSError, ValueError):
        return False
    return True
