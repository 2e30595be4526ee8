"""The one event stream: typed, hash-chained, append-only YAML files, defined once.

Every entity the ledger tracks — an artifact, a production line, and whatever comes next —
is an instance of this mechanism, specialised by a `StreamKind` (its folder, the header key
naming the stream, the id rule, the union of its event payloads, and optionally a root record):

    <ledger>/<folder>/<id>/<root file>                   the immutable root record (seq 0)
    <ledger>/<folder>/<id>/NNNN-<kind>-<hash12>.yaml     one file per event

(A kind with many streams, like artifacts, fans them out: `<folder>/<bucket>/<shelf>/<id>/`, see
layout.py; where a stream's folder is, the `Ledger` says.)

An event file is the header the ledger writes (`kind`, `schema_version`, the stream's id
under the kind's key, `seq`, `parent`, `at`, `by`) followed by the payload's own fields, in
that order. `parent` is the sha256 of the previous record's bytes (the root's, or a fixed
genesis string when the kind has no root); the file name carries the event's own hash prefix,
so two writers never produce the same name: merges never conflict, and a fork (two events
with one parent) is visible.

Reading is hardened here, once, for every kind: no symlink is followed; a directory or any
other non-file with a record's name is a problem, never a crash; size, encoding, YAML and
schema errors are problems naming the file. `read_chain` / `read_stream` link the events and
report every problem with a `code` that decisions are taken on (`fork` or `damaged`);
`verify` is simply a tolerant read. Writing (locks, commits, transactions) is the `Ledger`'s
(store.py); this module only turns a payload into the bytes and name of its file.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
from collections.abc import Callable, Container
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from ..errors import InvalidRecord
from . import layout, yamlio
from .records import HEADER_FIELDS, EventHeader, ForkResolved, format_validation_error

EVENT_FILE_RE = re.compile(r"^(\d{4,})-([a-z_]+)-([0-9a-f]{12})\.yaml$")
ProblemCode = Literal["fork", "damaged"]

P = TypeVar("P", bound=BaseModel)
R = TypeVar("R", bound=BaseModel)


def sha256(raw: bytes) -> str:
    """Hex sha256 of record bytes: the identity of a record."""
    return hashlib.sha256(raw).hexdigest()


@dataclass(frozen=True)
class Problem:
    """One integrity problem, anchored to a file or a stream's folder."""

    where: str
    message: str
    code: ProblemCode = "damaged"

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass(frozen=True)
class StreamKind(Generic[P]):
    """What makes one kind of stream: where it lives and what its events may be."""

    name: str
    folder: str
    key: str
    check_id: Callable[[str], str]
    events: TypeAdapter[P]
    subdirs: frozenset[str] = frozenset()
    fanout: bool = False  # streams sit in shelves by their id's end (ledger/layout.py)

    def genesis(self, sid: str) -> str:
        """The parent hash of the first event of a stream without a root record."""
        return sha256(f"gptme-factory {self.name} {sid}\n".encode())

    def file_name(self, seq: int, kind: str, digest: str) -> str:
        """`NNNN-<kind>-<hash12>.yaml`."""
        return f"{seq:04d}-{kind}-{digest[:12]}.yaml"

    def dump(self, sid: str, header: EventHeader, event: P) -> bytes:
        """The exact bytes of an event file: header, the stream's id, then the payload."""
        payload = event.model_dump(mode="json", exclude_none=True)
        data: dict[str, Any] = {"kind": header.kind, "schema_version": header.schema_version,
                                self.key: sid}
        data.update(header.model_dump(mode="json", exclude={"kind", "schema_version"}))
        data.update((k, v) for k, v in payload.items() if k != "kind")
        return yamlio.dumps(data)

    def parse(self, raw: bytes, source: str) -> tuple[str, EventHeader, P]:
        """(stream id, header, payload) of one event file; InvalidRecord naming each problem."""
        data = yamlio.loads(raw, source)
        head = {k: data.pop(k) for k in HEADER_FIELDS if k in data}
        sid = data.pop(self.key, None)
        if "kind" in head:
            data["kind"] = head["kind"]
        problems: list[str] = []
        if not isinstance(sid, str):
            problems.append(f"{self.key}: required field is missing")
        else:
            try:
                self.check_id(sid)
            except ValueError as exc:
                problems.append(f"{self.key}: {exc}")
        header: EventHeader | None = None
        event: P | None = None
        try:
            header = EventHeader.model_validate(head)
        except ValidationError as exc:
            problems += format_validation_error(exc)
        try:
            event = self.events.validate_python(data)
        except ValidationError as exc:
            tag = f"{data.get('kind')}."  # the union's tag leads each location: drop it
            problems += [p.removeprefix(tag) for p in format_validation_error(exc)
                         if not p.startswith("kind: required")]
        if problems or header is None or event is None or not isinstance(sid, str):
            raise InvalidRecord(source, problems or ["not a ledger event"])
        return sid, header, event


@dataclass(frozen=True)
class RootedKind(StreamKind[P], Generic[R, P]):
    """A stream kind whose streams start with an immutable root record (an artifact's intake)."""

    root_file: str = ""
    root_model: type[R] | None = None

    def parse_root(self, raw: bytes, source: str) -> R:
        """The root record; InvalidRecord naming each problem."""
        assert self.root_model is not None
        data = yamlio.loads(raw, source)
        try:
            return self.root_model.model_validate(data)
        except ValidationError as exc:
            raise InvalidRecord(source, format_validation_error(exc)) from None

    def dump_root(self, record: R) -> bytes:
        """The exact bytes of a root record file."""
        return yamlio.dumps(record.model_dump(mode="json"))


@dataclass(frozen=True)
class Stored(Generic[P]):
    """One event as it is (or will be) on disk: where, its bytes' hash, header and payload."""

    path: str
    digest: str
    header: EventHeader
    event: P

    @property
    def kind(self) -> str:
        """The event's kind (its payload's discriminator)."""
        return self.header.kind

    @property
    def seq(self) -> int:
        """Its position in the stream (1 for the first event)."""
        return self.header.seq

    @property
    def at(self) -> datetime:
        """When it was appended (wall clock, for display)."""
        return self.header.at

    @property
    def by(self) -> str:
        """Who appended it."""
        return self.header.by


@dataclass(frozen=True)
class Root(Generic[R]):
    """A stream's root record as read from disk."""

    path: str
    digest: str
    record: R


@dataclass
class Stream(Generic[P]):
    """One stream's events in chain order, and every integrity problem found reading it."""

    kind: StreamKind[P]
    id: str
    folder: str
    events: list[Stored[P]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    # Events on a branch a `fork_resolved` event discarded: kept on disk, out of the chain.
    discarded: list[Stored[P]] = field(default_factory=list)
    # parent hash -> the events naming it, in (seq, path) order: the stream's whole tree
    children: dict[str, list[Stored[P]]] = field(default_factory=dict)

    @property
    def first_parent(self) -> str:
        """What the first event names as its parent."""
        return self.kind.genesis(self.id)

    @property
    def tip(self) -> str:
        """The hash the next event names as its parent."""
        return self.events[-1].digest if self.events else self.first_parent

    @property
    def forks(self) -> list[Problem]:
        """The problems that are forks (two events with one parent)."""
        return [p for p in self.problems if p.code == "fork"]

    def payloads(self) -> list[P]:
        """The events' payloads, in chain order."""
        return [e.event for e in self.events]


@dataclass
class Chain(Stream[P], Generic[R, P]):
    """A stream that starts with a root record (an artifact: intake, then its events)."""

    root: Root[R] | None = None

    @property
    def first_parent(self) -> str:
        """The root record's hash."""
        assert self.root is not None, "a chain is read with its root"
        return self.root.digest


# -- reading -----------------------------------------------------------------------------


def _read_file(path: str, src: str) -> bytes:
    """A record's bytes, never through a symlink; InvalidRecord for anything but a file."""
    try:
        with open(path, "rb", opener=lambda p, f: os.open(p, f | os.O_NOFOLLOW)) as fh:
            return fh.read(yamlio.MAX_RECORD_BYTES + 1)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InvalidRecord(src, ["is a symlink, not a ledger record"]) from None
        if exc.errno == errno.EISDIR:
            raise InvalidRecord(src, ["is a directory, not a ledger record"]) from None
        raise


_what = layout.entry_kind


def _scan(kind: StreamKind[P], folder: Path, prefix: str, sid: str, *, tolerant: bool,
          raw: dict[str, bytes] | None, root_file: str | None,
          ) -> tuple[bytes | None, list[tuple[int, Stored[P]]], list[Problem]]:
    """(root bytes, events, problems) of one stream folder."""
    problems: list[Problem] = []
    events: list[tuple[int, Stored[P]]] = []
    root_raw: bytes | None = None

    def bad(src: str, exc: InvalidRecord) -> None:
        if not tolerant:
            raise exc
        problems.extend(Problem(src, p) for p in exc.problems)

    try:
        with os.scandir(folder) as it:  # closed even when a strict read raises
            listing = sorted(it, key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return None, [], []
    for entry in listing:
        src = f"{prefix}/{entry.name}"
        if entry.name.startswith("."):
            continue
        if root_file is not None and entry.name == root_file:
            try:
                root_raw = _read_file(entry.path, src)
            except InvalidRecord as exc:
                bad(src, exc)
            continue
        m = EVENT_FILE_RE.match(entry.name)
        if m is None or not entry.is_file(follow_symlinks=False):
            # Not a record: a stray file, or a symlink or directory with a record's name
            # (never followed, never parsed). Strict readers skip it; verify names it.
            if entry.name in kind.subdirs and entry.is_dir(follow_symlinks=False):
                continue
            if tolerant:
                problems.append(Problem(src, f"not a ledger record (unexpected {_what(entry)})"))
            continue
        try:
            data = _read_file(entry.path, src)
            if raw is not None:
                raw[entry.name] = data
            file_sid, header, event = kind.parse(data, src)
        except InvalidRecord as exc:
            bad(src, exc)
            continue
        stored = Stored(src, sha256(data), header, event)
        seq, name_kind, name_hash = int(m.group(1)), m.group(2), m.group(3)
        if file_sid != sid:
            problems.append(Problem(
                src, f"{kind.key} is {file_sid!r}, but the directory is {sid!r}"))
        if header.seq != seq:
            problems.append(Problem(src, f"file name says seq {seq}, record says {header.seq}"))
        if not stored.digest.startswith(name_hash):
            problems.append(Problem(
                src, "content does not match the hash in its name (edited after it was written)"))
        if name_kind != header.kind:
            problems.append(Problem(
                src, f"file name says kind {name_kind}, record says {header.kind}"))
        events.append((seq, stored))
    return root_raw, events, problems


def resolutions(found: list[tuple[int, Stored[P]]]
                 ) -> tuple[dict[str, tuple[str, Stored[P]]], dict[str, str]]:
    """What `fork_resolved` events say, by fork point.

    Returns fork point -> (kept child, the event saying so), and fork point -> why it stays
    unresolved (two resolutions that disagree).
    """
    chosen: dict[str, tuple[str, Stored[P]]] = {}
    disputed: dict[str, str] = {}
    for _, rec in sorted(found, key=lambda x: (x[0], x[1].path)):
        if not isinstance(rec.event, ForkResolved):
            continue
        for choice in rec.event.choices:
            earlier = chosen.get(choice.parent)
            if earlier is not None and earlier[0] != choice.kept:
                disputed[choice.parent] = (
                    f"{earlier[1].path} keeps {earlier[0][:12]} but {rec.path} keeps "
                    f"{choice.kept[:12]}")
            chosen.setdefault(choice.parent, (choice.kept, rec))
    return chosen, disputed


def link(stream: Stream[P], found: list[tuple[int, Stored[P]]]) -> None:
    """Order `found` by parent links into `stream.events`; report forks, gaps and bad links.

    At a fork (two events naming one parent) the chain follows the child a `fork_resolved`
    event keeps — that event must itself be on the chain followed, or the choice does not
    count — and the other children's branches become `stream.discarded`, no problem any
    more; an unresolved fork is a problem and the chain follows the first child.
    """
    by_parent: dict[str, list[Stored[P]]] = {}
    for _, rec in sorted(found, key=lambda x: (x[0], x[1].path)):
        by_parent.setdefault(rec.header.parent, []).append(rec)
    stream.children = by_parent
    chosen, disputed = resolutions(found)
    used: dict[str, Stored[P]] = {}  # fork point -> the resolution the walk relied on
    dropped: list[Stored[P]] = []
    first = stream.first_parent
    current = first
    while current in by_parent:
        children = by_parent[current]
        nxt = children[0]
        if len(children) > 1:
            kept = chosen.get(current)
            pick = [c for c in children if kept is not None and c.digest == kept[0]]
            if pick and current not in disputed:
                assert kept is not None
                nxt = pick[0]
                used[current] = kept[1]
                dropped += [c for c in children if c is not nxt]
            else:
                names = ", ".join(c.path for c in children)
                why = f"; its resolutions disagree: {disputed[current]}" if current in disputed \
                    else ""
                stream.problems.append(Problem(
                    children[0].path.rpartition("/")[0],
                    f"fork: {names} all claim the same parent {current[:12]} (two writers "
                    f"advanced this {stream.kind.name} concurrently){why}", "fork"))
        if nxt.header.seq != len(stream.events) + 1:
            stream.problems.append(Problem(
                nxt.path, f"seq {nxt.header.seq} does not follow its parent's seq "
                          f"{len(stream.events)}"))
        stream.events.append(nxt)
        current = nxt.digest
        if len(stream.events) > len(found):  # pragma: no cover - a cycle needs a sha256 collision
            break
    on_chain = {e.digest for e in stream.events}
    for point, rec in used.items():
        if rec.digest not in on_chain:
            stream.problems.append(Problem(
                rec.path, f"resolves the fork at {point[:12]} but is not on the branch it "
                          "keeps (a resolution is appended after the kept branch's tip)", "fork"))
    seen: set[str] = set()
    frontier = [c.digest for c in dropped]
    stream.discarded = []
    for c in dropped:
        seen.add(c.digest)
        stream.discarded.append(c)
    while frontier:
        for child in by_parent.get(frontier.pop(), []):
            if child.digest not in seen and child.digest not in on_chain:
                seen.add(child.digest)
                stream.discarded.append(child)
                frontier.append(child.digest)
    stream.discarded.sort(key=lambda e: (e.seq, e.path))
    reachable = {first}
    frontier = [first]
    while frontier:
        for child in by_parent.get(frontier.pop(), []):
            if child.digest not in reachable:
                reachable.add(child.digest)
                frontier.append(child.digest)
    for _, rec in found:
        if rec.digest not in reachable:
            stream.problems.append(Problem(
                rec.path, f"its parent {rec.header.parent[:12]} is not in the chain "
                          "(missing parent, or an earlier record was edited)"))


def read_stream(kind: StreamKind[P], folder: Path, prefix: str, sid: str, *,
                tolerant: bool = False) -> Stream[P]:
    """Read and link a root-less stream; a missing folder is an empty stream."""
    _, found, problems = _scan(kind, folder, prefix, sid, tolerant=tolerant, raw=None,
                               root_file=None)
    stream: Stream[P] = Stream(kind, sid, prefix, problems=problems)
    link(stream, found)
    return stream


def read_chain(kind: RootedKind[R, P], folder: Path, prefix: str, sid: str, *,
               tolerant: bool = False, raw: dict[str, bytes] | None = None) -> Chain[R, P]:
    """Read and link a rooted stream. Its root must exist and parse (InvalidRecord otherwise).

    `raw`, if given, receives the name and exact bytes of every file read (what the status
    cache keys a summary by). With `tolerant`, bad events are skipped and reported in
    `problems`; without, the first bad file raises InvalidRecord.
    """
    root_raw, found, problems = _scan(kind, folder, prefix, sid, tolerant=tolerant, raw=raw,
                                      root_file=kind.root_file)
    root_src = f"{prefix}/{kind.root_file}"
    if root_raw is None:
        bad = [p for p in problems if p.where == root_src]
        raise InvalidRecord(root_src, [p.message for p in bad] or ["missing"])
    if raw is not None:
        raw[kind.root_file] = root_raw
    record = kind.parse_root(root_raw, root_src)
    own = getattr(record, kind.key, sid)
    if own != sid:
        problems.insert(0, Problem(
            root_src, f"{kind.key} is {own!r}, but the directory is {sid!r}"))
    chain: Chain[R, P] = Chain(kind, sid, prefix, problems=problems,
                               root=Root(root_src, sha256(root_raw), record))
    link(chain, found)
    return chain


def new_event(kind: StreamKind[P], prefix: str, sid: str, header: EventHeader,
              event: P) -> tuple[Stored[P], bytes]:
    """The event as it will be stored (repo-relative path, hash) and its file's bytes."""
    raw = kind.dump(sid, header, event)
    digest = sha256(raw)
    name = kind.file_name(header.seq, header.kind, digest)
    return Stored(f"{prefix}/{name}", digest, header, event), raw


def stream_ids(kind: StreamKind[P], base: Path, prefix: str, *,
               listing: layout.Listing | None = None,
               only: Container[str] | None = None) -> tuple[list[str], list[Problem]]:
    """The streams of a kind under `base` (its folder), and every entry that is not one.

    A fanned-out kind (artifacts) is listed in every layout (layout.py), or taken from
    `listing` if the caller has scanned already; an id with folders in two layouts is a
    problem until `migrate` joins them. With `only`, a folder whose id is not in it is
    taken by its name alone (its root file is not looked for): for a caller that knows
    nothing in it changed since it was last checked.
    """
    ids: list[str] = []
    problems: list[Problem] = []
    if kind.fanout:
        listing = listing if listing is not None else layout.scan(base)
        problems += [Problem(f"{prefix}/{rel}", what if what.startswith("directory in")
                             else f"unexpected {what} in {kind.folder}/")
                     for rel, what in listing.strays]
        problems += [Problem(f"{prefix}/{old}", f"an older folder beside {listing.folders[sid]}/ "
                             "(two layouts of one stream): run `gptme-factory migrate`")
                     for sid in listing.both for old in listing.older.get(sid, ())
                     if old != listing.folders[sid]]
        candidates = list(listing.folders.items())
    else:
        try:
            with os.scandir(base) as it:
                entries = sorted(it, key=lambda e: e.name)
        except FileNotFoundError:
            return ids, problems
        candidates = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if not entry.is_dir(follow_symlinks=False):
                problems.append(Problem(f"{prefix}/{entry.name}",
                                        f"unexpected {_what(entry)} in {kind.folder}/"))
                continue
            candidates.append((entry.name, entry.name))
    root_file = kind.root_file if isinstance(kind, RootedKind) else None
    for name, rel in candidates:
        where = f"{prefix}/{rel}"
        try:
            kind.check_id(name)
        except ValueError as exc:
            problems.append(Problem(where, f"not a {kind.name} name: {exc}"))
            continue
        if root_file and (only is None or name in only) \
                and not os.path.isfile(os.path.join(base, rel, root_file)):
            article = "an" if kind.name[0] in "aeiou" else "a"
            problems.append(Problem(
                where, f"no {root_file}: not {article} {kind.name} (unexpected directory)"))
            continue
        ids.append(name)
    return ids, problems
