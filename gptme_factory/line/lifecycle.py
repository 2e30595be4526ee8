"""Line lifecycle: park, unpark and archive a production line, as a hash-chained stream.

A line with no demand should stop taking work instead of being kept running. Its lifecycle is
recorded like an artifact's history, in `factory/lines/<line>/NNNN-<kind>-<hash12>.yaml`: one
append-only file per event, each naming its parent's sha256 (the first event's parent is the
sha256 of a fixed genesis string for the line), committed one event per commit. A line with
no stream is `active`.

    active --park (triggers)--> parked --unpark (because)--> active
    active|parked --archive (reason)--> archived   (final)

A parked or archived line refuses intake (`check_accepts_intake`, called by
`Ledger.create`) with a message naming its restart triggers. `line_statuses` gives `status`
each line's state and flags a line idle when it had no intake for `idle_after_days`.
`verify_lines` checks the streams the way `verify` checks artifact chains.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, TypeAdapter, ValidationError

from ..errors import IllegalTransition, InvalidRecord, LedgerConflict, UsageError
from ..ledger import yamlio
from ..ledger.records import Name, Record, Sha256, ShortText, format_validation_error
from ..ledger.store import EVENT_FILE_RE, Ledger, commit_message, default_actor, sha256
from ..views.linestatus import HasLineAndTime, LineBase, LineStatus, quote, statuses

if TYPE_CHECKING:
    from .verify import Problem

LINES_DIR = "lines"
LineStateName = Literal["active", "parked", "archived"]


def genesis(line: str) -> str:
    """The parent hash of a line's first event."""
    return sha256(f"gptme-factory line {line}\n".encode())


class LineEvent(Record):
    """Header common to every line event; filled in by `_append`."""

    kind: str
    schema_version: Literal[1] = 1
    line: Name
    seq: int = Field(ge=1, description="Position in the line's stream, from 1.")
    parent: Sha256 = Field(description="sha256 of the previous event's bytes (or the genesis).")
    at: datetime = Field(description="Wall-clock time, for display and idleness only.")
    by: ShortText


class LineParked(LineEvent):
    """The line stops taking intake until one of its restart triggers fires."""

    kind: Literal["line_parked"] = "line_parked"
    triggers: list[ShortText] = Field(min_length=1, description="What would restart it, in words.")
    reason: str = Field(default="", max_length=2_000, description="Why it is parked.")


class LineUnparked(LineEvent):
    """The line takes intake again; `because` says which trigger fired."""

    kind: Literal["line_unparked"] = "line_unparked"
    because: ShortText


class LineArchived(LineEvent):
    """The line is retired for good: it never takes intake again."""

    kind: Literal["line_archived"] = "line_archived"
    reason: ShortText


AnyLineEvent = Annotated[LineParked | LineUnparked | LineArchived, Field(discriminator="kind")]
LINE_EVENT_ADAPTER: TypeAdapter[AnyLineEvent] = TypeAdapter(AnyLineEvent)


class LineRefusesIntake(IllegalTransition):
    """The line is parked or archived; the message names its restart triggers."""


@dataclass(frozen=True)
class StoredLineEvent:
    """One line event file: path, hash of its bytes, parsed model."""

    path: str
    digest: str
    event: LineParked | LineUnparked | LineArchived


@dataclass
class LineState:
    """A line's lifecycle state, replayed from its stream."""

    line: str
    state: LineStateName = "active"
    triggers: list[str] = field(default_factory=list)
    reason: str = ""
    since: datetime | None = None
    by: str = ""
    because: str = ""
    resumed_at: datetime | None = None
    events: int = 0


@dataclass
class LineStream:
    """A line's events in chain order, and any integrity problems found while reading."""

    line: str
    events: list[StoredLineEvent] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def tip(self) -> str:
        """Hash the next event names as its parent."""
        return self.events[-1].digest if self.events else genesis(self.line)


def apply(state: LineState, event: LineParked | LineUnparked | LineArchived) -> None:
    """Fold one event into `state`, or raise IllegalTransition."""
    if state.state == "archived":
        raise IllegalTransition(f"line {state.line} is archived: nothing more can happen to it")
    if isinstance(event, LineParked):
        if state.state == "parked":
            raise IllegalTransition(
                f"line {state.line} is already parked (triggers: {_quote(state.triggers)}); "
                "unpark it first to change its triggers"
            )
        state.state, state.triggers, state.reason = "parked", list(event.triggers), event.reason
    elif isinstance(event, LineUnparked):
        if state.state != "parked":
            raise IllegalTransition(f"line {state.line} is {state.state}, not parked")
        state.state, state.because, state.resumed_at = "active", event.because, event.at
        state.triggers, state.reason = [], ""
    else:
        state.state, state.reason = "archived", event.reason
    state.since, state.by = event.at, event.by
    state.events += 1


_quote = quote


# -- reading ----------------------------------------------------------------------------


def lines_dir(ledger: Ledger) -> Path:
    """factory/lines."""
    return ledger.dir / LINES_DIR


def stream_lines(ledger: Ledger) -> list[str]:
    """Names of the lines that have a lifecycle stream, sorted."""
    try:
        return sorted(e.name for e in os.scandir(lines_dir(ledger))
                      if e.is_dir() and not e.name.startswith("."))
    except FileNotFoundError:
        return []


def read_stream(ledger: Ledger, line: str, *, tolerant: bool = False) -> LineStream:
    """Read, validate and link one line's events (InvalidRecord on a bad file unless tolerant)."""
    stream = LineStream(line)
    ldir = lines_dir(ledger) / line
    prefix = f"{ledger.rel}/{LINES_DIR}/{line}"
    found: list[tuple[int, StoredLineEvent]] = []
    try:
        entries = sorted(os.scandir(ldir), key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return stream
    for entry in entries:
        src = f"{prefix}/{entry.name}"
        m = EVENT_FILE_RE.match(entry.name)
        if not m:
            if not entry.name.startswith("."):
                stream.problems.append(f"{src}: not a line event file name (unexpected file)")
            continue
        raw = Path(entry.path).read_bytes()
        digest = sha256(raw)
        try:
            event = _parse(raw, src)
        except InvalidRecord as exc:
            if not tolerant:
                raise
            stream.problems += [f"{src}: {p}" for p in exc.problems]
            continue
        seq = int(m.group(1))
        if not digest.startswith(m.group(3)):
            stream.problems.append(
                f"{src}: content does not match the hash in its name (edited after it was written)"
            )
        if event.seq != seq:
            stream.problems.append(f"{src}: file name says seq {seq}, record says {event.seq}")
        if event.line != line:
            stream.problems.append(f"{src}: line is {event.line!r}, but the directory is {line!r}")
        if event.kind != m.group(2):
            stream.problems.append(f"{src}: file name says {m.group(2)}, record says {event.kind}")
        found.append((seq, StoredLineEvent(src, digest, event)))
    _link(stream, found)
    return stream


def _parse(raw: bytes, source: str) -> LineParked | LineUnparked | LineArchived:
    data = yamlio.loads(raw, source)
    try:
        return LINE_EVENT_ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise InvalidRecord(source, format_validation_error(exc)) from None


def _link(stream: LineStream, found: list[tuple[int, StoredLineEvent]]) -> None:
    by_parent: dict[str, list[StoredLineEvent]] = {}
    for _, rec in sorted(found, key=lambda x: (x[0], x[1].path)):
        by_parent.setdefault(rec.event.parent, []).append(rec)
    current = genesis(stream.line)
    while current in by_parent:
        children = by_parent[current]
        if len(children) > 1:
            names = ", ".join(c.path for c in children)
            stream.problems.append(
                f"fork: {names} all claim the same parent (two writers changed this line at once)"
            )
        stream.events.append(children[0])
        current = children[0].digest
    reachable = {genesis(stream.line)}
    frontier = [genesis(stream.line)]
    while frontier:
        for child in by_parent.get(frontier.pop(), []):
            if child.digest not in reachable:
                reachable.add(child.digest)
                frontier.append(child.digest)
    for _, rec in found:
        if rec.digest not in reachable:
            stream.problems.append(
                f"{rec.path}: its parent {rec.event.parent[:12]} is not in the line's stream "
                "(missing parent, or an earlier event was edited)"
            )


def replay_line(line: str, stream: LineStream) -> LineState:
    """The line's state after its (linked) events; stops at the first illegal one."""
    state = LineState(line)
    for rec in stream.events:
        try:
            apply(state, rec.event)
        except IllegalTransition:
            break
    return state


def line_state(ledger: Ledger, line: str) -> LineState:
    """A line's current lifecycle state (tolerant: a damaged stream is verify's business)."""
    if not (lines_dir(ledger) / line).is_dir():
        return LineState(line)
    return replay_line(line, read_stream(ledger, line, tolerant=True))


def check_accepts_intake(ledger: Ledger, line: str) -> None:
    """Raise LineRefusesIntake if `line` is parked or archived (cheap when it has no stream)."""
    st = line_state(ledger, line)
    if st.state == "parked":
        since = f" since {st.since.date().isoformat()}" if st.since else ""
        why = f" ({st.reason})" if st.reason else ""
        raise LineRefusesIntake(
            f"line {line!r} is parked{since}{why} and takes no new intake until one of its "
            f"restart triggers fires: {_quote(st.triggers)}. If one has, run "
            f"`gptme-factory unpark {line} --because \"...\"`; otherwise use another line (--line)"
        )
    if st.state == "archived":
        raise LineRefusesIntake(
            f"line {line!r} is archived ({st.reason}) and takes no intake: use another line (--line)"
        )


# -- writing ----------------------------------------------------------------------------


def _append(ledger: Ledger, line: str, payload: dict[str, Any], by: str | None) -> StoredLineEvent:
    ledger.config.line(line)  # unknown line -> ConfigError before anything is written
    with ledger.locked():
        stream = read_stream(ledger, line)
        forks = [p for p in stream.problems if p.startswith("fork")]
        if stream.problems:
            raise LedgerConflict(
                f"line {line} has ledger problems: {(forks or stream.problems)[0]}; nothing was "
                "recorded (run `gptme-factory verify`)"
            )
        state = replay_line(line, stream)
        data = {"kind": payload["kind"], "schema_version": 1, "line": line,
                "seq": len(stream.events) + 1, "parent": stream.tip, "at": ledger.clock(),
                "by": by or default_actor(), **{k: v for k, v in payload.items() if k != "kind"}}
        try:
            event = LINE_EVENT_ADAPTER.validate_python(data)
        except ValidationError as exc:
            raise InvalidRecord(f"{payload['kind']} event", format_validation_error(exc)) from None
        apply(state, event)  # IllegalTransition before anything is written
        raw = yamlio.dumps(event.model_dump(mode="json"))
        digest = sha256(raw)
        rel = f"{ledger.rel}/{LINES_DIR}/{line}/{event.seq:04d}-{event.kind}-{digest[:12]}.yaml"
        trailers = {"Factory-Line": line, "Factory-Seq": str(event.seq), "Factory-Hash": digest}
        ledger.repo.commit_files({rel: raw}, commit_message(None, event.kind, f"[{line}]", trailers))
        return StoredLineEvent(rel, digest, event)


def _clean(items: Sequence[str], what: str) -> list[str]:
    out = [" ".join(t.split()) for t in items if t and t.strip()]
    if not out:
        raise UsageError(f"give at least one {what}")
    return out


def park(ledger: Ledger, line: str, triggers: Sequence[str], *, reason: str = "",
         by: str | None = None) -> StoredLineEvent:
    """Park `line` with one or more restart triggers (in words)."""
    return _append(ledger, line, {"kind": "line_parked",
                                  "triggers": _clean(triggers, "restart trigger (--trigger)"),
                                  "reason": reason.strip()}, by)


def unpark(ledger: Ledger, line: str, because: str, *, by: str | None = None) -> StoredLineEvent:
    """Resume a parked line, saying which trigger fired."""
    return _append(ledger, line, {"kind": "line_unparked",
                                  "because": _clean([because], "reason (--because)")[0]}, by)


def archive(ledger: Ledger, line: str, reason: str, *, by: str | None = None) -> StoredLineEvent:
    """Retire `line` for good."""
    return _append(ledger, line, {"kind": "line_archived",
                                  "reason": _clean([reason], "reason (--reason)")[0]}, by)


# -- status -----------------------------------------------------------------------------


def line_bases(ledger: Ledger) -> list[LineBase]:
    """Every configured or recorded line's replayed state and idle bound (what is cached)."""
    cfg = ledger.config
    out: list[LineBase] = []
    for name in sorted(set(cfg.lines) | set(stream_lines(ledger))):
        st = line_state(ledger, name)
        out.append(LineBase(
            line=name, state=st.state, triggers=list(st.triggers), reason=st.reason,
            since=st.since.isoformat() if st.since else None,
            resumed_at=st.resumed_at.isoformat() if st.resumed_at else None,
            idle_after_days=cfg.lines[name].idle_after_days if name in cfg.lines else 30,
        ))
    return out


def line_statuses(
    ledger: Ledger, summaries: Iterable[HasLineAndTime], now: datetime
) -> list[LineStatus]:
    """Every configured or recorded line's state, with idleness from the last intake.

    See `linestatus.statuses`; `status` goes through the status cache instead
    (statuscache.cached_line_statuses), which gives the same answer without reading streams.
    """
    return statuses(line_bases(ledger), summaries, now)


# -- verification -----------------------------------------------------------------------


def verify_lines(ledger: Ledger) -> list[Problem]:
    """Every problem in the line streams (empty when clean), for `verify`."""
    from .verify import Problem

    base = f"{ledger.rel}/{LINES_DIR}"
    problems: list[Problem] = []
    ldir = lines_dir(ledger)
    if not ldir.exists():
        return problems
    for entry in sorted(os.scandir(ldir), key=lambda e: e.name):
        if entry.name.startswith("."):
            continue
        if not entry.is_dir():
            problems.append(Problem(f"{base}/{entry.name}", "unexpected file in lines/"))
            continue
        where = f"{base}/{entry.name}"
        try:
            _check_line_name(entry.name)
        except ValueError as exc:
            problems.append(Problem(where, f"not a line name: {exc}"))
            continue
        stream = read_stream(ledger, entry.name, tolerant=True)
        for p in stream.problems:
            path, sep, msg = p.partition(": ")
            problems.append(Problem(path, msg) if sep and "/" in path else Problem(where, p))
        state = LineState(entry.name)
        for rec in stream.events:
            try:
                apply(state, rec.event)
            except IllegalTransition as exc:
                problems.append(Problem(rec.path, f"illegal transition: {exc}"))
                break
    return problems


_NAME_ADAPTER: TypeAdapter[str] = TypeAdapter(Name)


def _check_line_name(value: str) -> str:
    """Validate a line name with the records' `Name` rule (ValueError if bad)."""
    try:
        return _NAME_ADAPTER.validate_python(value)
    except ValidationError as exc:
        raise ValueError(exc.errors()[0]["msg"]) from None


__all__ = [
    "LineRefusesIntake", "LineState", "LineStatus", "archive",
    "check_accepts_intake", "line_state", "line_statuses", "park", "unpark", "verify_lines",
]
