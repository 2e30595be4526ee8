"""The one module that talks to git.

Ledger commits go through plumbing, never through the user's index: new blobs are hashed
from temporary files, only the trees on the changed paths are rebuilt (`ls-tree`/`mktree`),
the commit is made with `commit-tree`, and `HEAD` moves with `update-ref NEW OLD`, a
compare-and-swap. Only then are the temporary files renamed into place and just those paths
refreshed in the real index, so the user's other staged and unstaged work is untouched and
the cost grows with the depth and width of the changed directories, not the repo size.

Writers are serialized by a `flock` on a file in the git directory; a small journal makes a
writer killed half-way recoverable: the next writer finishes (or discards) its work, so an
event is either fully committed or absent.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .errors import GitError, LedgerConflict, NotAGitRepo

ZERO_OID = "0" * 40
_JOURNAL = "factory-pending.json"
_LOCKFILE = "factory.lock"


@dataclass(frozen=True)
class LogEntry:
    """One commit touching a path, as `log` shows it."""

    commit: str
    time: str
    author: str
    subject: str
    trailers: dict[str, str]


def _git(
    cwd: Path, *args: str, input: bytes | None = None, check: bool = True
) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ)
    env.setdefault("GIT_TERMINAL_PROMPT", "0")
    proc = subprocess.run(
        ["git", *args], cwd=cwd, input=input, capture_output=True, env=env, check=False
    )
    if check and proc.returncode != 0:
        msg = proc.stderr.decode("utf-8", "replace").strip() or f"exit {proc.returncode}"
        hint = ""
        if "Please tell me who you are" in msg or "empty ident" in msg:
            hint = " (set an identity: git config user.name NAME; git config user.email EMAIL)"
        raise GitError(f"git {args[0]} failed: {msg}{hint}")
    return proc


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

    def branch(self) -> str | None:
        """The current branch name, or None when HEAD is detached."""
        proc = _git(self.root, "symbolic-ref", "-q", "--short", "HEAD", check=False)
        return proc.stdout.decode().strip() or None

    # -- locking and recovery ---------------------------------------------------------

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the ledger's writer lock (blocking) and repair a half-finished write."""
        lock_path = self.common_dir / _LOCKFILE
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._recover()
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _recover(self) -> None:
        journal = self.git_dir / _JOURNAL
        if not journal.exists():
            return
        try:
            data = json.loads(journal.read_text())
        except (OSError, ValueError):
            journal.unlink(missing_ok=True)
            return
        committed = False
        head = self.head()
        if head is not None:
            committed = (
                _git(
                    self.root, "merge-base", "--is-ancestor", data["commit"], head, check=False
                ).returncode
                == 0
            )
        moved: list[str] = []
        for tmp, final in data["files"]:
            tmp_path, final_path = self.root / tmp, self.root / final
            if committed and tmp_path.exists():
                os.replace(tmp_path, final_path)
            elif tmp_path.exists():
                tmp_path.unlink()
            if committed:
                moved.append(final)
        if moved:
            self._refresh_index(moved)
        journal.unlink(missing_ok=True)

    # -- committing ---------------------------------------------------------------------

    def commit_files(self, files: Mapping[str, bytes], message: str) -> str:
        """Commit `files` (repo-relative path -> content) as one commit on HEAD.

        Must be called while holding `exclusive()`. Returns the new commit id. Raises
        LedgerConflict if HEAD moved during the write (nothing is left behind then).
        """
        tmp_pairs: list[tuple[str, str]] = []
        try:
            for rel, content in files.items():
                final = self.root / rel
                final.parent.mkdir(parents=True, exist_ok=True)
                tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
                with open(tmp, "wb") as fh:
                    fh.write(content)
                    fh.flush()
                    os.fsync(fh.fileno())
                tmp_pairs.append((str(tmp.relative_to(self.root)), rel))
            oids = (
                self.git("hash-object", "-w", "--no-filters", "--", *(t for t, _ in tmp_pairs))
                .decode()
                .split()
            )
            old = self.head()
            base_tree = self.git("rev-parse", f"{old}^{{tree}}").decode().strip() if old else None
            changes = {rel: oid for (_, rel), oid in zip(tmp_pairs, oids, strict=True)}
            tree = self._write_tree(base_tree, changes)
            args = ["commit-tree", tree]
            if old:
                args += ["-p", old]
            new = self.git(*args, input=message.encode("utf-8")).decode().strip()
            journal = self.git_dir / _JOURNAL
            journal.write_text(json.dumps({"commit": new, "files": tmp_pairs}))
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
                    "HEAD moved while the ledger was being written (another git command ran); "
                    "nothing was recorded: retry"
                )
        except BaseException:
            for tmp, _ in tmp_pairs:
                (self.root / tmp).unlink(missing_ok=True)
            raise
        for tmp, final in tmp_pairs:
            os.replace(self.root / tmp, self.root / final)
        self._refresh_index([final for _, final in tmp_pairs])
        (self.git_dir / _JOURNAL).unlink(missing_ok=True)
        return new

    def _refresh_index(self, paths: list[str]) -> None:
        # The user's git command may hold index.lock for a moment: retry briefly.
        for attempt in range(50):
            proc = _git(self.root, "update-index", "--add", "--", *paths, check=False)
            if proc.returncode == 0:
                return
            if b"index.lock" not in proc.stderr:
                break
            time.sleep(0.05 * (attempt + 1))
        raise GitError(
            "the ledger commit succeeded but the index could not be refreshed: "
            f"run `git update-index --add -- {' '.join(paths)}` ({proc.stderr.decode().strip()})"
        )

    def _write_tree(self, base_tree: str | None, changes: Mapping[str, str]) -> str:
        entries: dict[str, tuple[str, str, str]] = {}
        if base_tree:
            for line in self.git("ls-tree", "-z", base_tree).split(b"\0"):
                if not line:
                    continue
                meta, name = line.decode("utf-8", "surrogateescape").split("\t", 1)
                mode, kind, oid = meta.split()
                entries[name] = (mode, kind, oid)
        subdirs: dict[str, dict[str, str]] = {}
        for rel, oid in changes.items():
            head, sep, rest = rel.partition("/")
            if sep:
                subdirs.setdefault(head, {})[rest] = oid
            else:
                entries[head] = ("100644", "blob", oid)
        for name, sub in subdirs.items():
            existing = entries.get(name)
            sub_base = existing[2] if existing and existing[1] == "tree" else None
            entries[name] = ("040000", "tree", self._write_tree(sub_base, sub))
        listing = b"".join(
            f"{mode} {kind} {oid}\t{name}".encode("utf-8", "surrogateescape") + b"\0"
            for name, (mode, kind, oid) in entries.items()
        )
        return self.git("mktree", "-z", input=listing).decode().strip()

    # -- reading history ----------------------------------------------------------------

    def log(self, path: str) -> list[LogEntry]:
        """Commits that touched `path`, oldest first, with their trailers."""
        if self.head() is None:
            return []
        import git  # GitPython: only on this read path, never on import of the package

        repo = git.Repo(self.root)
        out: list[LogEntry] = []
        for commit in repo.iter_commits("HEAD", paths=path):
            trailers = {k: v[-1] for k, v in commit.trailers_dict.items() if v}
            out.append(
                LogEntry(
                    commit=commit.hexsha,
                    time=commit.authored_datetime.isoformat(),
                    author=f"{commit.author.name} <{commit.author.email}>",
                    subject=str(commit.summary),
                    trailers=trailers,
                )
            )
        repo.close()
        out.reverse()
        return out

    def status_porcelain(self) -> bytes:
        """`git status --porcelain=v1 -z` output, for tests and doctor."""
        return self.git("status", "--porcelain=v1", "-z", "--untracked-files=all")

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
        return sorted(p.decode("utf-8", "surrogateescape") for p in out.split(b"\0") if p)

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

    def worktree_base(self) -> Path:
        """Where the factory keeps linked worktrees: inside the git dir, out of the work tree."""
        return self.common_dir / "factory-worktrees"
