"""Line lifecycle: park, unpark and archive a production line.

A line with no demand should stop taking work instead of being kept running. Its lifecycle is
a stream of the ledger like an artifact's history (kinds.LINES: `factory/lines/<line>/`, one
hash-chained file per event, the first naming the line's genesis hash), replayed here. A line
with no stream is `active`.

    active --park (triggers)--> parked --unpark (because)--> active
    active|parked --archive (reason)--> archived   (final)

A parked or archived line refuses intake (`check_accepts_intake`, called by `intake`) with a
message naming its restart triggers; `verify` checks the streams with the same rules.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from ..errors import IllegalTransition, LedgerDamaged, UsageError
from ..ledger.kinds import LineStream, StoredLineEvent
from ..ledger.records import ForkResolved, LineArchived, LineEvent, LineParked, LineUnparked
from ..ledger.store import Ledger, fork_error
from .subjects import describe_line

LineStateName = Literal["active", "parked", "archived"]


class LineRefusesIntake(IllegalTransition):
    """The line is parked or archived; the message names its restart triggers."""


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


def quote(items: Sequence[str]) -> str:
    """Restart triggers as `"a"; "b"`."""
    return "; ".join(f'"{t}"' for t in items)


def apply(state: LineState, event: LineEvent, at: datetime, by: str) -> None:
    """Fold one event into `state`, or raise IllegalTransition."""
    if isinstance(event, ForkResolved):
        state.events += 1  # the stream already follows the kept branch (ledger/stream.py)
        return
    if state.state == "archived":
        raise IllegalTransition(f"line {state.line} is archived: nothing more can happen to it")
    if isinstance(event, LineParked):
        if state.state == "parked":
            raise IllegalTransition(
                f"line {state.line} is already parked (triggers: {quote(state.triggers)}); "
                "unpark it first to change its triggers"
            )
        state.state, state.triggers, state.reason = "parked", list(event.triggers), event.reason
    elif isinstance(event, LineUnparked):
        if state.state != "parked":
            raise IllegalTransition(f"line {state.line} is {state.state}, not parked")
        state.state, state.because, state.resumed_at = "active", event.because, at
        state.triggers, state.reason = [], ""
    else:
        state.state, state.reason = "archived", event.reason
    state.since, state.by = at, by
    state.events += 1


def replay_line(stream: LineStream) -> LineState:
    """The line's state after its (linked) events; stops at the first illegal one."""
    state = LineState(stream.id)
    for rec in stream.events:
        try:
            apply(state, rec.event, rec.at, rec.by)
        except IllegalTransition:
            break
    return state


def line_state(ledger: Ledger, line: str) -> LineState:
    """A line's current lifecycle state (tolerant: a damaged stream is verify's business)."""
    if not (ledger.lines_dir / line).is_dir():
        return LineState(line)
    return replay_line(ledger.read_line(line, tolerant=True))


def check_accepts_intake(ledger: Ledger, line: str) -> None:
    """Raise LineRefusesIntake if `line` is parked or archived (cheap when it has no stream)."""
    st = line_state(ledger, line)
    if st.state == "parked":
        since = f" since {st.since.date().isoformat()}" if st.since else ""
        why = f" ({st.reason})" if st.reason else ""
        raise LineRefusesIntake(
            f"line {line!r} is parked{since}{why} and takes no new intake until one of its "
            f"restart triggers fires: {quote(st.triggers)}. If one has, run "
            f"`gptme-factory unpark {line} --because \"...\"`; otherwise use another line (--line)"
        )
    if st.state == "archived":
        raise LineRefusesIntake(
            f"line {line!r} is archived ({st.reason}) and takes no intake: use another line (--line)"
        )


# -- writing ----------------------------------------------------------------------------


def _record(ledger: Ledger, line: str, event: LineEvent, by: str | None) -> StoredLineEvent:
    ledger.config.line(line)  # unknown line -> ConfigError before anything is written
    with ledger.transaction() as tx:
        tx.describers.setdefault("line", describe_line)
        stream = ledger.read_line(line)
        if stream.forks:
            raise fork_error(stream)
        if stream.problems:
            raise LedgerDamaged(
                f"line {line} has ledger problems: {(stream.forks or stream.problems)[0]}; "
                "nothing was recorded (run `gptme-factory verify`)"
            )
        state = replay_line(stream)

        def legal(stored: StoredLineEvent) -> None:
            apply(copy.deepcopy(state), stored.event, stored.at, stored.by)

        return ledger.record(stream, event, by=by, check=legal)


def _clean(items: Sequence[str], what: str) -> list[str]:
    out = [" ".join(t.split()) for t in items if t and t.strip()]
    if not out:
        raise UsageError(f"give at least one {what}")
    return out


def park(ledger: Ledger, line: str, triggers: Sequence[str], *, reason: str = "",
         by: str | None = None) -> StoredLineEvent:
    """Park `line` with one or more restart triggers (in words)."""
    event = LineParked.build(triggers=_clean(triggers, "restart trigger (--trigger)"),
                             reason=reason.strip())
    return _record(ledger, line, event, by)


def unpark(ledger: Ledger, line: str, because: str, *, by: str | None = None) -> StoredLineEvent:
    """Resume a parked line, saying which trigger fired."""
    event = LineUnparked.build(because=_clean([because], "reason (--because)")[0])
    return _record(ledger, line, event, by)


def archive(ledger: Ledger, line: str, reason: str, *, by: str | None = None) -> StoredLineEvent:
    """Retire `line` for good."""
    event = LineArchived.build(reason=_clean([reason], "reason (--reason)")[0])
    return _record(ledger, line, event, by)


__all__ = [
    "LineRefusesIntake", "LineState", "apply", "archive", "check_accepts_intake", "line_state",
    "park", "quote", "replay_line", "unpark",
]
