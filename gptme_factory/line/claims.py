"""Claims: on a shared ledger, starting a stage wins only if its commit reaches the remote first.

When factory.yaml shares the ledger (`sync.remote`; ledger/sync.py), a stage's start is a
claim. Its commit is pushed to the remote branch *before* it lands locally — a plain push,
which git accepts only as a fast-forward: a compare-and-swap on the branch. Refused means
another clone pushed first: what moved is fetched and integrated, and

- if it touched none of the claim's streams, the same events are committed again on the new
  tip and pushed again (the claim is still good: nobody else wrote to that artifact);
- if it touched them, the claim's events are dropped (they were never written anywhere) and
  the artifact is read again: now claimed by someone else, the claimant gets ClaimLost —
  "stage build of X was claimed by CELL on HOST at TIME" — and otherwise `start_stage`
  starts over on the new state. No fork is ever created by two racing claims.

A claim carries a lease (`host`, `lease_until` on `stage_started`; `sync.lease_s`, 15 min by
default). The holder renews it with a small `lease_renewed` event, pushed the same way, at
most once per half lease: when the cell reports progress, and from its watchdog while its
process lives — so renewal costs a commit every few minutes, never one per progress tick. A
claim whose lease expired without a handoff (its holder died) can be taken over (`start
--take-over`): a `claim_taken_over` event ends the dead cell's attempt and the new
`stage_started` follows in the same commit, itself a claim. A holder that comes back learns
it lost the claim on its next renewal, and its handoff is refused.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from ..errors import (
    ArtifactNotFound,
    ClaimLost,
    FactoryError,
    LedgerConflict,
    RemoteUnreachable,
    UsageError,
)
from ..ledger import runtime
from ..ledger import sync as ledger_sync
from ..ledger.config import COMMIT_GATES
from ..ledger.gitstore import GitRepo
from ..ledger.records import ClaimTakenOver, LeaseRenewed, parse_cell_id
from ..ledger.store import Ledger
from ..ledger.stream import Stored
from ..targets.registry import of_intake
from .replay import ArtifactView, CellView
from .transitions import load, record

CLAIM_ATTEMPTS = 12
BUILD_PREFIX = "factory/"  # a builder's branch: factory/<cell> (cells/worktrees.py)


class StreamMoved(LedgerConflict):
    """Another clone wrote to a stream this transaction appended to; its events were dropped."""


def claim_remote(ledger: Ledger) -> ledger_sync.Remote | None:
    """The remote claims go through (None: the ledger is not shared, or we are offline)."""
    return ledger_sync.shared(ledger)


def lease_s(ledger: Ledger) -> float:
    """How long a claim holds unrenewed."""
    cfg = ledger.config.sync
    return cfg.lease_s if cfg is not None else 900.0


def _when(at: datetime | None) -> str:
    return at.isoformat() if at is not None else "an unknown time"


def claimed_by(artifact: str, stage: str, cv: CellView) -> str:
    """The sentence a losing claimant gets."""
    host = cv.host or "an unrecorded host"
    return f"stage {stage} of {artifact} was claimed by {cv.cell} on {host} at {_when(cv.started_at)}"


def check_running(ledger: Ledger, view: ArtifactView, *, take_over: bool,
                  now: datetime) -> ClaimTakenOver:
    """Refuse a running stage of a shared ledger (ClaimLost), or take it over.

    With `take_over` and an expired lease, returns the takeover event to record.
    """
    aid = view.intake.artifact
    stage = view.stage.name if view.stage else "-"
    cv = view.cells.get(view.cell or "")
    if cv is None:  # pragma: no cover - a running stage always has its cell
        raise LedgerConflict(f"stage {stage} of {aid} is running without a cell")
    sentence = claimed_by(aid, stage, cv)
    if cv.lease_until is None:
        raise ClaimLost(
            f"{sentence} (without a lease: it was claimed offline); it cannot be taken over: "
            f"its holder must finish or `gptme-factory kill {cv.cell}` it",
            artifact=aid, stage=stage, cell=cv.cell, host=cv.host, at=_when(cv.started_at))
    if cv.lease_until > now:
        hint = (": it cannot be taken over before then" if take_over else
                "; if its holder is gone, take it over after that (`gptme-factory start "
                f"{aid} --take-over`)")
        raise ClaimLost(f"{sentence} (lease until {_when(cv.lease_until)}){hint}",
                        artifact=aid, stage=stage, cell=cv.cell, host=cv.host,
                        at=_when(cv.started_at))
    if not take_over:
        raise ClaimLost(
            f"{sentence}; its lease expired at {_when(cv.lease_until)} with no handoff: take "
            f"it over with `gptme-factory start {aid} --take-over`",
            artifact=aid, stage=stage, cell=cv.cell, host=cv.host, at=_when(cv.started_at))
    return ClaimTakenOver(cell=cv.cell, host=cv.host, lease_until=cv.lease_until)


def _folders(ledger: Ledger) -> set[str]:
    tx = ledger.open_transaction
    if tx is None:
        return set()
    return {stored.path.rpartition("/")[0] for _, _, _, stored in tx.events}


def publish(ledger: Ledger, remote: ledger_sync.Remote) -> str | None:
    """Commit what the open transaction recorded and push it before it lands (a CAS).

    StreamMoved (its events dropped) when another clone wrote to one of its streams first;
    the other clone's commits are integrated either way. Returns the landed commit.
    """
    folders = _folders(ledger)
    try:
        for attempt in range(1, CLAIM_ATTEMPTS + 1):
            try:
                commit = ledger.flush(
                    before_land=lambda c: ledger_sync.push_claim(ledger, remote, c))
            except ledger_sync.RemoteMoved:
                done = ledger_sync.catch_up(ledger, remote)
                if done.touched & folders:
                    raise StreamMoved(
                        f"{', '.join(sorted(done.touched & folders))} changed on {remote} "
                        "meanwhile; nothing was recorded") from None
                ledger_sync.backoff(attempt)
                continue
            note_pushed(ledger, remote)
            return commit
        raise LedgerConflict(
            f"{remote} kept moving: {CLAIM_ATTEMPTS} pushes of this claim lost the race to "
            "other clones' pushes (for other artifacts); nothing was recorded: retry")
    except BaseException:
        ledger.discard()
        raise


def note_pushed(ledger: Ledger, remote: ledger_sync.Remote) -> None:
    """Keep status's view of the shared ledger current after a claim's push."""
    last = runtime.read_state(ledger, ledger_sync.STATE) or {}
    last.update({"remote": str(remote), "pushed_at": ledger_sync.now_iso()})
    runtime.write_state(ledger, ledger_sync.STATE, last)


def find_artifact(ledger: Ledger, query: str) -> str:
    """`ledger.resolve(query)`, fetching first an artifact only another clone has so far.

    On a shared ledger `start X` then works on any clone once X's intake is pushed.
    """
    try:
        return ledger.resolve(query)
    except ArtifactNotFound:
        remote = claim_remote(ledger)
        if remote is None:
            raise
    with ledger.locked():
        ledger_sync.catch_up(ledger, remote)
    return ledger.resolve(query)


def lost(ledger: Ledger, artifact: str) -> FactoryError:
    """The error for a claim that lost: who holds the stage now, read from the ledger."""
    _, view = load(ledger, artifact)
    stage = view.stage.name if view.stage else "-"
    if view.status == "running" and view.cell in view.cells:
        cv = view.cells[view.cell or ""]
        return ClaimLost(claimed_by(artifact, stage, cv), artifact=artifact, stage=stage,
                         cell=cv.cell, host=cv.host, at=_when(cv.started_at))
    return LedgerConflict(
        f"{artifact} changed on another clone while this was being pushed (now {view.state}, "
        f"stage {stage} {view.status}); nothing was recorded: look at it (`gptme-factory show "
        f"{artifact}`), then retry")


def after_handoff(ledger: Ledger, stored: Stored[Any]) -> None:
    """Push a handoff at once on a shared ledger: a builder's branch, then the ledger.

    The branch goes to the remote of the artifact's target (the shared remote when the
    target is the brain) before the handoff itself, so a verifier on another clone that sees
    the handoff can fetch the exact commit (`fetch_build`). A failure is a note
    (`ledger.notes`), not an error: the handoff is recorded here and goes out with the next
    sync.
    """
    remote = claim_remote(ledger)
    if remote is None:
        return
    handoff = getattr(stored.event, "handoff", None)
    branch = handoff.get("branch") if isinstance(handoff, dict) else None
    if isinstance(branch, str) and branch.startswith(BUILD_PREFIX):
        repo, where = _build_remote(ledger, stored.path.split("/")[-2], remote)
        ref = f"refs/heads/{branch}"
        try:
            if where and repo.rev(ref) is not None:
                repo.push_ref(where, ref, ref)
        except FactoryError as exc:
            ledger.notes.append(f"the builder's branch {branch} was not pushed to {where}: "
                                f"{exc}")
    push_pending(ledger, "the handoff")


def _build_remote(ledger: Ledger, artifact: str,
                  remote: ledger_sync.Remote) -> tuple[GitRepo, str | None]:
    """(the clone a builder's branch lives in, the remote it is shared through)."""
    root = ledger.read(artifact).root
    assert root is not None  # an artifact's chain is read with its intake
    target = of_intake(ledger, root.record)
    return (target.repo, remote.name) if target.is_brain else (target.repo, target.remote)


def fetch_build(ledger: Ledger, view: ArtifactView) -> None:
    """Fetch the commit the artifact's build gate passed, if another clone built it.

    On a shared ledger, before a stage after the build starts here (verify checks that exact
    commit): from the target's remote (the shared remote for the brain) into
    `refs/factory/builds/` of the target's clone. Nothing when the commit is here already.
    """
    remote = claim_remote(ledger)
    if remote is None:
        return
    built = [(st.name, view.gates[st.name]) for st in view.line.stages[: view.stage_index]
             if st.gate in COMMIT_GATES and st.name in view.gates]
    if not built or not built[-1][1].commit:
        return
    name, gate = built[-1]
    repo, where = _build_remote(ledger, view.intake.artifact, remote)
    if where is None or gate.commit is None or repo.resolve_commit(gate.commit) is not None:
        return
    branch = (view.handoffs.get(name) or {}).get("branch")
    if not isinstance(branch, str) or not branch.startswith(BUILD_PREFIX):
        return
    repo.fetch(where, [f"+refs/heads/{branch}:refs/factory/builds/{branch[len(BUILD_PREFIX):]}"],
               timeout_s=ledger_sync.net_timeout())
    if repo.resolve_commit(gate.commit) is None:
        raise RemoteUnreachable(
            f"the build of {view.intake.artifact} ({gate.commit[:12]}) is not on {where}'s "
            f"{branch}: the clone that built it must push it (`git push {where} {branch}`)")


def push_pending(ledger: Ledger, what: str = "what was recorded") -> None:
    """On a shared ledger, push what this clone recorded and has not pushed (best effort).

    A failure is a note (`ledger.notes`): the events are recorded here and go out with the
    next claim or sync.
    """
    remote = claim_remote(ledger)
    if remote is None:
        return
    head, tracked = ledger.repo.revs("HEAD", remote.tracking)
    if head == tracked:
        return
    try:
        ledger_sync.sync(ledger)
    except FactoryError as exc:
        ledger.notes.append(f"{what} is recorded here but not pushed to {remote} yet "
                            f"({exc}); run `gptme-factory sync`")


# -- leases -----------------------------------------------------------------------------------


def _lease_file(cell: str) -> str:
    return f"leases/{cell}"


def renew(ledger: Ledger, cell: str, *, now: datetime | None = None) -> datetime | None:
    """Renew the claim of `cell` once half its lease has run out; returns the expiry.

    None when the ledger is not shared or the cell's stage moved on. ClaimLost if its claim
    was taken over.
    """
    remote = claim_remote(ledger)
    if remote is None:
        return None
    try:
        artifact, _ = parse_cell_id(cell)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    lease = timedelta(seconds=lease_s(ledger))
    now = now or ledger.clock()
    known = runtime.read_state(ledger, _lease_file(cell))
    if known and isinstance(known.get("until"), str):
        try:
            if datetime.fromisoformat(known["until"]) - now > lease / 2:
                return None
        except ValueError:
            pass
    with ledger.transaction():
        chain, view = load(ledger, artifact)
        cv = view.cells.get(cell)
        if cv is not None and cv.outcome == "taken_over":
            raise _taken_over(ledger, artifact, cell)
        if cv is None or view.cell != cell or view.status != "running" or cv.lease_until is None:
            return None
        renewed: datetime | None = None
        if cv.lease_until - now > lease / 2:
            until = cv.lease_until
        else:
            until = renewed = now + lease
            record(ledger, chain, view, LeaseRenewed(cell=cell, until=until), by=cell)
            try:
                publish(ledger, remote)
            except StreamMoved:
                raise _taken_over(ledger, artifact, cell) from None
    runtime.write_state(ledger, _lease_file(cell), {"until": until.isoformat()})
    return renewed


def _taken_over(ledger: Ledger, artifact: str, cell: str) -> FactoryError:
    _, view = load(ledger, artifact)
    stage = parse_cell_id(cell)[1]
    mine = view.cells.get(cell)
    if mine is None or mine.outcome != "taken_over":
        return LedgerConflict(
            f"{artifact} changed on another clone (now {view.state}, "
            f"{view.status}); the claim of {cell} was not renewed: look at it "
            f"(`gptme-factory show {artifact}`)")
    now_by = ""
    if view.cell and view.cell in view.cells:
        cv = view.cells[view.cell]
        now_by = f" by {cv.cell} on {cv.host or 'an unrecorded host'} at {_when(cv.started_at)}"
    return ClaimLost(
        f"the claim of {cell} on stage {stage} of {artifact} was taken over{now_by} (its lease "
        "had expired): stop working on it; a handoff from it would be refused",
        artifact=artifact, stage=stage, cell=view.cell, at=None)


__all__ = ["ClaimLost", "StreamMoved", "after_handoff", "check_running", "claim_remote",
           "claimed_by", "fetch_build", "find_artifact", "lease_s", "lost", "publish",
           "push_pending", "renew"]
