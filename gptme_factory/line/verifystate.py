"""What the last clean `verify` saw, and the git checks a verify starts before anything else.

A clean result is kept in factory/.runtime/verify-state.json (outside git): HEAD's commit id
when the run began, a key of the config's bytes and the verifying code, and what the next run
needs to find what changed on disk since: a clock of the filesystem watcher when watchman
runs here (ledger/watcher.py), with the number of artifacts in each shelf, or else a snapshot
of the ledger's directories (ledger/dirmarks.py). The next `verify` checks only what is new
relative to it; a commit no longer in HEAD's history, a changed key, or a watcher that cannot
say what changed since its clock (unless the state also has a snapshot to go by) means a full
check.

`start` reads that state and sets git (and watchman) to work at once, in the background:
without a watcher, git's stat check of every tracked ledger file (`diff-index`); with one, the
watcher's list of changed paths and git's index-against-HEAD check (no file is looked at);
and either way the tree diff since the clean commit and the history walk for edited records.
Those take about as long as loading the record models does, so the CLI calls `start` before it
imports verify.py (and with it pydantic): this module imports no models.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import GitError
from ..ledger import dirmarks, watcher
from ..ledger.runtime import write_json
from ..ledger.store import CONFIG_FILE, Ledger

STATE_FILE = "verify-state.json"
STATE_VERSION = 4
# The modules whose code decides what verify reports: editing one makes the next run full.
_CODE = ("ledger", "line/replay.py", "line/lifecycle.py", "line/verify.py",
         "line/verifystate.py")
Counts = dict[str, int]  # artifact folders per shelf `b/s` (or bucket `b`: shallow ones)


@dataclass
class Started:
    """A verify under way: the commit it checks, and git's answers as they come."""

    head: str | None  # HEAD when the run began (what a clean result is remembered by)
    since: str | None  # the last clean verify's commit (None: check everything)
    snapshot: dirmarks.Snapshot | None  # the directories as that run saw them
    notes: list[str] = field(default_factory=list)  # why the run is full, if it is
    # tracked files under the stream folders that differ from HEAD: (path, modified|deleted);
    # in a watched run, the index's differences only (the files on disk are the run's to check)
    against: Callable[[], list[tuple[str, str]]] = list
    between: Callable[[], list[str]] = list  # paths that differ between `since` and `head`
    history: Callable[[], dict[str, list[tuple[str, str]]]] = dict  # ... a commit modified/deleted
    counts: Counts | None = None  # the last clean run's artifacts per shelf (None: not kept)
    # what changed on disk since the last clean run's clock (a watched run; None: cannot say)
    watched: Callable[[], watcher.Changed | None] | None = None
    clock: Callable[[], watcher.Watch | None] = lambda: None  # the watcher's clock at the start

    def finish(self) -> None:
        """Wait for every git command still running (a run that stopped early)."""
        for wait in (self.against, self.between, self.history):
            try:
                wait()
            except GitError:
                pass  # the run that asked has its answer or its error already

    def unwatched(self, ledger: Ledger) -> None:
        """The watcher cannot say what changed: go by the snapshot, or check everything.

        With a snapshot in the state (a full run keeps one), git looks at every file as it
        does without a watcher; a note says which it is.
        """
        self.finish()
        self.watched, self.between = None, list  # (the counts are the snapshot's too)
        lost = ("the file watcher (watchman) cannot say what changed since the last clean "
                "verify (it restarted or lost track): ")
        if self.snapshot is None:
            self.since = None
            self.notes.append(lost + "checked everything")
        else:
            self.notes.append(lost + "looked at every file instead")
        _start_checks(ledger, self)


def start(ledger: Ledger, *, full: bool = False) -> Started:
    """Read the last clean state and start git's checks for the run (full: no state)."""
    notes: list[str] = []
    head = ledger.repo.head()
    last = None if full or head is None else _last_clean(ledger, head, notes)
    run = Started(head, None, None, notes)
    if last is not None:
        run.since, run.snapshot, watch, run.counts = last
        if watch is not None and run.counts is not None:
            if watcher.available():
                run.watched = watcher.start_since(watch, ledger.stream_folders)
            elif run.snapshot is None:
                notes.append("the last clean verify relied on the file watcher (watchman), "
                             "which is not available now: checked everything")
                run.since = None
    if head is not None:
        _start_checks(ledger, run)
    return run


def _start_checks(ledger: Ledger, run: Started) -> None:
    repo, folders, head = ledger.repo, ledger.stream_folders, run.head
    assert head is not None
    if run.watched is not None:
        run.against = repo.start_staged_against_head(folders, head)
    else:
        # A full run parses every record meanwhile: git leaves it a core. An incremental one
        # has little to do but wait for git's lstat of every file: git gets every core.
        run.against = repo.start_changed_against_head(folders, head,
                                                      leave_a_core=run.since is None)
        if watcher.available():
            run.clock = watcher.start_now(str(repo.root), folders[0])  # for the next run
    run.history = repo.start_changed_in_history(folders, run.since, head)
    if run.since is not None and run.since != head:
        run.between = repo.start_changed_between(run.since, head, folders)


def _key(ledger: Ledger) -> str:
    parts = [str(STATE_VERSION), ledger.rel]
    try:
        parts.append(hashlib.sha256((ledger.dir / CONFIG_FILE).read_bytes()).hexdigest())
    except OSError:
        parts.append("-")
    here = Path(__file__).parent.parent
    for name in _CODE:
        for path in sorted((here / name).glob("*.py")) if (here / name).is_dir() else [here / name]:
            try:
                st = path.stat()
                parts.append(f"{path.name}:{st.st_size}:{st.st_mtime_ns}")
            except OSError:
                parts.append(f"{path.name}:-")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def remember(ledger: Ledger, head: str | None, snap: dirmarks.Snapshot | None,
             watch: watcher.Watch | None = None, counts: Counts | None = None) -> None:
    """Keep `head` (HEAD when the clean run began) and what the run saw on disk.

    `snap`: the directories as it saw them; `watch`: the watcher's clock when it began; at
    least one of the two. `counts`: the artifacts per shelf it found (a watch needs them).
    """
    if head is None:
        return  # nothing is kept without a commit
    kept = watch if counts is not None else None  # a clock is of no use without the counts
    try:
        write_json(ledger.runtime_dir / STATE_FILE,
                   {"key": _key(ledger), "commit": head,
                    "marks": snap.to_json() if snap is not None else None,
                    "watch": kept.to_json() if kept is not None else None,
                    "counts": counts}, compact=True)
    except OSError:
        pass  # a read-only checkout verifies in full every time


def _last_clean(ledger: Ledger, head: str, notes: list[str]
                ) -> tuple[str, dirmarks.Snapshot | None, watcher.Watch | None,
                           Counts | None] | None:
    """The last clean verify's commit, snapshot, watch and counts, if `head` descends from it.

    None if there is none to go from (a note says why, unless there was no state at all).
    """
    try:
        data = json.loads((ledger.runtime_dir / STATE_FILE).read_bytes().decode())
        commit, key = data["commit"], data["key"]
        marks, seen, counts = data.get("marks"), data.get("watch"), data.get("counts")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if not isinstance(commit, str):
        return None
    if key != _key(ledger):
        notes.append("the config or the factory's code changed since the last clean "
                     "verify: checked everything")
        return None
    snap = None if marks is None else dirmarks.Snapshot.from_json(marks)
    watch = None if seen is None else watcher.Watch.from_json(seen)
    if not (isinstance(counts, dict) and all(isinstance(k, str) and v.__class__ is int
                                             for k, v in counts.items())):
        counts = None
    if (marks is not None and snap is None) or (seen is not None and (watch is None
                                                                      or counts is None)) \
            or (snap is None and watch is None):
        notes.append(f"what the last clean verify saw ({ledger.rel}/.runtime/{STATE_FILE}) "
                     "is damaged: checked everything")
        return None
    if commit != head and not ledger.repo.is_ancestor(commit, head):
        notes.append(f"the last clean verify was at {commit[:12]}, which is no longer in "
                     "HEAD's history (it was rewritten: rebase, reset or amend): checked "
                     "everything")
        return None
    return commit, snap, watch, counts
