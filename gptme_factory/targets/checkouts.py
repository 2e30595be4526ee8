"""Throw-away checkouts of a target at an exact commit, for gates (and anyone who must look).

`checkout(repo, commit, label)` makes a detached linked worktree of `repo` at `commit` in
the repo's own git directory (`<git dir>/factory-worktrees/<label>-<pid>-<hex>`), yields its
path and removes it afterwards: never inside a working tree, never on a branch, so the
user's branches and uncommitted work in the clone are untouched. A fresh directory per use,
so two gates racing on one artifact never share (or remove) each other's checkout. `sweep`
removes checkouts left by a process that was killed (its pid is gone).
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..ledger.gitstore import GitRepo


@contextmanager
def checkout(repo: GitRepo, commit: str, label: str) -> Iterator[Path]:
    """A detached, throw-away checkout of `commit`, removed when the block ends."""
    sweep(repo, label.split("-", 1)[0])
    path = repo.worktree_base() / f"{label}-{os.getpid()}-{secrets.token_hex(4)}"
    path.parent.mkdir(parents=True, exist_ok=True)
    repo.worktree_add(path, commit)
    try:
        yield path
    finally:
        repo.worktree_remove(path)
        shutil.rmtree(path, ignore_errors=True)


def sweep(repo: GitRepo, prefix: str) -> None:
    """Remove `prefix-*` checkouts whose process is gone (an `advance` that was killed)."""
    base = repo.worktree_base()
    if not base.is_dir():
        return
    for path in base.glob(f"{prefix}-*-*-*"):
        pid = path.name.rsplit("-", 2)[-2]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            repo.worktree_remove(path)
            shutil.rmtree(path, ignore_errors=True)
        except PermissionError:
            continue  # alive, another user's
