"""Where a cell works: its own linked git worktree of the artifact's target, never a working tree.

The repo is the artifact's target (targets/registry.py): a project's own clone, or the brain.

- Builders get a new branch `factory/<cell>` at the stage's base commit (in the target: its
  base branch as fetched when the stage started, never a ledger commit). Only committed work
  survives: the worktree is removed when the cell is reaped, the branch stays for the gate.
- Read-only roles (scout, verifier, packager, analyst) get a *detached* throw-away checkout:
  of the artifact's built commit when there is one (the verifier sees exactly what it
  verifies), else of the stage's base. Whatever they change there is discarded, and reported.

Worktrees live in the repo's git directory (`GitRepo.worktree_base()`), out of the user's
tree; the user's branches and uncommitted work are untouched. The cell's runtime files that
must stay out of commits (gptodo's `state/sessions` link) are listed in that repository's
`info/exclude`.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from ..errors import GitError, NotAGitRepo
from ..ledger.gitstore import GitRepo
from ..line.replay import ArtifactView

BRANCH_PREFIX = "factory/"


@dataclass(frozen=True)
class Workdir:
    """A cell's working directory."""

    path: Path
    read_only: bool
    branch: str | None
    commit: str


def built_commit(view: ArtifactView) -> str | None:
    """The latest commit a passed gate accepted on the artifact's branch, if any.

    The build's, else the reproduction's.
    """
    return view.branch_commit()


def prepare(repo: GitRepo, view: ArtifactView, cell: str, read_only: bool,
            base_commit: str | None) -> Workdir:
    """Create the worktree a cell works in."""
    path = repo.worktree_base() / cell
    if path.exists():
        repo.worktree_remove(path)
        shutil.rmtree(path, ignore_errors=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    if read_only:
        commit = built_commit(view) or base_commit or repo.head()
        if commit is None:
            raise GitError("the brain repo has no commit yet: commit something first")
        repo.worktree_add(path, commit)
        return Workdir(path, True, None, commit)
    base = base_commit or repo.head()
    if base is None:
        raise GitError("the brain repo has no commit yet: commit something first")
    branch = f"{BRANCH_PREFIX}{cell}"
    repo.worktree_add(path, base, branch=branch)
    return Workdir(path, False, branch, base)


def repo_of(rec_repo: str, brain: GitRepo) -> GitRepo:
    """The repo a cell's worktree belongs to: its recorded target clone, else the brain."""
    if not rec_repo:
        return brain
    try:
        return GitRepo.discover(rec_repo)
    except (GitError, NotAGitRepo):  # the clone moved away; its worktree dir still goes
        return brain


def changed_files(repo: GitRepo, path: Path) -> list[str]:
    """Uncommitted changes left in a worktree (ignored files excluded)."""
    if not path.exists():
        return []
    try:
        out = GitRepo(path, path, repo.common_dir).status_porcelain()
    except GitError:
        return []
    return sorted({e[3:].decode("utf-8", "replace") for e in out.split(b"\0") if len(e) > 3})


def discard(repo: GitRepo, path: Path) -> None:
    """Remove a cell's worktree (a builder's branch and commits stay)."""
    repo.worktree_remove(path)
    shutil.rmtree(path, ignore_errors=True)


def ensure_excluded(repo: GitRepo, pattern: str) -> None:
    """Add `pattern` to the repository's info/exclude (shared by all its worktrees)."""
    path = repo.common_dir / "info" / "exclude"
    try:
        text = path.read_text("utf-8")
    except OSError:
        text = ""
    if pattern in text.splitlines():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    sep = "" if not text or text.endswith("\n") else "\n"
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(f"{sep}# gptme-factory: runtime files of cells\n{pattern}\n")
