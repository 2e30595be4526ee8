"""What the last clean `verify` saw, and the git checks a verify starts before anything else.

A clean result is kept in factory/.runtime/verify-state.json (outside git): HEAD's commit id
when the run began, a key of the config's bytes and the verifying code, and a snapshot of
the ledger's directories (ledger/dirmarks.py). The next `verify` checks only what is new
relative to it; a commit no longer in HEAD's history, or a changed key, means a full check.

`start` reads that state and sets git to work at once, in the background: its stat check of
every tracked ledger file (`diff-index`), the tree diff since the clean commit, the history
walk for edited records. Those take about as long as loading the record models does, so the
CLI calls `start` before it imports verify.py (and with it pydantic): this module imports
no models.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import GitError
from ..ledger import dirmarks
from ..ledger.runtime import write_json
from ..ledger.store import CONFIG_FILE, Ledger

STATE_FILE = "verify-state.json"
STATE_VERSION = 2
# The modules whose code decides what verify reports: editing one makes the next run full.
_CODE = ("ledger", "line/replay.py", "line/lifecycle.py", "line/verify.py",
         "line/verifystate.py")


@dataclass
class Started:
    """A verify under way: the commit it checks, and git's answers as they come."""

    head: str | None  # HEAD when the run began (what a clean result is remembered by)
    since: str | None  # the last clean verify's commit (None: check everything)
    snapshot: dirmarks.Snapshot | None  # the directories as that run saw them
    notes: list[str] = field(default_factory=list)  # why the run is full, if it is
    # tracked files under the stream folders that differ from HEAD: (path, modified|deleted)
    against: Callable[[], list[tuple[str, str]]] = list
    between: Callable[[], list[str]] = list  # paths that differ between `since` and `head`
    history: Callable[[], dict[str, list[str]]] = dict  # records a later commit modified

    def finish(self) -> None:
        """Wait for every git command still running (a run that stopped early)."""
        for wait in (self.against, self.between, self.history):
            try:
                wait()
            except GitError:
                pass  # the run that asked has its answer or its error already


def start(ledger: Ledger, *, full: bool = False) -> Started:
    """Read the last clean state and start git's checks for the run (full: no state)."""
    notes: list[str] = []
    repo = ledger.repo
    head = repo.head()
    last = None if full or head is None else _last_clean(ledger, head, notes)
    since, snap = last if last is not None else (None, None)
    run = Started(head, since, snap, notes)
    if head is None:
        return run
    folders = ledger.stream_folders
    run.against = repo.start_changed_against_head(folders, head, leave_a_core=True)
    run.history = repo.start_modified_in_history(folders, since, head)
    if since is not None and since != head:
        run.between = repo.start_changed_between(since, head, folders)
    return run


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


def remember(ledger: Ledger, head: str | None, snap: dirmarks.Snapshot) -> None:
    """Keep `head` (HEAD when the clean run began) and the directories as it saw them."""
    if head is None:
        return  # nothing is kept without a commit
    try:
        write_json(ledger.runtime_dir / STATE_FILE,
                   {"key": _key(ledger), "commit": head, "marks": snap.to_json()}, compact=True)
    except OSError:
        pass  # a read-only checkout verifies in full every time


def _last_clean(ledger: Ledger, head: str, notes: list[str]
                ) -> tuple[str, dirmarks.Snapshot] | None:
    """The last clean verify's commit and snapshot, if `head` descends from it (else None)."""
    try:
        data = json.loads((ledger.runtime_dir / STATE_FILE).read_bytes().decode())
        commit, key = data["commit"], data["key"]
        snap = dirmarks.Snapshot.from_json(data.get("marks"))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if not isinstance(commit, str):
        return None
    if key != _key(ledger):
        notes.append("the config or the factory's code changed since the last clean "
                     "verify: checked everything")
        return None
    if snap is None:
        notes.append(f"what the last clean verify saw ({ledger.rel}/.runtime/{STATE_FILE}) "
                     "is damaged: checked everything")
        return None
    if commit != head and not ledger.repo.is_ancestor(commit, head):
        notes.append(f"the last clean verify was at {commit[:12]}, which is no longer in "
                     "HEAD's history (it was rewritten: rebase, reset or amend): checked "
                     "everything")
        return None
    return commit, snap
