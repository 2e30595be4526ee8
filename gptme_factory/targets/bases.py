"""Where a stage starts in a target, and whether a commit reached it afterwards.

The base: for a target with a remote, the remote's base branch, fetched into the factory's
own ref `refs/factory/bases/<branch>` of the clone (`refresh`) — the user's branches, their
remote-tracking refs and working tree are never moved. Without a remote it is the clone's
local base branch, read only. For the brain it is the brain's HEAD, as it always was. The
commit is fixed in `stage_started` when the stage starts, so it does not move when the
ledger commits or the remote moves on.

`refresh` talks to the network and is called before the ledger lock is taken (spawn, `start`);
`base_commit` resolves locally, fetching only when the ref was never fetched.

Adoption (`landed`): a commit counts as landed once it is reachable from the target's base
branch (refreshed from the remote) or from one of the remote's tags, fetched into
`refs/factory/tags/` of the clone.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import GitError, TargetError
from .registry import Target

BASES = "refs/factory/bases/"
TAGS = "refs/factory/tags/"
FETCH_TIMEOUT_S = 300.0


def base_ref(target: Target) -> str:
    """The ref holding the base tip: the factory's fetched copy, or the local branch."""
    if target.base is None:
        return "HEAD"
    return f"{BASES}{target.base}" if target.remote else f"refs/heads/{target.base}"


def refresh(target: Target, *, timeout_s: float = FETCH_TIMEOUT_S) -> None:
    """Fetch the base branch from the target's remote (nothing for the brain or no remote)."""
    if target.is_brain or not target.remote or target.base is None:
        return
    try:
        target.repo.fetch(target.remote, [f"+refs/heads/{target.base}:{base_ref(target)}"],
                          timeout_s=timeout_s)
    except GitError as exc:
        raise TargetError(
            f"target {target.name!r}: could not fetch {target.base} from {target.remote} "
            f"({exc}); check the network and the branch (`gptme-factory target show "
            f"{target.name}`)") from None


def base_commit(target: Target) -> str:
    """The commit a stage starting now begins from, in the target's clone."""
    if target.is_brain:
        head = target.repo.head()
        if head is None:
            raise GitError("the brain repo has no commit yet: commit something first")
        return head
    ref = base_ref(target)
    commit = target.repo.resolve_commit(ref)
    if commit is None and target.remote:
        refresh(target)
        commit = target.repo.resolve_commit(ref)
    if commit is None:
        where = f"on {target.remote}" if target.remote else "in the clone"
        raise TargetError(f"target {target.name!r} has no branch {target.base!r} {where}: fix "
                          f"targets.{target.name}.base (`gptme-factory target show "
                          f"{target.name}`)")
    return commit


@dataclass
class Landing:
    """Whether a commit reached the target: where it was found, or why it was not checked."""

    landed: bool
    evidence: str


def landed(target: Target, commit: str, *, fetch: bool = True,
           timeout_s: float = FETCH_TIMEOUT_S) -> Landing:
    """Whether `commit` is reachable from the target's base branch or one of its release tags."""
    repo = target.repo
    if target.is_brain or target.base is None:
        return Landing(False, "the brain is its own target: nothing to check upstream")
    if fetch and target.remote:
        try:
            refresh(target, timeout_s=timeout_s)
            repo.fetch(target.remote, [f"+refs/tags/*:{TAGS}*"], timeout_s=timeout_s)
        except (GitError, TargetError) as exc:
            return Landing(False, f"could not fetch {target.remote}: {exc}")
    if repo.resolve_commit(commit) is None:
        return Landing(False, f"commit {commit[:12]} is not in the clone of {target.name}")
    ref = base_ref(target)
    where = f"{target.remote}/{target.base}" if target.remote else target.base
    if repo.resolve_commit(ref) and repo.is_ancestor(commit, ref):
        return Landing(True, f"commit {commit[:12]} is on {where}")
    tags = repo.refs_containing(commit, TAGS if target.remote else "refs/tags/")
    if tags:
        names = ", ".join(t.removeprefix(TAGS).removeprefix("refs/tags/") for t in tags[:3])
        return Landing(True, f"commit {commit[:12]} is in release tag(s) {names}")
    return Landing(False, f"commit {commit[:12]} is not on {where} nor in a release tag")
