"""The one module that talks to git.

Ledger commits go through plumbing, never through the user's index: new blobs are hashed
from temporary files kept in the git directory (so a killed writer never leaves a stray file
or a half-made directory in the working tree), only the trees on the changed paths are
rebuilt — read through one `cat-file --batch`, edited in Python (git's tree format; in a big
directory the one changed entry is spliced in place) and written with one `hash-object -t
tree`, whose ids must match ours — the commit is made with `commit-tree`, and `HEAD` moves
with `update-ref NEW OLD`, a compare-and-swap. Only then are the files renamed into place and
just those paths refreshed in the real index, so the user's other staged and unstaged work is
untouched. Six git processes per commit, however deep the paths; the cost grows with the
changed directories (and the index, which `update-index` rewrites), not the number of commits.

For the status cache, `start_tree_at_head`, `tree_reader`, `start_changed_paths` and
`dir_tree_id` give content keys: git tree ids (HEAD's, and a directory's as it is on disk), and
the paths whose index or working-tree state differs from HEAD. `log_trailer` finds an artifact's
commits by their trailers; `start_changed_in_history`, `changed_between`, `untracked`,
`start_staged_against_head` and `worktree_against` serve `verify`.

Writers are serialized by a `flock` on a file in the git directory; a small journal, written
before `HEAD` moves, makes a writer killed half-way recoverable: the next writer (or the next
`Ledger.open`) finishes its work if the commit landed and discards it otherwise, so an event
is either fully committed (in HEAD, the working tree and the index) or absent.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import random
import re
import shutil
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..errors import GitError, LedgerBusy, LedgerConflict, NotAGitRepo, RemoteUnreachable

ZERO_OID = "0" * 40
_JOURNAL = "factory-pending.json"
_SYNC_JOURNAL = "factory-sync.json"
_LOCKFILE = "factory.lock"
_TMPDIR = "factory-tmp"
LOCK_TIMEOUT_S = 120.0
INDEX_LOCK_WAIT_S = 30.0
# An index this large is written split (`_split_index`): ~20 MB at 10,000 artifacts.
SPLIT_INDEX_AT = 8 << 20


def lock_timeout() -> float:
    """How long a writer waits for the ledger lock: $GPTME_FACTORY_LOCK_TIMEOUT or 120 s."""
    try:
        value = float(os.environ.get("GPTME_FACTORY_LOCK_TIMEOUT", LOCK_TIMEOUT_S))
    except ValueError:
        return LOCK_TIMEOUT_S
    return value if value > 0 else LOCK_TIMEOUT_S


def _acquire(path: Path, timeout: float) -> int:
    """An fd of `path` holding an exclusive flock, or LedgerBusy after `timeout` seconds.

    Uncontended, one non-blocking flock. Contended, a helper thread blocks in flock (so the
    kernel wakes it the moment the lock is free, no polling) while this one waits at most
    `timeout`; a waiter that gives up hands the fd to the thread, which releases the lock
    as soon as it gets it and closes the fd (never closed under a thread blocked on it).
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fd
    except BlockingIOError:
        pass
    except BaseException:
        os.close(fd)
        raise
    got = threading.Event()
    guard = threading.Lock()
    gave_up = False

    def wait() -> None:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with guard:
            if gave_up:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
                return
            got.set()

    threading.Thread(target=wait, name="factory-lock", daemon=True).start()
    if got.wait(timeout):
        return fd
    with guard:
        if got.is_set():
            return fd
        gave_up = True
    holder = _read_holder(path)
    raise LedgerBusy(
        f"the ledger is busy: another writer{holder} has held its lock for over {timeout:g} s; "
        "nothing was recorded: retry later, or stop that process if it is stuck "
        "(GPTME_FACTORY_LOCK_TIMEOUT sets the wait)"
    )


def _note_holder(fd: int, what: str) -> None:
    """Write who holds the lock into the lock file (read only by a waiter that gives up)."""
    data = json.dumps({"pid": os.getpid(), "what": what or " ".join(sys.argv[:3])[:200],
                       "since": time.time()}).encode()
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)


def _read_holder(path: Path) -> str:
    try:
        data = json.loads(path.read_text("utf-8"))
        since = time.strftime("%H:%M:%S", time.localtime(float(data["since"])))
        return f" (pid {int(data['pid'])}, {str(data.get('what', ''))[:200]}, since {since})"
    except (OSError, ValueError, KeyError, TypeError):
        return ""


def _stderr(proc: subprocess.CompletedProcess[bytes]) -> str:
    return proc.stderr.decode("utf-8", "replace").strip() or f"exit {proc.returncode}"


@dataclass(frozen=True)
class LogEntry:
    """One commit touching a path, as `log` shows it."""

    commit: str
    time: str
    author: str
    subject: str
    trailers: dict[str, list[str]]  # a commit of several events repeats Factory-Event etc.


def _git(
    cwd: Path, *args: str, input: bytes | None = None, check: bool = True,
    timeout_s: float | None = None,
) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ)
    env.setdefault("GIT_TERMINAL_PROMPT", "0")
    try:
        proc = subprocess.run(
            ["git", *args], cwd=cwd, input=input, capture_output=True, env=env, check=False,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired:
        raise GitError(f"git {args[0]} did not finish within {timeout_s:g} s (a slow or "
                       "unreachable remote?)") from None
    if check and proc.returncode != 0:
        msg = proc.stderr.decode("utf-8", "replace").strip() or f"exit {proc.returncode}"
        hint = ""
        if "Please tell me who you are" in msg or "empty ident" in msg:
            hint = " (set an identity: git config user.name NAME; git config user.email EMAIL)"
        raise GitError(f"git {args[0]} failed: {msg}{hint}")
    return proc


_Entries = dict[bytes, tuple[bytes, bytes]]


class _TreeEdit:
    """A tree being edited in memory: folders taken out and put in at any depth (commit_moves)."""

    def __init__(self, entries: _Entries, read: Callable[[bytes], _Entries]) -> None:
        self.entries = dict(entries)
        self.read = read
        self.subs: dict[bytes, _TreeEdit] = {}  # the folders edited below this one

    def _sub(self, name: bytes, where: str, create: bool) -> _TreeEdit:
        sub = self.subs.get(name)
        if sub is None:
            have = self.entries.get(name)
            if have is not None and have[0] != b"40000":
                raise GitError(f"{where} is a file, not a folder")
            if have is None and not create:
                raise GitError(f"{where} is not a committed folder: commit it first")
            sub = self.subs[name] = _TreeEdit(self.read(have[1]) if have else {}, self.read)
        return sub

    def pop(self, rel: str, base: str) -> bytes:
        """Take folder `rel` out; its tree id."""
        *dirs, leaf = [p.encode("utf-8", "surrogateescape") for p in rel.split("/")]
        node, where = self, base
        for part in dirs:
            where = f"{where}/{part.decode('utf-8', 'surrogateescape')}"
            node = node._sub(part, where, create=False)
        entry = node.entries.pop(leaf, None)
        if entry is None or entry[0] != b"40000" or leaf in node.subs:
            raise GitError(f"{base}/{rel} is not a committed folder: commit it first")
        return entry[1]

    def put(self, rel: str, oid: bytes, join: Callable[[bytes, bytes, str], bytes],
            base: str) -> None:
        """Put tree `oid` in as folder `rel`, joined with one already there."""
        *dirs, leaf = [p.encode("utf-8", "surrogateescape") for p in rel.split("/")]
        node, where = self, base
        for part in dirs:
            where = f"{where}/{part.decode('utf-8', 'surrogateescape')}"
            node = node._sub(part, where, create=True)
        if leaf in node.subs:
            raise GitError(f"refusing to move a folder onto {base}/{rel}: it has folders "
                           "moving in and out of it")
        there = node.entries.get(leaf)
        if there is not None and there[0] != b"40000":
            raise GitError(f"{base}/{rel} is a file, not a folder")
        node.entries[leaf] = (b"40000", join(there[1], oid, f"{base}/{rel}")
                              if there is not None else oid)

    def write(self, put: Callable[[_Entries], bytes]) -> bytes:
        """Store this tree and the edited ones below it (a folder left empty goes); its id."""
        for name, sub in self.subs.items():
            oid = sub.write(put)
            if sub.entries:
                self.entries[name] = (b"40000", oid)
            else:
                self.entries.pop(name, None)
        return put(self.entries)


def _rmdir_if_empty(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass  # gone already, or leftovers of a dead writer that the next recovery sweeps


_REVERTS = "This reverts commit "
_REVERT_RE = re.compile(r"This reverts commit ([0-9a-f]{40,64})")
# What a remote says when another push updated the branch between its checks and its write.
_RACE_RE = re.compile(r"failed to update ref|cannot lock ref|incorrect old value|failed to lock")
_LS_TREE_RE = re.compile(r"[0-7]+ [a-z]+ ([0-9a-f]+)\t([^\0]*)\0")


def _parse_trailers(text: str) -> dict[str, list[str]]:
    trailers: dict[str, list[str]] = {}
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep and value.strip():
            trailers.setdefault(name.strip(), []).append(value.strip())
    return trailers


def _blob(data: bytes, algo: str) -> hashlib._Hash:
    """Git's hash of a blob of `data` (`algo`: the repo's object format)."""
    blob = hashlib.new(algo, b"blob %d\0" % len(data))
    blob.update(data)
    return blob


def blob_id_of(data: bytes, algo: str = "sha1") -> str:
    """The git id of a blob of `data` (`algo`: the repo's object format), without git."""
    return _blob(data, algo).hexdigest()


def tree_id(files: Mapping[str, bytes], algo: str = "sha1") -> str:
    """The git id of a tree that holds exactly `files` (name -> bytes) as regular files.

    Computed in Python, without git: `algo` is the repo's object format (`sha1`, or
    `sha256` for 64-character ids). A content key: equal ids mean equal names and bytes.
    """
    body = bytearray()
    # Git orders tree entries by name bytes (a subtree sorts as if its name ended in "/";
    # there are none here).
    for name in sorted(files, key=lambda n: n.encode("utf-8", "surrogateescape")):
        body += (b"100644 " + name.encode("utf-8", "surrogateescape") + b"\0"
                 + _blob(files[name], algo).digest())
    tree = hashlib.new(algo, b"tree %d\0" % len(body))
    tree.update(body)
    return tree.hexdigest()


def dir_tree_id(path: str, known: Mapping[str, bytes], algo: str = "sha1"
                ) -> tuple[str, list[str]] | None:
    """The git id of directory `path` as it is on disk, and the names of its entries.

    What `git add` of the directory would give: regular files (100644, or 100755 when
    executable) and subdirectories, recursively; empty directories are left out, as git does.
    `known` holds the bytes of top-level files already read (name -> bytes), so a caller
    that parsed them is not made to read them twice. None when git could not store the
    directory as it is (a symlink, a special file) or an entry vanished meanwhile.
    """
    try:
        with os.scandir(path) as it:
            entries = list(it)
    except OSError:
        return None
    body: list[tuple[bytes, bytes]] = []  # (sort key, entry)
    names: list[str] = []
    for entry in entries:
        name = entry.name
        names.append(name)
        raw_name = name.encode("utf-8", "surrogateescape")
        try:
            if entry.is_dir(follow_symlinks=False):
                sub = dir_tree_id(entry.path, {}, algo)
                if sub is None:
                    return None
                if sub[0] != hashlib.new(algo, b"tree 0\0").hexdigest():  # git keeps no empty dir
                    body.append((raw_name + b"/", b"40000 " + raw_name + b"\0"
                                 + bytes.fromhex(sub[0])))
                continue
            if entry.is_symlink() or not entry.is_file(follow_symlinks=False):
                return None
            data = known.get(name)
            if data is None:
                with open(entry.path, "rb") as fh:
                    data = fh.read()
            mode = b"100755" if entry.stat(follow_symlinks=False).st_mode & 0o100 else b"100644"
        except OSError:
            return None
        body.append((raw_name, mode + b" " + raw_name + b"\0" + _blob(data, algo).digest()))
    content = b"".join(e for _, e in sorted(body))
    tree = hashlib.new(algo, b"tree %d\0" % len(content))
    tree.update(content)
    return tree.hexdigest(), sorted(names)


class TreeReader:
    """Tree objects read through one running `git cat-file --batch` (name -> object id)."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._proc: subprocess.Popen[bytes] | None = None
        self._seen: dict[str, dict[str, str] | None] = {}

    def entries(self, oid: str) -> dict[str, str] | None:
        """Entry name -> object id of tree `oid` (None if it is not a tree here)."""
        if oid in self._seen:
            return self._seen[oid]
        if self._proc is None:
            self._proc = subprocess.Popen(
                ["git", "cat-file", "--batch"], cwd=self._root, stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=_git_env(),
            )
        obj = _cat(self._proc, [oid])[0]
        out: dict[str, str] | None = None
        if obj is not None and obj[1] == "tree":
            out = {n.decode("utf-8", "surrogateescape"): o.hex()
                   for _, n, o in _tree_entries(obj[2], len(oid) // 2)}
        self._seen[oid] = out
        return out

    def close(self) -> None:
        """End the git process (if one was started)."""
        if self._proc is not None:
            self._proc.communicate()
            self._proc = None


def _check_relpath(rel: str) -> None:
    parts = rel.split("/")
    if (
        not rel
        or rel.startswith("/")
        or "\0" in rel
        or "\\" in rel
        or any(p in ("", ".", "..") or p.lower() == ".git" for p in parts)
    ):
        raise GitError(f"refusing to commit {rel!r}: not a plain path inside the repo")


# For a git process that reads the whole history once: small pack windows, a small delta cache.
_LEAN_READ = ("core.packedGitLimit=64m", "core.packedGitWindowSize=8m",
              "core.deltaBaseCacheLimit=16m")


def _usable_cores() -> int:
    """The processors this process may run on (its affinity, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def _paths(out: bytes) -> list[str]:
    """The paths of git's NUL-separated (`-z`) output."""
    return [p.decode("utf-8", "surrogateescape") for p in out.split(b"\0") if p]


def _name_status(out: bytes) -> list[tuple[str, str]]:
    """(path, "modified"|"deleted") of `diff-index --name-status -z` output (others dropped).

    A type change (`T`: a file became a symlink) is a modification too.
    """
    fields = out.decode("utf-8", "surrogateescape").split("\0")
    words = {"M": "modified", "T": "modified", "D": "deleted"}
    return [(path, words[code]) for code, path
            in zip(fields[0::2], fields[1::2], strict=False) if code in words]


def _git_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("GIT_TERMINAL_PROMPT", "0")
    return env


def _cat(proc: subprocess.Popen[bytes], names: list[str]) -> list[tuple[str, str, bytes] | None]:
    """Objects (id, type, content) from a running `git cat-file --batch`; None if missing."""
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(b"".join(n.encode() + b"\n" for n in names))
    proc.stdin.flush()
    out: list[tuple[str, str, bytes] | None] = []
    for _ in names:
        header = proc.stdout.readline().split()
        if len(header) != 3:  # "<name> missing" (or ambiguous)
            if not header:
                raise GitError("git cat-file stopped unexpectedly")
            out.append(None)
            continue
        size = int(header[2])
        content = proc.stdout.read(size + 1)[:size]  # the object, then a newline
        out.append((header[0].decode(), header[1].decode(), content))
    return out


_TREE_ENTRY_RES: dict[int, re.Pattern[bytes]] = {}


def _tree_entries(content: bytes, raw_len: int) -> list[tuple[bytes, bytes, bytes]]:
    """(mode, name, raw id) of every entry of a tree object."""
    pattern = _TREE_ENTRY_RES.get(raw_len)
    if pattern is None:
        pattern = re.compile(rb"([0-7]+) ([^\0]+)\0(.{%d})" % raw_len, re.S)
        _TREE_ENTRY_RES[raw_len] = pattern
    entries: list[tuple[bytes, bytes, bytes]] = pattern.findall(content)
    if sum(len(m) + len(n) + 2 + raw_len for m, n, _ in entries) != len(content):
        raise GitError("could not parse a tree object")
    return entries


def _entry_re(name: bytes, raw_len: int) -> re.Pattern[bytes]:
    # Entry by entry from the start (so a match is never inside a name or an id) up to `name`.
    return re.compile(
        rb"(?:[0-7]+ [^\0]+\0.{%d})*?([0-7]+) %s\0(.{%d})" % (raw_len, re.escape(name), raw_len),
        re.S,
    )


def _find_entry(content: bytes, name: bytes, raw_len: int) -> tuple[bytes, bytes] | None:
    """(mode, raw id) of entry `name` of a tree, or None."""
    m = _entry_re(name, raw_len).match(content)
    return (m.group(1), m.group(2)) if m else None


def _edit_tree(
    content: bytes | None, changes: Mapping[bytes, tuple[bytes, bytes]], raw_len: int
) -> bytes:
    """A tree's content with `changes` (name -> (mode, raw id)) added or replaced."""
    if content and len(changes) == 1:
        # The common case, one event in a big directory: splice it in place when the entry
        # exists and stays a tree (or a file), so its sorting position is unchanged.
        ((name, (mode, oid)),) = changes.items()
        m = _entry_re(name, raw_len).match(content)
        if m and (m.group(1) == b"40000") == (mode == b"40000"):
            return content[: m.start(1)] + mode + b" " + name + b"\0" + oid + content[m.end():]
    merged = {n: (m, o) for m, n, o in (_tree_entries(content, raw_len) if content else [])}
    merged.update(changes)
    # git orders entries by name bytes, a subtree as if its name ended with "/"
    order = sorted(merged, key=lambda n: n + b"/" if merged[n][0] == b"40000" else n)
    return b"".join(merged[n][0] + b" " + n + b"\0" + merged[n][1] for n in order)


class GitRepo:
    """A non-bare git working tree, addressed by its top-level directory."""

    def __init__(self, root: Path, git_dir: Path, common_dir: Path) -> None:
        self.root = root
        self.git_dir = git_dir
        self.common_dir = common_dir

    @classmethod
    def discover(cls, path: Path | str = ".") -> GitRepo:
        """Find the working tree containing `path`; raise NotAGitRepo if there is none."""
        start = Path(path).resolve()
        if not start.exists():
            raise NotAGitRepo(f"{start} does not exist")
        proc = _git(
            start if start.is_dir() else start.parent,
            "rev-parse",
            "--show-toplevel",
            "--absolute-git-dir",
            "--git-common-dir",
            check=False,
        )
        if proc.returncode != 0:
            raise NotAGitRepo(
                f"{start} is not inside a git working tree: run `git init` there first, "
                "or pass --repo PATH"
            )
        top, git_dir, common = proc.stdout.decode().splitlines()[:3]
        root = Path(top)
        common_path = Path(common)
        if not common_path.is_absolute():
            common_path = (start / common_path).resolve()
        return cls(root, Path(git_dir), common_path)

    def git(self, *args: str, input: bytes | None = None) -> bytes:
        """Run a git command in the working tree and return its stdout."""
        return _git(self.root, *args, input=input).stdout

    def head(self) -> str | None:
        """The commit HEAD points at, or None in a repo with no commits yet."""
        proc = _git(self.root, "rev-parse", "-q", "--verify", "HEAD^{commit}", check=False)
        return proc.stdout.decode().strip() or None

    def operation_in_progress(self) -> tuple[str, str] | None:
        """(operation, how to end it) while a rebase, merge, cherry-pick, revert or bisect runs.

        A commit made in this working tree now would land where git may drop it.
        """
        markers = (
            ("rebase-merge", "a rebase", "`git rebase --continue` or `git rebase --abort`"),
            ("rebase-apply", "a rebase (or `git am`)",
             "`git rebase --continue` or `git rebase --abort` (`git am --abort`)"),
            ("MERGE_HEAD", "a merge", "commit the merge or `git merge --abort`"),
            ("CHERRY_PICK_HEAD", "a cherry-pick",
             "`git cherry-pick --continue` or `git cherry-pick --abort`"),
            ("REVERT_HEAD", "a revert", "`git revert --continue` or `git revert --abort`"),
            ("BISECT_LOG", "a bisect", "`git bisect reset`"),
        )
        for name, what, how in markers:
            if (self.git_dir / name).exists():
                return what, how
        return None

    def identity(self) -> str | None:
        """`Name <email>` of the git author identity here (None when git has none)."""
        proc = _git(self.root, "var", "GIT_AUTHOR_IDENT", check=False)
        ident = proc.stdout.decode("utf-8", "replace").strip()
        name, sep, _ = ident.rpartition(">")
        return f"{name}>" if proc.returncode == 0 and sep else None

    def branch(self) -> str | None:
        """The current branch name, or None when HEAD is detached."""
        proc = _git(self.root, "symbolic-ref", "-q", "--short", "HEAD", check=False)
        return proc.stdout.decode().strip() or None

    # -- locking and recovery ---------------------------------------------------------

    @contextmanager
    def exclusive(self, timeout: float | None = None, what: str = "") -> Iterator[float]:
        """Hold the ledger's writer lock and repair a half-finished write; yields the wait.

        Waits at most `timeout` seconds (default: $GPTME_FACTORY_LOCK_TIMEOUT, else
        LOCK_TIMEOUT_S), then raises LedgerBusy naming the holder. `what` says what the
        holder is doing, for that message.
        """
        lock_path = self.common_dir / _LOCKFILE
        start = time.monotonic()
        fd = _acquire(lock_path, lock_timeout() if timeout is None else timeout)
        waited = time.monotonic() - start
        try:
            _note_holder(fd, what)
            self._recover()
            yield waited
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def recover(self) -> None:
        """Finish or discard a write left half-done by a killed writer (cheap when none is)."""
        if any((self.git_dir / name).exists() for name in (_JOURNAL, _TMPDIR, _SYNC_JOURNAL)):
            with self.exclusive(what="recovery"):
                pass

    def _recover(self) -> None:
        journal = self.git_dir / _JOURNAL
        tmpdir = self.git_dir / _TMPDIR
        if journal.exists():
            try:
                data = json.loads(journal.read_text("utf-8"))
                commit = str(data["commit"])
                pairs = [(str(t), str(f)) for t, f in data["files"]]
                moves = [(str(a), str(b)) for a, b in data.get("moves", [])]
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                commit, pairs, moves = "", [], []  # torn journal: HEAD never moved past it
            head = self.head()
            committed = bool(commit and head) and (
                _git(self.root, "merge-base", "--is-ancestor", commit, head or "", check=False)
                .returncode
                == 0
            )
            if committed:
                lost = []
                for tmp, final in pairs:
                    if Path(tmp).exists():
                        self._place(Path(tmp), self.root / final)
                    elif not (self.root / final).exists():
                        lost.append(final)
                if lost:  # the temporary copy is gone too: take the committed bytes
                    self._index_git("checkout", "HEAD", "--", *lost)
                if pairs:
                    self._refresh_index([final for _, final in pairs])
                if moves:
                    self._finish_moves(moves)
            journal.unlink(missing_ok=True)
        sync_journal = self.git_dir / _SYNC_JOURNAL
        if sync_journal.exists():
            # A sync killed between moving HEAD and updating the index and working tree:
            # finish the switch (git's two-tree read-tree is idempotent) or, if HEAD never
            # moved, forget it.
            try:
                data = json.loads(sync_journal.read_text("utf-8"))
                old_head, new_head = str(data["old"]), str(data["new"])
            except (OSError, ValueError, KeyError, TypeError):
                old_head = new_head = ""
            if new_head and self.head() == new_head:
                proc = self._index_git("read-tree", "-m", "-u", old_head, new_head)
                if proc.returncode != 0:
                    raise GitError(
                        f"could not finish an interrupted sync ({_stderr(proc)}): run "
                        f"`git read-tree -m -u {old_head} {new_head}`, then remove "
                        f"{sync_journal}"
                    )
            sync_journal.unlink(missing_ok=True)
        # Under the lock no other writer of this git dir is alive: anything left is garbage.
        journal.with_name(journal.name + ".tmp").unlink(missing_ok=True)
        shutil.rmtree(tmpdir, ignore_errors=True)

    @staticmethod
    def _place(tmp: Path, final: Path) -> None:
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(tmp, final)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            # The git dir is on another file system: copy next to the target, then rename.
            near = final.with_name(f".{final.name}.{os.getpid()}.tmp")
            shutil.copyfile(tmp, near)
            os.replace(near, final)
            tmp.unlink()

    # -- committing ---------------------------------------------------------------------

    def commit_files(self, files: Mapping[str, bytes], message: str,
                     before_land: Callable[[str], None] | None = None) -> str:
        """Commit `files` (repo-relative path -> content) as one commit on HEAD.

        Must be called while holding `exclusive()`. Returns the new commit id (or the current
        one when the files are already committed with that content). Raises LedgerConflict
        if HEAD moved during the write (nothing is left behind then).

        `before_land(commit)` runs once the commit object exists and before HEAD moves (a
        claim pushes it to the remote there): if it raises, nothing lands — HEAD, the index
        and the working tree are as they were — and the exception propagates.
        """
        for rel in files:
            _check_relpath(rel)
        tmpdir = self.git_dir / _TMPDIR
        tmpdir.mkdir(exist_ok=True)
        journal = self.git_dir / _JOURNAL
        tmp_pairs: list[tuple[str, str]] = []
        try:
            for i, (rel, content) in enumerate(files.items()):
                tmp_path = tmpdir / f"{os.getpid()}-{i}"
                with open(tmp_path, "wb") as fh:
                    fh.write(content)
                    fh.flush()
                    os.fsync(fh.fileno())
                tmp_pairs.append((str(tmp_path), rel))
            oids = (
                self.git("hash-object", "-w", "--no-filters", "--", *(t for t, _ in tmp_pairs))
                .decode()
                .split()
            )
            changes = {rel: oid for (_, rel), oid in zip(tmp_pairs, oids, strict=True)}
            old, base_tree, tree = self._write_trees(changes, tmpdir)
            if old is not None and tree == base_tree:
                new = old  # already committed with this content: no empty commit
            else:
                args = ["commit-tree", tree]
                if old:
                    args += ["-p", old]
                new = self.git(*args, input=message.encode("utf-8")).decode().strip()
                if before_land is not None:
                    before_land(new)
                pending = journal.with_name(journal.name + ".tmp")
                pending.write_text(json.dumps({"commit": new, "files": tmp_pairs}))
                os.replace(pending, journal)
                proc = _git(
                    self.root,
                    "update-ref",
                    "-m",
                    message.splitlines()[0],
                    "HEAD",
                    new,
                    old or ZERO_OID,
                    check=False,
                )
                if proc.returncode != 0:
                    journal.unlink(missing_ok=True)
                    raise LedgerConflict(
                        "HEAD moved while the ledger was being written (another git command "
                        "ran); nothing was recorded: retry "
                        f"({proc.stderr.decode('utf-8', 'replace').strip()})"
                    )
        except BaseException:
            if journal.exists():
                # Interrupted around update-ref: HEAD may or may not have moved. Recovery
                # looks and finishes or discards; if it cannot, the next writer will.
                with contextlib.suppress(Exception):
                    self._recover()
            else:
                for tmp, _ in tmp_pairs:
                    Path(tmp).unlink(missing_ok=True)
                _rmdir_if_empty(tmpdir)
            raise
        for tmp, final in tmp_pairs:
            self._place(Path(tmp), self.root / final)
        self._refresh_index([final for _, final in tmp_pairs])
        journal.unlink(missing_ok=True)
        _rmdir_if_empty(tmpdir)
        return new

    def _refresh_index(self, paths: list[str]) -> None:
        # Paths go through stdin: a migration refreshes tens of thousands. A path gone from
        # the working tree, as a moved folder's old files are, leaves the index.
        listed = b"".join(p.encode("utf-8", "surrogateescape") + b"\0" for p in paths)
        proc = self._index_git(*self._split_index(), "update-index", "--add", "--remove",
                               "-z", "--stdin", input=listed)
        if proc.returncode != 0:
            shown = " ".join(paths[:5]) + (" ..." if len(paths) > 5 else "")
            raise GitError(
                "the ledger commit succeeded but the index could not be refreshed: run "
                f"`git update-index --add --remove -- {shown}` ({_stderr(proc)})"
            )

    def _split_index(self) -> tuple[str, ...]:
        """`-c core.splitIndex=true` for a large index whose repo does not set the mode itself.

        Every `update-index` rewrites the whole index, every file of the repo, for a commit of
        one file: 58 MB and 0.2 s at 30,000 artifacts. Split (git's `core.splitIndex`), git
        writes only the entries that changed since a shared index file, which it merges and
        writes again only when those grow past `splitIndex.maxPercentChange` (20%), and every
        git command reads the two as one; a later git command keeps the mode. A repo that sets
        `core.splitIndex` (false: tools on libgit2 cannot read a split index) keeps its choice;
        `git update-index --no-split-index` joins an index again.
        """
        try:
            if (self.git_dir / "index").stat().st_size < SPLIT_INDEX_AT:
                return ()
        except OSError:
            return ()
        chosen = _git(self.root, "config", "--get", "core.splitIndex", check=False)
        return () if chosen.stdout.strip() else ("-c", "core.splitIndex=true")

    def _index_git(self, *args: str,
                   input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        """Run a git command that writes the index, waiting out another command's index.lock.

        A user's `git status` takes index.lock for a moment (to refresh stat data), a `git
        add` or `commit` a little longer: retry for up to INDEX_LOCK_WAIT_S. Only a lock held
        longer than that (a stale one, left by a killed git) reaches the caller.
        """
        deadline = time.monotonic() + INDEX_LOCK_WAIT_S
        delay = 0.005
        while True:
            proc = _git(self.root, *args, input=input, check=False)
            if proc.returncode == 0 or b"index.lock" not in proc.stderr:
                return proc
            if time.monotonic() >= deadline:
                lock = self.git_dir / "index.lock"
                proc.stderr += (
                    f"\n{lock} has existed for {INDEX_LOCK_WAIT_S:g} s: if no git command is "
                    f"running, it is left over from a killed one: remove it (rm {lock})"
                ).encode()
                return proc
            time.sleep(delay + random.uniform(0, delay))
            delay = min(delay * 2, 0.2)

    def commit_moves(self, base: str, moves: Mapping[str, str], message: str) -> str | None:
        """Move folders under tree path `base` (old relative path -> new one) in one commit.

        Must be called holding `exclusive()`, with the folders committed and clean. Only
        trees are written: every moved folder keeps its tree id (its files' names and bytes
        do not change), a folder moved onto one that exists is joined with it entry by entry
        (GitError if one name holds two different contents), and a folder left empty goes.
        Then the working tree folders are renamed and the index learns the new paths, the
        user's other work untouched; a journal makes a killed mover finish on the next write.
        Returns the new commit, or None when there is nothing to move.
        """
        if not moves:
            return None
        for rel in [base, *(f"{base}/{n}" for n in moves), *(f"{base}/{t}" for t in moves.values())]:
            _check_relpath(rel)
        cat = subprocess.Popen(
            ["git", "cat-file", "--batch"], cwd=self.root, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=_git_env(),
        )
        new_trees: dict[str, bytes] = {}
        try:
            head_obj = _cat(cat, ["HEAD"])[0]
            if head_obj is None or head_obj[1] != "commit":
                raise GitError("nothing to move: HEAD has no commit")
            old = head_obj[0]
            raw_len = len(old) // 2
            algo = "sha1" if raw_len == 20 else "sha256"

            def read(oid: bytes) -> dict[bytes, tuple[bytes, bytes]]:
                obj = _cat(cat, [oid.hex()])[0]
                if obj is None or obj[1] != "tree":
                    raise GitError(f"tree {oid.hex()} is missing from the repository")
                return {n: (m, o) for m, n, o in _tree_entries(obj[2], raw_len)}

            def put(entries: Mapping[bytes, tuple[bytes, bytes]]) -> bytes:
                content = _edit_tree(None, entries, raw_len)
                digest = hashlib.new(algo, b"tree %d\0" % len(content))
                digest.update(content)
                new_trees[digest.hexdigest()] = content
                return digest.digest()

            def join(a: bytes, b: bytes, where: str) -> bytes:
                if a == b:
                    return a
                merged = read(a)
                for name, (mode, oid) in read(b).items():
                    have = merged.get(name)
                    if have is None or have == (mode, oid):
                        merged[name] = (mode, oid)
                    elif have[0] == mode == b"40000":
                        merged[name] = (mode, join(have[1], oid, f"{where}/{name.decode()}"))
                    else:
                        raise GitError(f"cannot join {where}/{name.decode()}: both layouts hold "
                                       "it with different contents; keep one, then retry")
                return put(merged)

            path_trees: list[dict[bytes, tuple[bytes, bytes]]] = [
                read(bytes.fromhex(head_obj[2][5:5 + 2 * raw_len].decode()))]
            parts = [p.encode("utf-8", "surrogateescape") for p in base.split("/")]
            for part in parts:
                entry = path_trees[-1].get(part)
                if entry is None or entry[0] != b"40000":
                    raise GitError(f"nothing to move: HEAD has no {base}/")
                path_trees.append(read(entry[1]))
            top = _TreeEdit(path_trees[-1], read)
            taken = {name: top.pop(name, base) for name in moves}  # every source, then targets
            for name, target in moves.items():
                top.put(target, taken[name], join, base)
            oid = top.write(put)
            for part, parent in zip(reversed(parts), reversed(path_trees[:-1]), strict=True):
                updated = dict(parent)
                updated[part] = (b"40000", oid)
                oid = put(updated)
            root = oid.hex()
        finally:
            cat.communicate()
        tmpdir = self.git_dir / _TMPDIR
        tmpdir.mkdir(exist_ok=True)
        self._store_trees(tmpdir, new_trees)
        new = self.git("commit-tree", root, "-p", old, input=message.encode("utf-8")).decode().strip()
        journal = self.git_dir / _JOURNAL
        pairs = [(f"{base}/{n}", f"{base}/{t}") for n, t in moves.items()]
        pending = journal.with_name(journal.name + ".tmp")
        pending.write_text(json.dumps({"commit": new, "files": [], "moves": pairs}))
        os.replace(pending, journal)
        proc = _git(self.root, "update-ref", "-m", message.splitlines()[0], "HEAD", new, old,
                    check=False)
        if proc.returncode != 0:
            journal.unlink(missing_ok=True)
            _rmdir_if_empty(tmpdir)
            raise LedgerConflict(
                "HEAD moved while the folders were being moved (another git command ran); "
                f"nothing was moved: retry ({proc.stderr.decode('utf-8', 'replace').strip()})")
        self._finish_moves(pairs)
        journal.unlink(missing_ok=True)
        _rmdir_if_empty(tmpdir)
        return new

    def _finish_moves(self, pairs: Sequence[tuple[str, str]]) -> None:
        """Rename moved folders in the working tree and tell the index (idempotent)."""
        paths: list[str] = []
        for old_rel, new_rel in pairs:
            src, dst = self.root / old_rel, self.root / new_rel
            if src.is_dir() and not dst.exists():
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.rename(src, dst)
            elif src.is_dir():  # both layouts: move what the new folder lacks, file by file
                for dirpath, _, names in os.walk(src):
                    for name in names:
                        here = Path(dirpath) / name
                        there = dst / here.relative_to(src)
                        if not there.exists():
                            there.parent.mkdir(parents=True, exist_ok=True)
                            os.replace(here, there)
                shutil.rmtree(src)
            for dirpath, _, names in os.walk(dst):
                for name in names:
                    rel = (Path(dirpath) / name).relative_to(dst).as_posix()
                    paths += [f"{old_rel}/{rel}", f"{new_rel}/{rel}"]
        if paths:
            self._refresh_index(paths)

    def _write_trees(
        self, changes: Mapping[str, str], tmpdir: Path
    ) -> tuple[str | None, str | None, str]:
        """(HEAD, its tree, the new root tree) with `changes` (path -> blob id) applied.

        One `git cat-file --batch` reads HEAD and the trees on the changed paths; the new
        trees are built in Python (git's tree format) and written with one `git hash-object
        -t tree`, whose ids are checked against ours. Three processes however deep the paths,
        and a 10,000-entry directory is spliced in C (a regex), not listed and re-sorted.
        """
        raw_len = len(next(iter(changes.values()))) // 2
        algo = "sha1" if raw_len == 20 else "sha256"
        dirs: set[str] = {""}
        for rel in changes:
            parts = rel.split("/")[:-1]
            dirs.update("/".join(parts[: i + 1]) for i in range(len(parts)))
        old_trees: dict[str, bytes] = {}  # dir -> content of its tree in HEAD
        cat = subprocess.Popen(
            ["git", "cat-file", "--batch"], cwd=self.root, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=_git_env(),
        )
        try:
            head_obj = _cat(cat, ["HEAD"])[0]
            old = head_obj[0] if head_obj and head_obj[1] == "commit" else None
            base_tree = head_obj[2][5:5 + 2 * raw_len].decode() if old and head_obj else None
            level = [("", base_tree)] if base_tree else []
            while level:
                found = _cat(cat, [oid for _, oid in level])
                nxt: list[tuple[str, str]] = []
                for (path, _), obj in zip(level, found, strict=True):
                    if obj is None or obj[1] != "tree":
                        continue
                    old_trees[path] = obj[2]
                    for child in (d for d in dirs if d and d.rpartition("/")[0] == path):
                        entry = _find_entry(obj[2], child.rpartition("/")[2].encode(), raw_len)
                        if entry is not None and entry[0] == b"40000":
                            nxt.append((child, entry[1].hex()))
                level = nxt
        finally:
            cat.communicate()  # closes both pipes and reaps the process
        # Build bottom-up: deepest directories first.
        edits: dict[str, dict[bytes, tuple[bytes, bytes]]] = {d: {} for d in dirs}
        for rel, oid in changes.items():
            parent, _, name = rel.rpartition("/")
            edits[parent][name.encode("utf-8", "surrogateescape")] = (b"100644", bytes.fromhex(oid))
        new_trees: dict[str, bytes] = {}
        root = ""
        for d in sorted(dirs, key=lambda x: -x.count("/") if x else 1):
            content = _edit_tree(old_trees.get(d), edits[d], raw_len)
            digest = hashlib.new(algo, b"tree %d\0" % len(content))
            digest.update(content)
            if content != old_trees.get(d):
                new_trees[digest.hexdigest()] = content
            if d:
                parent, _, name = d.rpartition("/")
                edits[parent][name.encode("utf-8", "surrogateescape")] = (b"40000", digest.digest())
            else:
                root = digest.hexdigest()
        if new_trees:
            self._store_trees(tmpdir, new_trees)
        return old, base_tree, root

    def _store_trees(self, tmpdir: Path, trees: Mapping[str, bytes]) -> None:
        """Write tree objects (id -> content) with one `hash-object`; GitError if an id differs.

        Paths go through stdin: a migration writes hundreds of trees.
        """
        tree_files: list[Path] = []
        try:
            for i, content in enumerate(trees.values()):
                tree_file = tmpdir / f"{os.getpid()}-tree-{i}"
                tree_file.write_bytes(content)
                tree_files.append(tree_file)
            listed = "".join(f"{t}\n" for t in tree_files).encode()
            written = self.git("hash-object", "-w", "-t", "tree", "--no-filters",
                               "--stdin-paths", input=listed).decode().split()
        finally:
            for tree_file in tree_files:
                tree_file.unlink(missing_ok=True)
        if written != list(trees):
            raise GitError(f"git wrote trees {written[:3]}, expected {list(trees)[:3]}: "
                           "nothing was committed")

    # -- reading history ----------------------------------------------------------------

    def log_trailer(self, key: str, values: Sequence[str]) -> list[LogEntry]:
        """Commits of HEAD's history with trailer `key: <one of values>`, oldest first.

        A `git revert` of one of them is included too (its message says "This reverts commit
        <id>" and carries no trailers of its own). One `git log --grep` of fixed strings: it
        reads every commit message and no tree, so it costs about what a plain `git log`
        does however big the trees are, where a pathspec walk diffs every commit's trees.
        The grep only preselects; each commit's trailers are then matched exactly.
        """
        if not values or self.head() is None:
            return []
        fmt = "%H%x1f%aI%x1f%an <%ae>%x1f%s%x1f%(trailers:only,unfold)%x1f%b%x1e"
        args = ["log", "--reverse", "-F", f"--format={fmt}",
                *(f"--grep={key}: {v}" for v in values), f"--grep={_REVERTS}", "HEAD"]
        out = _git(self.root, *args).stdout
        wanted = set(values)
        found: list[LogEntry] = []
        ids: set[str] = set()
        for rec in out.decode("utf-8", "replace").split("\x1e"):
            fields = rec.strip("\n").split("\x1f")
            if len(fields) != 6:
                continue
            trailers = _parse_trailers(fields[4])
            if not wanted.intersection(trailers.get(key, [])):
                reverted = _REVERT_RE.findall(fields[5])
                if not ids.intersection(reverted):
                    continue
                trailers = {}
            ids.add(fields[0])
            found.append(LogEntry(commit=fields[0], time=fields[1], author=fields[2],
                                  subject=fields[3], trailers=trailers))
        return found

    def _start(self, *args: str, config: Sequence[str] = ()) -> Callable[[], bytes]:
        """Start a git command that only reads; the function returned waits for its output.

        It never takes index.lock (GIT_OPTIONAL_LOCKS=0), so it cannot stand in a writer's way.
        `config` is `name=value` settings for this run only.
        """
        env = _git_env()
        env["GIT_OPTIONAL_LOCKS"] = "0"
        settings = [part for item in config for part in ("-c", item)]
        proc = subprocess.Popen(["git", *settings, *args], cwd=self.root,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)

        done: list[tuple[bytes, bytes]] = []

        def wait() -> bytes:  # may be called again: the answer is kept
            if not done:
                done.append(proc.communicate())
            out, err = done[0]
            if proc.returncode != 0:
                msg = err.decode("utf-8", "replace").strip() or f"exit {proc.returncode}"
                raise GitError(f"git {args[0]} failed: {msg}")
            return out

        return wait

    def changed_against_head(self, paths: list[str]) -> list[tuple[str, str]]:
        """(path, "modified"|"deleted") of tracked files under `paths` that differ from HEAD."""
        return self.start_changed_against_head(paths)()

    def start_changed_against_head(self, paths: list[str], head: str = "HEAD", *,
                                   leave_a_core: bool = False
                                   ) -> Callable[[], list[tuple[str, str]]]:
        """Start `changed_against_head` (against commit `head`) in the background.

        The function returned waits for it. With `leave_a_core`, when this process may run on
        two cores or fewer, git `lstat()`s the files on one thread (`core.preloadIndex=false`)
        instead of on every core, so a caller with CPU work of its own to do meanwhile is not
        starved: a full `verify` parses every record while git looks (0.87x the wall time at
        10,000 artifacts, ~93,000 files, on two cores, measured side by side). An incremental
        one does not ask for it: it has little to do but wait for git (at 30,000 artifacts,
        ~281,000 files, 1.10 s with git on one thread, 0.85 s on both, side by side).
        """
        one_thread = leave_a_core and _usable_cores() <= 2
        wait = self._start("diff-index", "--name-status", "--no-renames", "-z", head, "--",
                           *paths, config=("core.preloadIndex=false",) if one_thread else ())

        return lambda: _name_status(wait())

    def start_staged_against_head(self, paths: list[str], head: str = "HEAD"
                                  ) -> Callable[[], list[tuple[str, str]]]:
        """Start listing the index entries under `paths` that differ from commit `head`.

        (path, "modified"|"deleted"); the function returned waits for it. `git diff-index
        --cached`: the index against the commit, no file is looked at. With
        `worktree_against` it finds what `start_changed_against_head` does, for a caller that
        knows which files changed on disk.
        """
        wait = self._start("diff-index", "--cached", "--name-status", "--no-renames", "-z",
                           head, "--", *paths)
        return lambda: _name_status(wait())

    def worktree_against(self, head: str, folders: Sequence[str]) -> list[tuple[str, str]]:
        """(path, "modified"|"deleted") of `head`'s files under `folders` that differ on disk.

        `ls-tree` of just those folders (a few hundred a call); each file there is hashed as
        a blob of its bytes (the ledger writes its blobs unfiltered, `hash-object
        --no-filters`) and compared with its id in `head`. A file gone, or no longer a plain
        file (or its executable bit moved), is deleted or modified.
        """
        heads: dict[str, tuple[str, str]] = {}
        for at in range(0, len(folders), 500):  # a command line holds a few hundred paths
            heads.update(self.entries_at(head, list(folders[at:at + 500])))
        out: list[tuple[str, str]] = []
        for path, (mode, oid) in sorted(heads.items()):
            if mode == "160000":
                continue  # a submodule: not a file of this tree
            full = os.path.join(self.root, path)
            try:
                st = os.lstat(full)
            except FileNotFoundError:
                out.append((path, "deleted"))
                continue
            except OSError:
                out.append((path, "modified"))
                continue
            algo = "sha1" if len(oid) == 40 else "sha256"
            if mode == "120000":
                same = stat.S_ISLNK(st.st_mode) and blob_id_of(
                    os.readlink(full).encode("utf-8", "surrogateescape"), algo) == oid
            elif not stat.S_ISREG(st.st_mode) \
                    or (mode == "100755") != bool(st.st_mode & 0o100):
                same = False  # no longer a plain file, or its executable bit moved
            else:
                try:
                    with open(full, "rb") as fh:
                        same = blob_id_of(fh.read(), algo) == oid
                except OSError:
                    same = False
            if not same:
                out.append((path, "modified"))
        return out

    def changed_in_history(self, paths: list[str], since: str | None = None
                           ) -> dict[str, list[tuple[str, str]]]:
        """Files under `paths` a commit in HEAD's history (after `since`) modified or deleted."""
        return self.start_changed_in_history(paths, since)()

    def start_changed_in_history(self, paths: list[str], since: str | None = None,
                                 head: str = "HEAD"
                                 ) -> Callable[[], dict[str, list[tuple[str, str]]]]:
        """Start `changed_in_history` in the background; the function returned waits for it.

        path -> [(commit, "M" or "D"), ...], newest first: a `git log --diff-filter=MD` over
        `head`'s history (or the commits after `since`), without rename detection (a moved
        folder is its files deleted and added); git diffs each commit's trees in C while the
        caller reads records meanwhile.
        """
        rev = f"{since}..{head}" if since else head
        # The walk reads every tree of every commit: git's mapped pack windows and delta
        # cache would count in its memory (319 MB over 154,000 commits); bounded, it stays
        # at the size of the index it reads (~140 MB there), in the same time.
        wait = self._start("log", "--no-renames", "--diff-filter=MD", "--name-status", "-z",
                           "--format=%x01%H", rev, "--", *paths, config=_LEAN_READ)

        def result() -> dict[str, list[tuple[str, str]]]:
            out: dict[str, list[tuple[str, str]]] = {}
            commit, status = "", ""
            for item in wait().decode("utf-8", "surrogateescape").split("\0"):
                for part in item.split("\n"):
                    if part.startswith("\x01"):
                        commit = part[1:]
                    elif not part:
                        continue
                    elif not status:
                        status = part
                    else:
                        out.setdefault(part, []).append((commit, status))
                        status = ""
            return out

        return result

    def changed_between(self, old: str, new: str, paths: list[str]) -> list[str]:
        """Paths under `paths` that differ between two commits' trees (added, changed, gone)."""
        return self.start_changed_between(old, new, paths)()

    def start_changed_between(self, old: str, new: str, paths: list[str]
                              ) -> Callable[[], list[str]]:
        """Start `changed_between` in the background; the function returned waits for it."""
        wait = self._start("diff-tree", "-r", "--name-only", "--no-renames", "-z", old, new,
                           "--", *paths)
        return lambda: _paths(wait())

    def untracked(self, paths: list[str]) -> list[str]:
        """Files under `paths` that git does not track, ignored ones included."""
        return self.start_untracked(paths)()

    def start_untracked(self, paths: list[str]) -> Callable[[], list[str]]:
        """Start `untracked` in the background; the function returned waits for it."""
        wait = self._start("ls-files", "-z", "--others", "--", *paths)
        return lambda: _paths(wait())

    def untracked_of(self, paths: Sequence[str]) -> list[str]:
        """Those of `paths` (repo-relative files) that git's index does not hold.

        One `git cat-file --batch-check` looks each up in the index (`:path`): the index is
        read once and each path is a lookup, where `ls-files --others` with one pathspec per
        folder would match every folder it walks against every pathspec. A name git's batch
        input cannot carry (a newline in it) counts as untracked.
        """
        asked = [p for p in paths if "\n" not in p]
        odd = [p for p in paths if "\n" in p]
        if not asked:
            return odd
        text = "".join(f":{p}\n" for p in asked).encode("utf-8", "surrogateescape")
        out = self.git("cat-file", "--batch-check=%(objecttype)", input=text).splitlines()
        if len(out) != len(asked):
            raise GitError(f"git cat-file answered {len(out)} of {len(asked)} paths")
        return [p for p, line in zip(asked, out, strict=True) if line.endswith(b" missing")] + odd

    def blob_id(self, rev: str, path: str) -> str | None:
        """The id of `path`'s blob at `rev` (None if it is not there)."""
        proc = _git(self.root, "rev-parse", "-q", "--verify", f"{rev}:{path}", check=False)
        return proc.stdout.decode().strip() or None

    def first_added(self, path: str) -> str | None:
        """The commit of HEAD's history that first added `path`."""
        out = self.git("log", "--diff-filter=A", "--format=%H", "--reverse", "HEAD", "--", path)
        first = out.decode().split()
        return first[0] if first else None

    def status_porcelain(self) -> bytes:
        """`git status --porcelain=v1 -z` output, for tests and doctor."""
        return self.git("status", "--porcelain=v1", "-z", "--untracked-files=all")

    # -- content keys for the status cache ---------------------------------------------

    def start_tree_at_head(self, path: str) -> Callable[[], tuple[str, str] | None]:
        """Start reading (HEAD's commit id, the id of the tree at `path`): returns the wait.

        The wait gives None if either is missing. One `rev-parse` in the background, which
        resolves its arguments in order: if HEAD moves meanwhile, the tree may be newer than
        the commit, never older (the status cache relies on that).
        """
        proc = subprocess.Popen(["git", "rev-parse", "HEAD^{commit}", f"HEAD:{path}"],
                                cwd=self.root, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, env=_git_env())

        def wait() -> tuple[str, str] | None:
            out, _ = proc.communicate()
            ids = out.decode().split()
            if proc.returncode != 0 or len(ids) != 2:
                return None
            return ids[0], ids[1]

        return wait

    def tree_reader(self) -> TreeReader:
        """A reader of tree objects (one `git cat-file --batch`); `close()` it when done."""
        return TreeReader(self.root)

    def start_changed_paths(self, commit: str, path: str) -> Callable[[], set[str] | None]:
        """Start listing the tracked paths under `path` that differ from `commit`.

        Returns a function that waits and gives the set of paths (None if git failed). This
        is `git diff-index COMMIT -- PATH`: git compares the index with the commit and
        every tracked file's full stat data (mtime, ctime, size, inode, ...) with the index,
        re-reading "racily clean" files, in C on all cores. It runs in the background so the
        caller can work meanwhile. Untracked files are not reported.
        """
        env = dict(os.environ)
        env.setdefault("GIT_TERMINAL_PROMPT", "0")
        env["GIT_OPTIONAL_LOCKS"] = "0"  # a read: never take index.lock from the user
        proc = subprocess.Popen(
            # full stat comparison even where the user's config relaxes it
            ["git", "-c", "core.checkStat=default", "-c", "core.trustctime=true",
             "diff-index", "-z", "--name-only", "--no-renames", "--ignore-submodules",
             commit, "--", path],
            cwd=self.root, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
        )

        def wait() -> set[str] | None:
            out, _ = proc.communicate()
            if proc.returncode != 0:
                return None
            return {p.decode("utf-8", "surrogateescape") for p in out.split(b"\0") if p}

        return wait

    # -- commits and worktrees for gates and cells ----------------------------------------

    def resolve_commit(self, rev: str) -> str | None:
        """The full id of commit `rev`, or None if it does not exist."""
        if rev.startswith("-"):
            return None
        proc = _git(self.root, "rev-parse", "-q", "--verify", f"{rev}^{{commit}}", check=False)
        return proc.stdout.decode().strip() or None

    def tree_of(self, commit: str) -> str:
        """The tree id of a commit (what a check result is bound to)."""
        return self.git("rev-parse", f"{commit}^{{tree}}").decode().strip()

    def changed_files(self, base: str, head: str) -> list[str]:
        """Paths that differ between two commits."""
        out = self.git("diff", "--name-only", "-z", "--no-renames", base, head)
        return sorted(_paths(out))

    def is_ancestor(self, ancestor: str, commit: str) -> bool:
        """True if `ancestor` is reachable from `commit`."""
        proc = _git(self.root, "merge-base", "--is-ancestor", ancestor, commit, check=False)
        return proc.returncode == 0

    def worktree_add(self, path: Path, commit: str, branch: str | None = None) -> None:
        """Check out `commit` in a new linked worktree (on a new `branch`, or detached)."""
        args = ["worktree", "add", "-f"]
        args += ["-b", branch, str(path), commit] if branch else ["--detach", str(path), commit]
        self.git(*args)

    def worktree_remove(self, path: Path) -> None:
        """Remove a linked worktree (its branch and commits stay)."""
        if path.exists():
            _git(self.root, "worktree", "remove", "--force", str(path), check=False)
        _git(self.root, "worktree", "prune", check=False)

    def branches(self, prefix: str) -> list[str]:
        """Local branch names starting with `prefix` (like `factory/`)."""
        out = self.git("for-each-ref", "--format=%(refname:short)", f"refs/heads/{prefix}")
        return [b for b in out.decode("utf-8", "surrogateescape").splitlines() if b]

    def delete_branch(self, name: str) -> None:
        """Delete a local branch (its commits stay reachable from the reflog for a while)."""
        if name.startswith("-"):
            raise GitError(f"refusing to delete branch {name!r}")
        self.git("branch", "-D", "--", name)

    def worktree_base(self) -> Path:
        """Where the factory keeps linked worktrees: inside the git dir, out of the work tree."""
        return self.common_dir / "factory-worktrees"

    def is_cell_worktree(self) -> bool:
        """True for one of the factory's cell/gate worktrees (not the brain's own checkout)."""
        return self.git_dir != self.common_dir and self.root.is_relative_to(self.worktree_base())

    def main_worktree(self) -> Path | None:
        """The main working tree this linked worktree belongs to (None for a bare repo)."""
        main = self.common_dir.parent
        return main if self.common_dir.name == ".git" and (main / ".git").exists() else None

    # -- remotes, for publishing --------------------------------------------------------

    def remote_url(self, name: str = "origin") -> str | None:
        """The fetch URL of remote `name`, or None if there is no such remote."""
        proc = _git(self.root, "remote", "get-url", "--", name, check=False)
        return proc.stdout.decode().strip() or None if proc.returncode == 0 else None

    def push(self, remote: str, branch: str, commit: str | None = None,
             timeout_s: float | None = None) -> None:
        """Push `commit` (default: local `branch`) to `branch` on `remote` (GitError)."""
        if branch.startswith("-") or remote.startswith("-") or (commit or "").startswith("-"):
            raise GitError(f"refusing to push {branch!r} to {remote!r}: not a branch or remote")
        _git(self.root, "push", "--quiet", remote,
             f"{commit or f'refs/heads/{branch}'}:refs/heads/{branch}", timeout_s=timeout_s)

    def remotes(self) -> list[str]:
        """The names of the repo's remotes."""
        return self.git("remote").decode().split()

    def remote_default_branch(self, remote: str, timeout_s: float | None = None) -> str | None:
        """The branch `remote`'s HEAD names: from refs/remotes/REMOTE/HEAD, else ls-remote."""
        proc = _git(self.root, "symbolic-ref", "-q", "--short", f"refs/remotes/{remote}/HEAD",
                    check=False)
        name = proc.stdout.decode().strip()
        if proc.returncode == 0 and name.startswith(f"{remote}/"):
            return name[len(remote) + 1:]
        proc = _git(self.root, "ls-remote", "--symref", "--", remote, "HEAD", check=False,
                    timeout_s=timeout_s)
        for line in proc.stdout.decode("utf-8", "replace").splitlines():
            ref, _, what = line.partition("\t")
            if ref.startswith("ref: refs/heads/") and what == "HEAD":
                return ref[len("ref: refs/heads/"):]
        return None

    def ledger_commits(self, base: str, head: str) -> list[str]:
        """Commits in base..head whose message carries a `Factory-Event:` trailer line."""
        out = self.git("log", "--format=%H", "--extended-regexp",
                       "--grep=^Factory-(Event|Artifact): ", f"{base}..{head}", "--")
        return out.decode().split()

    def blob_ids(self, commit: str, paths: list[str]) -> dict[str, str]:
        """Path -> blob id of the files among `paths` that exist at `commit` (one ls-tree)."""
        if not paths:
            return {}
        out = self.git("ls-tree", "-z", "--full-tree", commit, "--", *paths)
        return {name: oid for oid, name in _LS_TREE_RE.findall(out.decode("utf-8",
                                                                           "surrogateescape"))}

    def refs_containing(self, commit: str, prefix: str) -> list[str]:
        """Refs under `prefix` (like refs/tags/) whose history contains `commit`."""
        out = self.git("for-each-ref", f"--contains={commit}", "--format=%(refname)", prefix)
        return out.decode().split()

    # -- remotes: fetch, push, and replaying local commits on the remote's --------------

    def upstream(self, branch: str) -> tuple[str, str] | None:
        """(remote, branch on it) that local `branch` tracks, or None."""
        proc = _git(self.root, "for-each-ref",
                    "--format=%(upstream:remotename)%00%(upstream:remoteref)",
                    f"refs/heads/{branch}", check=False)
        remote, _, ref = proc.stdout.decode("utf-8", "replace").strip().partition("\0")
        if proc.returncode != 0 or not remote or not ref.startswith("refs/heads/"):
            return None
        return remote, ref.removeprefix("refs/heads/")

    def rev(self, ref: str) -> str | None:
        """The commit `ref` names, or None if there is none."""
        proc = _git(self.root, "rev-parse", "-q", "--verify", f"{ref}^{{commit}}", check=False)
        return proc.stdout.decode().strip() or None

    def fetch(self, remote: str, refspecs: list[str], timeout_s: float | None = None,
              missing_ok: bool = False) -> bool:
        """Fetch `refspecs` from `remote`, no tags unless a refspec names them.

        With `missing_ok`, False when the first refspec's branch is not on the remote (else
        that is an error too). RemoteUnreachable (a GitError) with git's words on failure.
        """
        if remote.startswith("-") or any(r.startswith("-") for r in refspecs):
            raise GitError(f"refusing to fetch {refspecs!r} from {remote!r}")
        args = ["fetch", "--quiet", "--no-tags", "--no-write-fetch-head", remote, *refspecs]
        for attempt in range(5):
            try:
                proc = _git(self.root, *args, check=False, timeout_s=timeout_s)
            except GitError as exc:  # timed out
                raise RemoteUnreachable(f"could not fetch from {remote}: {exc}") from None
            if proc.returncode == 0:
                return True
            if missing_ok and b"couldn't find remote ref" in proc.stderr:
                return False
            # another fetch of this repo (the user's) holds a remote-tracking ref's lock
            if b"cannot lock ref" not in proc.stderr and b".lock" not in proc.stderr:
                break
            time.sleep(0.05 * (attempt + 1))
        raise RemoteUnreachable(f"could not fetch from {remote}: {_stderr(proc)}")

    def push_ref(self, remote: str, commit: str, ref: str, *, force: bool = False) -> bool:
        """Push `commit` to `ref` on `remote`: True once there, False if someone pushed first.

        False means the remote's ref moved to a commit `commit` does not descend from. A plain push is the compare-and-swap: git accepts it only as a fast-forward.
        RemoteUnreachable for a network or permission failure, GitError when the remote
        refuses it for another reason (a hook, a protected branch).
        """
        _check_remote(remote)
        spec = f"{'+' if force else ''}{commit}:{ref}"
        proc = _git(self.root, "push", "--porcelain", "--quiet", remote, spec, check=False)
        status = [line for line in proc.stdout.decode("utf-8", "replace").splitlines()
                  if line[:1] in "*+-=!  " and line.count("\t") >= 2]
        for line in status:
            if line.startswith("!"):
                summary = line.split("\t", 2)[2]
                if summary.startswith("[rejected]") or _RACE_RE.search(summary + _stderr(proc)):
                    return False  # not a fast-forward, or another push won inside the remote
                raise GitError(f"{remote} refused the push of {ref}: {summary} "
                               f"({_stderr(proc)})")
        if proc.returncode == 0:
            return True
        raise RemoteUnreachable(f"could not push to {remote}: {_stderr(proc)}")

    def update_ref(self, ref: str, new: str, old: str | None = None) -> None:
        """Point `ref` at `new` (a compare-and-swap when `old` is given)."""
        self.git("update-ref", "-m", "gptme-factory sync", ref, new, *([old] if old else []))

    def delete_ref(self, ref: str) -> None:
        """Delete `ref` if it exists."""
        _git(self.root, "update-ref", "-d", ref, check=False)

    def revs(self, *refs: str) -> list[str | None]:
        """The commit each of `refs` names (None for one that does not exist): one process."""
        names = [f"{r}^{{commit}}" for r in refs]
        if any("\n" in n or n.startswith("-") for n in names):
            raise GitError(f"not a revision: {refs!r}")
        proc = _git(self.root, "cat-file", "--batch-check=%(objectname)",
                    input="".join(f"{n}\n" for n in names).encode(), check=False)
        lines = proc.stdout.decode().splitlines()
        return [line if re.fullmatch(r"[0-9a-f]{40,64}", line) else None for line in lines] \
            if len(lines) == len(refs) else [self.rev(r) for r in refs]

    def merge_base(self, a: str, b: str) -> str | None:
        """A best common ancestor of two commits (None when they share no history)."""
        proc = _git(self.root, "merge-base", a, b, check=False)
        return proc.stdout.decode().strip() or None

    def count_commits(self, exclude: str | None, include: str) -> int:
        """How many commits `include` has that `exclude` does not."""
        out = self.git("rev-list", "--count", include, *([f"^{exclude}"] if exclude else []))
        return int(out.decode().strip() or 0)

    def commits_between(self, exclude: str | None, include: str) -> list[CommitChanges]:
        """The commits of `include` not in `exclude`, oldest first, with their changes.

        Changes are against each commit's first parent, as path -> (mode, blob id), or None
        for a deletion; a merge commit lists none (`parents` says it is one).
        """
        args = ["log", "--reverse", "--raw", "--no-renames", "--no-abbrev", "-z",
                "--format=%x01%H%x00%P%x00%(trailers:key=Factory-Hash,valueonly,separator=,)"
                "%x00", include, *([f"^{exclude}"] if exclude else []), "--"]
        out = self.git(*args).decode("utf-8", "surrogateescape")
        commits: list[CommitChanges] = []
        for chunk in out.split("\x01")[1:]:
            fields = chunk.split("\0")
            cid, parents = fields[0], tuple(fields[1].split())
            events = len([h for h in fields[2].split(",") if h.strip()])
            commits.append(CommitChanges(cid, parents, _raw_changes(fields[3:]), events))
        return commits

    def diff_trees(self, old: str, new: str) -> dict[str, tuple[str, str] | None]:
        """Every path that differs between two commits: path -> (mode, blob id) or None."""
        out = self.git("diff-tree", "-r", "--raw", "--no-renames", "--no-abbrev", "-z",
                       old, new, "--").decode("utf-8", "surrogateescape")
        return _raw_changes(out.split("\0"))

    def entries_at(self, rev: str, paths: list[str]) -> dict[str, tuple[str, str]]:
        """Path -> (mode, blob id) at `rev`, for those of `paths` that exist there."""
        if not paths:
            return {}
        out = self.git("ls-tree", "-r", "-z", "--full-tree", rev, "--", *paths)
        found: dict[str, tuple[str, str]] = {}
        for item in out.decode("utf-8", "surrogateescape").split("\0"):
            meta, _, path = item.partition("\t")
            if path:
                mode, _, oid = meta.split(" ")
                found[path] = (mode, oid)
        return found

    def commit_texts(self, ids: list[str]) -> dict[str, bytes]:
        """The raw commit objects of `ids` (one `cat-file --batch`)."""
        if not ids:
            return {}
        cat = subprocess.Popen(
            ["git", "cat-file", "--batch"], cwd=self.root, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=_git_env(),
        )
        try:
            objs = _cat(cat, ids)
        finally:
            cat.communicate()
        out: dict[str, bytes] = {}
        for cid, obj in zip(ids, objs, strict=True):
            if obj is None or obj[1] != "commit":
                raise GitError(f"commit {cid} is missing from the repository")
            out[cid] = obj[2]
        return out

    def reverts(self, ids: list[str]) -> set[str]:
        """Those of `ids` that are reverts: their message says "This reverts commit <id>"."""
        return {cid for cid, raw in self.commit_texts(ids).items()
                if _REVERT_RE.search(raw.decode("utf-8", "replace"))}

    def replay(self, onto: str,
               commits: Sequence[tuple[str, Mapping[str, tuple[str, str] | None]]]) -> str:
        """Replay `commits` (old commit, its changes) on top of `onto`; returns the new tip.

        Each new commit keeps the old one's author, committer and message. One `git fast-import` writes them all (a small pack), whatever their number; the
        caller has already checked that the changes apply (sync.py).
        """
        if not commits:
            return onto
        texts = self.commit_texts([cid for cid, _ in commits])
        ref = f"refs/factory/replay-{os.getpid()}"
        stream = bytearray(b"feature done\n")
        for i, (cid, changes) in enumerate(commits):
            headers, _, message = texts[cid].partition(b"\n\n")
            stream += b"commit " + ref.encode() + b"\nmark :%d\n" % (i + 1)
            for line in headers.split(b"\n"):
                key = line.partition(b" ")[0]
                if key in (b"author", b"committer"):
                    stream += line + b"\n"
                elif key == b"encoding":
                    stream += line + b"\n"
            stream += b"data %d\n" % len(message) + message + b"\n"
            if i == 0:
                stream += b"from " + onto.encode() + b"\n"
            for path, entry in changes.items():
                quoted = _fi_path(path)
                if entry is None:
                    stream += b"D " + quoted + b"\n"
                else:
                    stream += f"M {entry[0]} {entry[1]} ".encode() + quoted + b"\n"
        stream += b"get-mark :%d\ndone\n" % len(commits)
        try:
            out = self.git("fast-import", "--quiet", "--done", "--force", input=bytes(stream))
        finally:
            self.delete_ref(ref)
        tip = out.decode().strip().splitlines()[-1:] if out.strip() else []
        if not tip or not re.fullmatch(r"[0-9a-f]{40,64}", tip[0]):
            raise GitError(f"git fast-import wrote no commit ({out[-200:]!r})")
        return tip[0]

    def switch_check(self, old: str, new: str) -> str | None:
        """Why the index and working tree could not move from `old` to `new` (None: they can).

        The reason is a change of the user's, or an untracked file, that the move would
        overwrite.
        """
        proc = self._index_git("read-tree", "-m", "-u", "-n", old, new)
        return None if proc.returncode == 0 else _stderr(proc)

    def move_head(self, old: str, new: str, reason: str) -> None:
        """Move HEAD (and its branch) from `old` to `new`, the index and working tree with it.

        As `git checkout` would: the user's staged and unstaged changes to other paths stay.
        Hold `exclusive()`. A journal makes a kill half-way recoverable.

        LedgerConflict if HEAD is not `old` any more; GitError if the working tree could not
        follow (HEAD is put back first, so nothing changed).
        """
        journal = self.git_dir / _SYNC_JOURNAL
        pending = journal.with_name(journal.name + ".tmp")
        pending.write_text(json.dumps({"old": old, "new": new}))
        os.replace(pending, journal)
        proc = _git(self.root, "update-ref", "-m", reason, "HEAD", new, old, check=False)
        if proc.returncode != 0:
            journal.unlink(missing_ok=True)
            raise LedgerConflict(f"HEAD moved during the sync (another git command ran); "
                                 f"nothing was changed: retry ({_stderr(proc)})")
        switched = self._index_git("read-tree", "-m", "-u", old, new)
        if switched.returncode != 0:
            _git(self.root, "update-ref", "-m", "gptme-factory: sync undone", "HEAD", old, new,
                 check=False)
            journal.unlink(missing_ok=True)
            raise GitError(f"the working tree could not be updated, so nothing was changed: "
                           f"{_stderr(switched)}")
        journal.unlink(missing_ok=True)

    def trailers_between(self, exclude: str | None, include: str,
                         keys: tuple[str, ...]) -> list[dict[str, list[str]]]:
        """For each commit of `include` not in `exclude`: trailer key -> values, for `keys`."""
        fmt = "%x01" + "%x02".join(
            f"%(trailers:key={k},valueonly,separator=%x03)" for k in keys)
        out = self.git("log", f"--format={fmt}", include,
                       *([f"^{exclude}"] if exclude else []), "--")
        rows: list[dict[str, list[str]]] = []
        for chunk in out.decode("utf-8", "replace").split("\x01")[1:]:
            parts = chunk.rstrip("\n").split("\x02")
            rows.append({k: [v.strip() for v in part.split("\x03") if v.strip()]
                         for k, part in zip(keys, parts, strict=False)})
        return rows


@dataclass(frozen=True)
class CommitChanges:
    """One commit and what it changed against its first parent (None: deleted)."""

    id: str
    parents: tuple[str, ...]
    changes: dict[str, tuple[str, str] | None]
    events: int = 0  # ledger events it records (its Factory-Hash trailers)

    @property
    def is_merge(self) -> bool:
        """True for a commit with more than one parent."""
        return len(self.parents) > 1


def _raw_changes(fields: list[str]) -> dict[str, tuple[str, str] | None]:
    """Path -> (new mode, new blob id), or None for a deletion, from `--raw -z` fields."""
    changes: dict[str, tuple[str, str] | None] = {}
    it = iter(fields)
    for field_ in it:
        meta = field_.strip("\n")
        if not meta.startswith(":"):
            continue
        path = next(it, "")
        _, new_mode, _, new_oid, status = meta[1:].split(" ")
        changes[path] = None if status.startswith("D") else (new_mode, new_oid)
    return changes


def _check_remote(remote: str) -> None:
    if not remote or remote.startswith("-") or any(c in remote for c in "\0\n "):
        raise GitError(f"{remote!r} is not a git remote name")


def _fi_path(path: str) -> bytes:
    """A path as git fast-import reads it (C-quoted when it has to be)."""
    raw = path.encode("utf-8", "surrogateescape")
    if b"\n" in raw or raw.startswith(b'"'):
        return b'"' + raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"').replace(
            b"\n", b"\\n") + b'"'
    return raw
