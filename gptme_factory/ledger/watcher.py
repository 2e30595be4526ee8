"""What a filesystem watcher saw change, so `verify` need not look at every file.

The one module that talks to watchman (https://facebook.github.io/watchman/; Debian and
Ubuntu: `apt-get install watchman`), the daemon git's own fsmonitor hook uses. Watchman
watches a directory tree with inotify and answers "which paths changed since clock C" from
memory: a query syncs first (it writes a cookie file and waits to see it come back), so every
change made before the query is in the answer. Without a watcher, seeing a record edited in
place means an `lstat` of every tracked file (git's `diff-index`, ~93,000 files at 10,000
artifacts); with one, the cost is that of what changed.

Used only when the `watchman` binary is on PATH and $GPTME_FACTORY_WATCHMAN is not `0`;
anything that goes wrong (no daemon, a failed command, a clock from a daemon that restarted
or lost track, which watchman calls a fresh instance, a folder a watchman config ignores —
`now` makes a probe file to see) answers None, and the caller falls back to looking at
everything. Plain subprocess and json, no git.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")
ENV = "GPTME_FACTORY_WATCHMAN"  # "0": never ask watchman
TIMEOUT_S = 60.0  # a first watch of a big tree crawls it (~5 s at 93,000 files)
QUERY_TIMEOUT_S = 10.0  # a query of a watched tree answers from memory (~15 ms)


@dataclass(frozen=True)
class Watch:
    """A watched tree: watchman's root, the repo's path within it, and a clock there."""

    root: str  # the directory watchman watches (the repo, or a directory above it)
    rel: str  # the repo's path relative to `root` ("" when it is the root)
    clock: str  # an instant in that watch's history (what the next query starts from)

    def to_json(self) -> dict[str, str]:
        """The watch as plain JSON data (`from_json` reads it back)."""
        return {"root": self.root, "rel": self.rel, "clock": self.clock}

    @classmethod
    def from_json(cls, data: object) -> Watch | None:
        """The watch in `data` (as `to_json` wrote it), or None if it is not one."""
        if not isinstance(data, dict):
            return None
        root, rel, clock = data.get("root"), data.get("rel"), data.get("clock")
        if not (isinstance(root, str) and isinstance(rel, str) and isinstance(clock, str)):
            return None
        return cls(root, rel, clock)


@dataclass(frozen=True)
class Changed:
    """What changed since a clock: repo-relative paths (files and directories, there or gone)."""

    paths: list[str]
    watch: Watch  # the same watch, at the clock of this answer


def available() -> bool:
    """True if watchman may be asked (on PATH, and not turned off by $GPTME_FACTORY_WATCHMAN)."""
    return os.environ.get(ENV, "") != "0" and shutil.which("watchman") is not None


def _ask(command: list[object], timeout: float = TIMEOUT_S) -> dict[str, object] | None:
    """One watchman command's answer, or None (no watchman, an error, no answer in time)."""
    try:
        proc = subprocess.run(["watchman", "-j", "--no-pretty"], input=json.dumps(command).encode(),
                              capture_output=True, timeout=timeout, check=False)
        answer = json.loads(proc.stdout.decode("utf-8", "surrogateescape"))
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    if proc.returncode != 0 or not isinstance(answer, dict) or "error" in answer:
        return None
    return answer


def _in_background(work: Callable[[], T]) -> Callable[[], T]:
    """Run `work` on a thread now; the function returned waits for its answer."""
    box: list[T] = []

    def run() -> None:
        box.append(work())

    thread = threading.Thread(target=run, name="watchman", daemon=True)
    thread.start()

    def wait() -> T:
        thread.join()
        return box[0]

    return wait


def now(repo: str, probe: str) -> Watch | None:
    """Watch `repo` (a no-op if watched already) and read its clock, synced to this instant.

    `probe` is a folder of `repo` (repo-relative) whose changes must be seen: a file is made
    there, and unless the watcher reports it (a watchman config may ignore directories) the
    answer is None. The clock returned is read after the file is removed again: later than
    the probe, earlier than anything the caller reads next.
    """
    watched = _ask(["watch-project", repo])
    if watched is None or not isinstance(watched.get("watch"), str):
        return None
    root = str(watched["watch"])
    rel = watched.get("relative_path")
    rel = rel if isinstance(rel, str) else ""
    before = _clock(root)
    if before is None:
        return None
    name = f"{probe}/.watch-probe.{os.getpid()}.{threading.get_ident()}"
    try:
        with open(os.path.join(repo, name), "x"):
            pass
    except OSError:
        return None
    try:
        seen = since(Watch(root, rel, before), [probe])
    finally:
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(repo, name))
    after = _clock(root)
    if seen is None or name not in seen.paths or after is None:
        return None
    return Watch(root, rel, after)


def _clock(root: str) -> str | None:
    """The watch's clock now, synced (every change made before it is behind it)."""
    answer = _ask(["clock", root, {"sync_timeout": int(TIMEOUT_S * 1000)}])
    clock = None if answer is None else answer.get("clock")
    return clock if isinstance(clock, str) else None


def start_now(repo: str, probe: str) -> Callable[[], Watch | None]:
    """Start `now` in the background; the function returned waits for it."""
    return _in_background(lambda: now(repo, probe))


def since(watch: Watch, under: Sequence[str]) -> Changed | None:
    """The paths under `under` (repo-relative folders) changed since `watch.clock`.

    None when watchman cannot say: it is not running any more, the watch was dropped, or the
    clock is from an earlier instance of the daemon or from before it lost track
    (`is_fresh_instance`) — then anything may have changed.
    """
    query: dict[str, object] = {
        "since": watch.clock, "fields": ["name"], "empty_on_fresh_instance": True,
        "sync_timeout": int(QUERY_TIMEOUT_S * 1000),
        "expression": ["anyof", *(t for f in under for t in (["dirname", f],
                                                             ["name", f, "wholename"]))],
    }
    if watch.rel:
        query["relative_root"] = watch.rel
    answer = _ask(["query", watch.root, query], QUERY_TIMEOUT_S + 5)
    if answer is None or answer.get("is_fresh_instance") is not False:
        return None
    files, clock = answer.get("files"), answer.get("clock")
    if not isinstance(files, list) or not isinstance(clock, str):
        return None
    paths = [f for f in files if isinstance(f, str)]
    if len(paths) != len(files):
        return None  # a name watchman could not give as text: cannot say what it was
    return Changed(paths, Watch(watch.root, watch.rel, clock))


def start_since(watch: Watch, under: Sequence[str]) -> Callable[[], Changed | None]:
    """Start `since` in the background; the function returned waits for it."""
    return _in_background(lambda: since(watch, under))

