"""Fork resolution: keep one branch of a forked stream — for every kind of stream alike.

A fork is two events naming one parent: two clones advanced the same artifact (or line)
without seeing each other — work done offline, a forced push. The engine refuses to append
to a forked stream until a person picks the branch to keep: `resolve(ledger, "ARTIFACT" or
"line:NAME", keep=EVENT)`, where EVENT is any event of that branch (its hash or a prefix of
it, or its file name). The branch runs from the stream's start through EVENT to its tip; a
`fork_resolved` event is appended after that tip, naming, at each unresolved fork on the
way, the child kept and the children discarded. The stream's linking (ledger/stream.py)
then follows the kept children and treats the others' branches as discarded — no longer a
problem, their files still in the ledger and in git history. Nothing is lost.

The kept branch must be a legal history on its own (the artifact's state machine, a line's
lifecycle); a resolution is refused otherwise. On a shared ledger it is pushed like a claim
(line/claims.py), so two clones cannot settle one fork two ways.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any

from ..errors import IllegalTransition, UsageError
from ..ledger.kinds import ARTIFACTS, LINES
from ..ledger.records import ForkChoice, ForkResolved
from ..ledger.store import Ledger
from ..ledger.stream import Chain, Stored, Stream, resolutions
from . import claims
from .lifecycle import apply as apply_line
from .lifecycle import replay_line
from .replay import replay
from .subjects import describe, describe_line


@dataclass
class Branch:
    """One side of a fork: its first event and what follows it, to its tip."""

    events: list[Stored[Any]]

    @property
    def head(self) -> Stored[Any]:
        """The child of the fork point that starts it."""
        return self.events[0]


@dataclass
class Fork:
    """Two or more events naming one parent, not settled by a resolution."""

    target: str
    parent: str
    after: Stored[Any] | None  # the event they all follow (None: the stream's root or start)
    branches: list[Branch]


def _read(ledger: Ledger, target: str) -> tuple[str, Stream[Any]]:
    """(canonical name, tolerant read) of `ARTIFACT` or `line:NAME`."""
    if target.startswith("line:"):
        line = target.removeprefix("line:")
        return f"line:{line}", ledger.read_line(line, tolerant=True)
    aid = ledger.resolve(target)
    return aid, ledger.read(aid, tolerant=True)


def _by_digest(stream: Stream[Any]) -> dict[str, Stored[Any]]:
    return {e.digest: e for kids in stream.children.values() for e in kids}


def _follow(stream: Stream[Any], start: Stored[Any], chosen: dict[str, str]) -> list[Stored[Any]]:
    """`start` and the events after it, through resolved forks, up to an unresolved one."""
    out = [start]
    while kids := stream.children.get(out[-1].digest):
        if len(kids) == 1:
            out.append(kids[0])
            continue
        pick = [k for k in kids if k.digest == chosen.get(out[-1].digest)]
        if not pick:
            break
        out.append(pick[0])
    return out


def forks(ledger: Ledger, target: str) -> list[Fork]:
    """The unresolved forks of a stream, in the order a reader meets them."""
    name, stream = _read(ledger, target)
    chosen = {p: kept for p, (kept, _) in _chosen(stream).items()}
    digests = _by_digest(stream)
    out: list[Fork] = []
    seen: set[str] = set()
    frontier = [stream.first_parent]
    while frontier:
        point = frontier.pop(0)
        if point in seen:
            continue
        seen.add(point)
        kids = stream.children.get(point, [])
        if len(kids) > 1 and point not in chosen:
            out.append(Fork(name, point, digests.get(point),
                            [Branch(_follow(stream, k, chosen)) for k in kids]))
        frontier += [k.digest for k in kids]
    return out


def _chosen(stream: Stream[Any]) -> dict[str, tuple[str, Stored[Any]]]:
    found = [(e.seq, e) for kids in stream.children.values() for e in kids]
    chosen, disputed = resolutions(found)
    return {p: c for p, c in chosen.items() if p not in disputed}


def find_event(stream: Stream[Any], name: str, query: str) -> Stored[Any]:
    """The event `query` names: its sha256 or a prefix of it (6+ hex digits), or its file."""
    q = query.strip().rpartition("/")[2]
    every = list(_by_digest(stream).values())
    hits = [e for e in every if e.path.rpartition("/")[2] in (q, f"{q}.yaml")]
    if not hits and len(q) >= 6 and all(c in "0123456789abcdef" for c in q.lower()):
        hits = [e for e in every if e.digest.startswith(q.lower())]
    if len(hits) != 1:
        what = "matches several events" if hits else "is not an event of"
        raise UsageError(f"{query!r} {what} {name}: give an event's hash (12 hex digits "
                         f"are enough) or its file name; `gptme-factory resolve {name}` "
                         "lists the branches")
    return hits[0]


def resolve(ledger: Ledger, target: str, keep: str, *, reason: str = "",
            by: str | None = None) -> Stored[ForkResolved]:
    """Settle the forks on the way to event `keep`: keep its branch (see the module doc)."""
    with ledger.transaction():
        name, stream = _read(ledger, target)
        damaged = [p for p in stream.problems if p.code != "fork"]
        if damaged:
            raise UsageError(f"{name} has problems besides forks; fix them first: {damaged[0]} "
                             "(run `gptme-factory verify`)")
        chosen = {p: kept for p, (kept, _) in _chosen(stream).items()}
        digests = _by_digest(stream)
        kept_event = find_event(stream, name, keep)
        path = [kept_event]  # back to the stream's start, then forward to its tip
        while path[0].header.parent != stream.first_parent:
            parent = digests.get(path[0].header.parent)
            if parent is None:
                raise UsageError(f"{kept_event.path} does not link back to the start of "
                                 f"{name}: it cannot be kept (run `gptme-factory verify`)")
            path.insert(0, parent)
        tail = _follow(stream, path[-1], chosen)
        path += tail[1:]
        end = stream.children.get(path[-1].digest, [])
        if end:
            options = ", ".join(k.digest[:12] for k in end)
            raise UsageError(
                f"the branch of {kept_event.digest[:12]} forks again after "
                f"{path[-1].path.rpartition('/')[2]}: name an event further down the branch "
                f"to keep ({options})")
        choices = _choices(stream, path, chosen)
        if not choices:
            raise UsageError(f"nothing to resolve: {name} has no unresolved fork on the branch "
                             f"of {kept_event.digest[:12]}")
        on_path = {e.digest for e in path}
        rest = [e for e in digests.values() if e.digest not in on_path]
        kept = dataclasses.replace(stream, events=path, problems=[], discarded=rest)
        event = ForkResolved(choices=choices, reason=" ".join(reason.split())[:2000])
        stored = _record(ledger, kept, event, by)
        remote = claims.claim_remote(ledger)
        if remote is not None:
            claims.publish(ledger, remote)
        return stored


def _choices(stream: Stream[Any], path: list[Stored[Any]],
             chosen: dict[str, str]) -> list[ForkChoice]:
    out = []
    parents = [stream.first_parent, *(e.digest for e in path[:-1])]
    for parent, child in zip(parents, path, strict=True):
        kids = stream.children.get(parent, [])
        if len(kids) < 2:
            continue
        if parent in chosen:
            if chosen[parent] != child.digest:
                raise UsageError(
                    f"the fork after {parent[:12]} was resolved already, keeping "
                    f"{chosen[parent][:12]}: a resolution is not undone by another")
            continue
        out.append(ForkChoice(parent=parent, kept=child.digest,
                              discarded=[k.digest for k in kids if k.digest != child.digest]))
    return out


def _record(ledger: Ledger, kept: Stream[Any], event: ForkResolved,
            by: str | None) -> Stored[ForkResolved]:
    """Append the resolution after the kept branch's tip, once that branch is legal."""
    if kept.kind is ARTIFACTS:
        assert isinstance(kept, Chain) and kept.root is not None
        try:
            view = replay(kept.root.record, ledger.config.line(kept.root.record.line),
                          kept.events)
        except IllegalTransition as exc:
            raise UsageError(f"the branch kept is not a legal history of {kept.id}: {exc}; "
                             "keep the other one") from None
        del view
        with ledger.transaction() as tx:
            tx.describers.setdefault("artifact", describe)
            stored: Stored[ForkResolved] = ledger.record(kept, event, by=by)
        return stored
    if kept.kind is not LINES:  # pragma: no cover - only two kinds so far
        raise UsageError(f"cannot resolve a fork of a {kept.kind.name}")
    state = replay_line(kept)
    if state.events != len(kept.events):
        raise UsageError(f"the branch kept is not a legal lifecycle of line {kept.id}; keep "
                         "the other one")

    def legal(rec: Stored[Any]) -> None:
        apply_line(copy.deepcopy(state), rec.event, rec.at, rec.by)

    with ledger.transaction() as tx:
        tx.describers.setdefault("line", describe_line)
        line_stored: Stored[ForkResolved] = ledger.record(kept, event, by=by, check=legal)
    return line_stored


__all__ = ["Branch", "Fork", "find_event", "forks", "resolve"]
