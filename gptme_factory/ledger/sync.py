"""Sharing one ledger between clones through an ordinary git remote: fetch, integrate, push.

The distributed engine is git itself. `sync` fetches the remote's branch, brings the other
clones' commits in, and pushes this clone's, retrying when another clone pushed first:

1. **Fetch** the branch (and the builders' `factory/*` branches) into remote-tracking refs.
2. **Integrate** (under the writer lock). Nothing incoming: nothing to do. Otherwise this
   clone's unpushed commits are replayed on top of the remote's tip (a rebase, so history
   stays one line and no merge commit is made per sync). That is safe because they only add
   ledger files whose names carry their own hash: two clones never write the same path. It
   is refused, changing nothing, when an unpushed commit is the user's own (it touches
   files outside the ledger: syncing would publish it; `sync.own_commits: push` allows
   that), when both sides changed one path differently (factory.yaml, say), when an
   unpushed commit is a merge, or when the incoming files would overwrite the user's
   uncommitted changes or untracked files. The index and working tree then follow HEAD as
   `git checkout` would, leaving the user's other staged and unstaged work as it was.
3. **Push**: a plain push, accepted by git only as a fast-forward — a compare-and-swap on
   the remote branch. Rejected means someone else pushed first: fetch and integrate again.

A fork can still reach the ledger (work done offline, a forced push): `sync` names the
streams where one appeared; `gptme-factory resolve` settles it.

Claims (line/claims.py) use the same steps through `push_claim`: the claim's commit is
pushed *before* it lands locally (GitRepo.commit_files' `before_land`), so a claim that
lost the race never touches HEAD. What moved is then integrated and the claim re-checked.

Settings come from factory.yaml's `sync` section (config.SyncConfig): with `sync.remote`
set every clone shares the ledger and claims go through the remote (unless `sync.auto` is
off or GPTME_FACTORY_OFFLINE=1); without it `gptme-factory sync` still works against the
branch's upstream. What the last sync brought in, and from which hosts, is kept in
factory/.runtime/sync.json for `status`.
"""

from __future__ import annotations

import os
import random
import re
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ..errors import (
    ConfigError,
    FactoryError,
    GitError,
    LedgerConflict,
    SyncRefused,
    UsageError,
)
from . import runtime
from .gitstore import CommitChanges
from .store import Ledger

if TYPE_CHECKING:
    from .syncconfig import SyncConfig

OFFLINE_ENV = "GPTME_FACTORY_OFFLINE"
# git's words when a checkout would clobber the user's changes or untracked files
_OVERWRITE_RE = re.compile(r"not uptodate|would be overwritten|would be removed")
PUSH_ATTEMPTS = 12
NET_TIMEOUT_S = 120.0
STATE = "sync"  # factory/.runtime/sync.json


@dataclass(frozen=True)
class Remote:
    """Where the ledger is shared: a git remote and the branch on it (and ours, `local`)."""

    name: str
    branch: str
    local: str = ""

    @property
    def ref(self) -> str:
        """The branch's ref on the remote."""
        return f"refs/heads/{self.branch}"

    @property
    def tracking(self) -> str:
        """The remote-tracking ref of it in this clone."""
        return f"refs/remotes/{self.name}/{self.branch}"

    def refspecs(self) -> list[str]:
        """What a fetch brings: the branch, and the builders' branches (their commits)."""
        return [f"+{self.ref}:{self.tracking}",
                f"+refs/heads/factory/*:refs/remotes/{self.name}/factory/*"]

    def __str__(self) -> str:
        return f"{self.name}/{self.branch}"


def net_timeout() -> float:
    """How long one fetch or push may take: $GPTME_FACTORY_NET_TIMEOUT, else 120 s."""
    try:
        value = float(os.environ.get("GPTME_FACTORY_NET_TIMEOUT", NET_TIMEOUT_S))
    except ValueError:
        return NET_TIMEOUT_S
    return value if value > 0 else NET_TIMEOUT_S


def offline() -> bool:
    """True when $GPTME_FACTORY_OFFLINE asks every command to stay off the network."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def _local_branch(ledger: Ledger) -> str:
    branch = ledger.repo.branch()
    if branch is None:
        raise UsageError("HEAD is detached: check out the brain's branch (`git switch "
                         "BRANCH`) before syncing the ledger")
    return branch


def settings(ledger: Ledger) -> SyncConfig | None:
    """factory.yaml's `sync` section, validated, without loading the rest of the config.

    When the ledger's config is loaded already, its section; otherwise only this section is
    parsed and validated (a `sync` that does not start the whole configuration's import).
    """
    if "config" in ledger.__dict__:
        return ledger.config.sync
    if "_sync_settings" in ledger.__dict__:
        cached: SyncConfig | None = ledger.__dict__["_sync_settings"]
        return cached
    from pydantic import ValidationError

    from . import yamlio
    from .syncconfig import SyncConfig

    path = ledger.dir / "factory.yaml"
    source = ledger.relpath(path)
    raw = yamlio.loads(path.read_bytes(), source).get("sync")
    try:
        cfg = None if raw is None else SyncConfig.model_validate(raw)
    except ValidationError as exc:
        from .records import format_validation_error

        lines = "\n".join(f"  {source}: sync.{p}" for p in format_validation_error(exc))
        raise ConfigError(f"invalid factory config:\n{lines}") from None
    ledger.__dict__["_sync_settings"] = cfg
    return cfg


def configured(ledger: Ledger) -> Remote | None:
    """The remote factory.yaml shares the ledger through (`sync.remote`), if any."""
    cfg = settings(ledger)
    if cfg is None or not cfg.remote:
        return None
    local = _local_branch(ledger)
    return Remote(cfg.remote, cfg.branch or local, local)


def shared(ledger: Ledger) -> Remote | None:
    """The remote claims go through: `sync.remote` set, `sync.auto` on, not offline."""
    cfg = settings(ledger)
    if cfg is None or not cfg.remote or not cfg.auto or offline():
        return None
    return configured(ledger)


def remote_for(ledger: Ledger) -> Remote:
    """The remote `sync` uses: factory.yaml's, else the branch's upstream (UsageError if none)."""
    remote = configured(ledger)
    if remote is None:
        branch = _local_branch(ledger)
        up = ledger.repo.upstream(branch)
        if up is None:
            raise UsageError(
                f"no remote to sync the ledger with: set `sync: {{remote: origin}}` in "
                f"{ledger.rel}/factory.yaml (and commit it: every clone then claims through "
                f"it), or give {branch} an upstream (`git push -u origin {branch}`)")
        remote = Remote(*up, branch)
    elif ledger.repo.remote_url(remote.name) is None:
        raise UsageError(f"there is no git remote {remote.name!r} in {ledger.repo.root}: add "
                         f"it (`git remote add {remote.name} URL`) or fix sync.remote")
    return remote


# -- integrating what the remote has ------------------------------------------------------


@dataclass
class Integrated:
    """What integrating the remote's tip did."""

    old: str | None
    new: str | None
    incoming_commits: int = 0
    incoming_events: int = 0
    hosts: dict[str, int] = field(default_factory=dict)
    touched: set[str] = field(default_factory=set)  # ledger stream folders that changed there
    forks: list[str] = field(default_factory=list)  # streams where both sides appended
    mine: list[CommitChanges] = field(default_factory=list)  # ours, replayed on theirs
    checked: bool = False  # `mine` was checked against the policy


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


def stream_folder(ledger: Ledger, path: str) -> str | None:
    """The stream folder (`factory/artifacts/B/ID`, `factory/lines/NAME`) of a ledger path.

    Artifact folders in either layout (ledger/layout.py), by the path's shape alone.
    """
    from .layout import folder_of

    parts = path.split("/")
    base = ledger.rel.split("/")
    if len(parts) < len(base) + 3 or parts[: len(base)] != base:
        return None
    top = "/".join(parts[: len(base) + 1])
    if parts[len(base)] == "artifacts":
        folder = folder_of("/".join(parts[len(base) + 1:]))
        return f"{top}/{folder}" if folder else None
    if parts[len(base)] != "lines":
        return None
    return "/".join(parts[: len(base) + 2])


def _describe(ledger: Ledger, commits: list[CommitChanges]) -> str:
    texts = ledger.repo.commit_texts([c.id for c in commits[:3]])
    shown = []
    for c in commits[:3]:
        subject = texts[c.id].partition(b"\n\n")[2].split(b"\n", 1)[0].decode("utf-8", "replace")
        shown.append(f"{c.id[:10]} {subject[:60]!r}")
    more = f" and {len(commits) - 3} more" if len(commits) > 3 else ""
    return ", ".join(shown) + more


def _mine(ledger: Ledger, remote: Remote, theirs: str | None, ours: str) -> list[CommitChanges]:
    """The commits of this clone the remote lacks, checked against the policy (SyncRefused)."""
    mine = ledger.repo.commits_between(theirs, ours)
    merges = [c for c in mine if c.is_merge]
    if merges:
        raise SyncRefused(
            f"your branch has merge commits that {remote} lacks ({_describe(ledger, merges)}); "
            f"the factory only replays plain ledger commits: push them yourself (`git pull "
            f"{remote.name} {remote.branch} && git push {remote.name} HEAD:{remote.branch}`), "
            "then sync again; nothing was changed")
    cfg = settings(ledger)
    policy = cfg.own_commits if cfg is not None else "refuse"
    # an empty commit is the user's too: the factory never makes one
    own = [c for c in mine
           if not c.changes or any(not _under(p, ledger.rel) for p in c.changes)]
    if own and policy == "refuse":
        n = len(own)
        raise SyncRefused(
            f"{n} commit{'s' if n > 1 else ''} of your own on {remote.local or 'this branch'} "
            f"{'are' if n > 1 else 'is'} not on {remote} ({_describe(ledger, own)}) and "
            f"touch{'' if n > 1 else 'es'} files outside {ledger.rel}/: the factory pushes "
            f"ledger commits only. Push them yourself (`git pull --rebase {remote.name} "
            f"{remote.branch} && git push {remote.name} HEAD:{remote.branch}`) or move them to "
            f"another branch, then sync again (or set `sync.own_commits: push` in "
            f"{ledger.rel}/factory.yaml); nothing was changed")
    return mine


def integrate(ledger: Ledger, remote: Remote, theirs: str | None, *,
              ours: str | None = None, touched: bool = False) -> Integrated:
    """Bring the remote's tip `theirs` into HEAD (hold the writer lock); see the module doc.

    `ours` is HEAD when the caller knows it. `touched`: also say which ledger streams the
    remote changed (a claim needs that; a plain sync only to find forks). SyncRefused, with
    nothing changed, when integrating would publish or overwrite the user's own work.
    """
    repo = ledger.repo
    ours = ours or repo.head()
    if ours is None:
        raise UsageError("the brain repo has no commit yet: commit something first")
    result = Integrated(ours, ours)
    if theirs is None or theirs == ours:
        return result
    base = repo.merge_base(ours, theirs)
    if base == theirs:  # nothing incoming; what is ours is checked before any push
        return result
    if base is None:
        raise SyncRefused(f"{remote} shares no history with {remote.local or 'this branch'}: "
                          "it is not a clone of this brain; nothing was changed")
    busy = repo.operation_in_progress()
    if busy is not None:
        raise SyncRefused(f"{busy[0]} is in progress in {repo.root}: finish it ({busy[1]}), "
                          "then sync; nothing was changed")
    mine = [] if base == ours else _mine(ledger, remote, theirs, ours)
    result.mine, result.checked = mine, True
    incoming = repo.diff_trees(base, theirs) if mine or touched else {}
    if mine:
        final: dict[str, tuple[str, str] | None] = {}
        for c in mine:
            final.update(c.changes)
        clash = sorted(p for p, entry in final.items() if p in incoming and incoming[p] != entry)
        if clash:
            raise SyncRefused(
                f"{', '.join(clash[:5])} changed both here and on {remote}: merge "
                f"{'it' if len(clash) == 1 else 'them'} yourself (`git pull {remote.name} "
                f"{remote.branch}`), then sync again; nothing was changed")
        current: dict[str, tuple[str, str] | None] = dict(repo.entries_at(theirs, sorted(final)))
        plan: list[tuple[str, dict[str, tuple[str, str] | None]]] = []
        for c in mine:
            delta = {p: e for p, e in c.changes.items() if current.get(p) != e}
            if delta or not c.changes:  # one whose changes the remote has already is dropped
                plan.append((c.id, delta))
                current.update(delta)
        kept = {cid for cid, _ in plan}
        result.mine = [c for c in mine if c.id in kept]
        new = repo.replay(theirs, plan)
    else:
        new = theirs
    try:
        repo.move_head(ours, new, f"gptme-factory: sync with {remote}")
    except GitError as exc:
        if not _OVERWRITE_RE.search(str(exc)):
            raise
        raise SyncRefused(
            f"the commits coming from {remote} would overwrite uncommitted or untracked files "
            f"here: commit, stash or move them, then sync again; nothing was changed "
            f"(git: {' '.join(str(exc).split())[:600]})") from None
    result.new = new
    result.touched = {f for p in incoming if (f := stream_folder(ledger, p))}
    rows = repo.trailers_between(ours, theirs, ("Factory-Host", "Factory-Hash"))
    result.incoming_commits = len(rows)
    for row in rows:
        events = len(row.get("Factory-Hash", []))
        result.incoming_events += events
        for host in row.get("Factory-Host", []) or ["(no host)"]:
            result.hosts[host] = result.hosts.get(host, 0) + events
    mine_folders = {f for c in mine for p in c.changes if (f := stream_folder(ledger, p))}
    result.forks = sorted(_forked(ledger, result.touched & mine_folders))
    return result


def _forked(ledger: Ledger, folders: Iterable[str]) -> list[str]:
    """Which of these stream folders now hold a fork (both sides appended to them)."""
    from .kinds import ARTIFACTS, LINES

    out = []
    for folder in folders:
        kind, _, sid = folder.removeprefix(ledger.rel + "/").partition("/")
        try:
            if kind == ARTIFACTS.folder:
                name = sid.rpartition("/")[2]  # `B/S/ID` fanned out, `B/ID` shallow, `ID` flat
                stream: Any = ledger.read(name, tolerant=True)
            elif kind == LINES.folder:
                stream, name = ledger.read_line(sid, tolerant=True), f"line:{sid}"
            else:
                continue
        except FactoryError:
            continue
        if stream.forks:
            out.append(name)
    return out


def fetch(ledger: Ledger, remote: Remote) -> str | None:
    """Fetch the remote's branch; its tip (None while the remote has no such branch)."""
    if not ledger.repo.fetch(remote.name, remote.refspecs(), timeout_s=net_timeout(),
                             missing_ok=True):
        ledger.repo.delete_ref(remote.tracking)
        return None
    return ledger.repo.rev(remote.tracking)


# -- sync ------------------------------------------------------------------------------------


@dataclass
class SyncReport:
    """What one `sync` did."""

    remote: str
    offline: bool
    head: str | None = None
    incoming_commits: int = 0
    incoming_events: int = 0
    hosts: dict[str, int] = field(default_factory=dict)
    pushed_commits: int = 0
    pushed_events: int = 0
    unpushed_commits: int = 0
    attempts: int = 0
    forks: list[str] = field(default_factory=list)
    at: str = ""

    def to_json(self) -> dict[str, Any]:
        """Plain dict."""
        return asdict(self)

    def lines(self) -> list[str]:
        """The report in words."""
        out = []
        if self.incoming_commits:
            hosts = ", ".join(f"{h}: {n}" for h, n in sorted(self.hosts.items()))
            out.append(f"in:  {self.incoming_events} event(s) in {self.incoming_commits} "
                       f"commit(s) from {self.remote}" + (f" ({hosts})" if hosts else ""))
        else:
            out.append(f"in:  nothing new from {self.remote}")
        if self.offline:
            out.append(f"out: offline: {self.unpushed_commits} commit(s) not pushed yet "
                       "(run `gptme-factory sync` when online)")
        elif self.pushed_commits:
            out.append(f"out: pushed {self.pushed_events} event(s) in {self.pushed_commits} "
                       f"commit(s) to {self.remote}"
                       + (f" ({self.attempts} attempts: the remote moved meanwhile)"
                          if self.attempts > 1 else ""))
        else:
            out.append(f"out: nothing to push; {self.remote} is up to date")
        for name in self.forks:
            out.append(f"fork: {name} was advanced both here and elsewhere: keep one side "
                       f"with `gptme-factory resolve {name} --keep EVENT`")
        return out


def now_iso() -> str:
    """The current time, ISO 8601, UTC, to the second."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def _remember(ledger: Ledger, remote: Remote, report: SyncReport) -> None:
    runtime.write_state(ledger, STATE, {**report.to_json(), "branch": remote.local})


def sync(ledger: Ledger, *, offline_only: bool = False,
         attempts: int = PUSH_ATTEMPTS) -> SyncReport:
    """Fetch, integrate and push, retrying a lost race.

    `offline_only`: integrate what the last fetch brought, push nothing. SyncRefused (with
    nothing changed) where syncing would publish or overwrite the user's own work.
    """
    remote = remote_for(ledger)
    repo = ledger.repo
    report = SyncReport(str(remote), offline_only, at=now_iso())
    for attempt in range(1, attempts + 1):
        report.attempts = attempt
        with ledger.locked():
            if offline_only:
                theirs = repo.rev(remote.tracking)
                if theirs is None:
                    break  # never fetched: nothing known of the remote yet
            else:
                theirs = fetch(ledger, remote)
                if theirs is None:
                    raise SyncRefused(
                        f"{remote.name} has no branch {remote.branch} yet: publish the brain "
                        f"once yourself (`git push -u {remote.name} HEAD:{remote.branch}`), "
                        "then sync; nothing was changed")
            done = integrate(ledger, remote, theirs)
            report.incoming_commits += done.incoming_commits
            report.incoming_events += done.incoming_events
            for host, n in done.hosts.items():
                report.hosts[host] = report.hosts.get(host, 0) + n
            report.forks = sorted({*report.forks, *done.forks})
            head = report.head = done.new
            if head is None or head == theirs:
                break
            mine = done.mine if done.checked else _mine(ledger, remote, theirs, head)
            if offline_only:
                report.unpushed_commits = len(mine)
                break
            if repo.push_ref(remote.name, head, remote.ref):
                report.pushed_commits = len(mine)
                report.pushed_events = sum(c.events for c in mine)
                break
        backoff(attempt)
    else:
        raise LedgerConflict(
            f"{remote} kept moving: {attempts} pushes in a row lost the race to other clones; "
            "what was integrated stays; run `gptme-factory sync` again")
    _remember(ledger, remote, report)
    return report


def backoff(attempt: int) -> None:
    """Wait a little, more after each lost race, so racing clones spread out."""
    time.sleep(random.uniform(0, min(0.05 * 2 ** attempt, 1.0)))


# -- claims: pushing a commit before it lands ------------------------------------------------


class RemoteMoved(LedgerConflict):
    """The remote branch moved since this clone last saw it: the pushed commit was refused."""


def push_claim(ledger: Ledger, remote: Remote, commit: str) -> None:
    """Push `commit` (a child of HEAD) to the remote's branch, or raise RemoteMoved.

    Used as GitRepo.commit_files' `before_land`: the commit lands locally only once it is on
    the remote. Refuses (SyncRefused) when HEAD holds the user's own unpushed commits.
    """
    repo = ledger.repo
    head, tracked = repo.revs("HEAD", remote.tracking)
    if head is not None and head != tracked:
        _mine(ledger, remote, tracked, head)
    if not repo.push_ref(remote.name, commit, remote.ref):
        raise RemoteMoved(f"{remote} moved since this clone last fetched it")
    # (git moved the remote-tracking ref with the push: `status` counts from it)


def catch_up(ledger: Ledger, remote: Remote) -> Integrated:
    """After a lost push: fetch and integrate what moved (hold the writer lock)."""
    return integrate(ledger, remote, fetch(ledger, remote), touched=True)


# -- what status shows ----------------------------------------------------------------------


@dataclass
class Pending:
    """The shared ledger as this clone sees it, for `status`."""

    remote: str
    unpushed_commits: int | None
    last: dict[str, Any] | None


def pending(ledger: Ledger) -> Pending | None:
    """Unpushed commits and the last sync, without loading the config (None: never synced)."""
    last = runtime.read_state(ledger, STATE)
    if not last or not isinstance(last.get("remote"), str):
        return None
    name, _, branch = str(last["remote"]).partition("/")
    repo = ledger.repo
    unpushed: int | None = None
    head = repo.head()
    if head is not None and repo.rev(f"refs/remotes/{name}/{branch}") is not None:
        unpushed = repo.count_commits(f"refs/remotes/{name}/{branch}", head)
    return Pending(str(last["remote"]), unpushed, last)


__all__ = [
    "OFFLINE_ENV", "Integrated", "Pending", "Remote", "RemoteMoved", "SyncReport", "catch_up",
    "configured", "fetch", "integrate", "offline", "pending", "push_claim", "remote_for",
    "shared", "stream_folder", "sync",
]
