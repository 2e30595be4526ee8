"""What `status` shows for each production line, computed without pydantic or YAML.

A `LineBase` is a line's lifecycle state replayed from its stream plus its configured idle
bound: `line_bases` derives it from the ledger (line/lifecycle.py), and the status cache keeps
it keyed by the bytes of factory.yaml and factory/lines/ (statuscache.cached_line_statuses).
`statuses` adds what depends on the board and the clock: artifact count, last intake and
idleness. The lifecycle is imported only when a stream must be read, so a warm `status`
loads no pydantic model.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from ..ledger.store import Ledger

LineStateName = Literal["active", "parked", "archived"]


class HasLineAndTime(Protocol):
    """What `statuses` needs of an artifact summary."""

    @property
    def line(self) -> str:
        """The line the artifact runs on."""

    @property
    def created_at(self) -> str:
        """Its intake time, ISO text."""


def quote(items: Iterable[str]) -> str:
    """Restart triggers as `"a"; "b"`."""
    return "; ".join(f'"{t}"' for t in items)


@dataclass(frozen=True)
class LineBase:
    """A line's replayed lifecycle state and idle bound (times as ISO text)."""

    line: str
    state: LineStateName
    triggers: list[str]
    reason: str
    since: str | None
    resumed_at: str | None
    idle_after_days: int


@dataclass(frozen=True)
class LineStatus:
    """What `status` shows for one line."""

    line: str
    state: LineStateName
    triggers: list[str]
    reason: str
    since: str | None
    artifacts: int
    last_intake: str | None
    idle: bool
    idle_days: int | None
    idle_after_days: int

    def to_json(self) -> dict[str, Any]:
        """Plain dict for `status --json`."""
        return dict(self.__dict__)

    def describe(self) -> str:
        """One line of text for the board."""
        text = f"{self.line}: {self.state}"
        if self.state == "parked":
            text += f" until {quote(self.triggers)}"
        elif self.state == "archived":
            text += f" ({self.reason})"
        text += f"; {self.artifacts} artifact(s)"
        if self.last_intake:
            text += f", last intake {self.last_intake[:10]}"
        else:
            text += ", no intake yet"
        if self.idle:
            text += (f"; IDLE: no intake for {self.idle_days} days (idle after "
                     f"{self.idle_after_days}); park or archive it if the demand is gone")
        return text


def statuses(
    bases: Sequence[LineBase], summaries: Iterable[HasLineAndTime], now: datetime
) -> list[LineStatus]:
    """Each line's status: its base plus artifact count, last intake and idleness.

    A line is idle when it is active and neither an intake nor an unpark happened in the last
    `idle_after_days` days. A line that never had either is not called idle (there is no
    reference time in the ledger); `status` says "no intake yet".
    """
    last: dict[str, str] = {}
    count: dict[str, int] = {}
    for s in summaries:
        count[s.line] = count.get(s.line, 0) + 1
        if s.created_at and s.created_at > last.get(s.line, ""):
            last[s.line] = s.created_at
    out: list[LineStatus] = []
    for b in bases:
        refs = [datetime.fromisoformat(last[b.line])] if b.line in last else []
        if b.resumed_at:
            refs.append(datetime.fromisoformat(b.resumed_at))
        idle_days = int((now - max(refs)) / timedelta(days=1)) if refs else None
        out.append(LineStatus(
            line=b.line, state=b.state, triggers=list(b.triggers), reason=b.reason,
            since=b.since, artifacts=count.get(b.line, 0), last_intake=last.get(b.line),
            idle_after_days=b.idle_after_days, idle_days=idle_days,
            idle=b.state == "active" and idle_days is not None and idle_days >= b.idle_after_days,
        ))
    return out


def line_bases(ledger: Ledger) -> list[LineBase]:
    """Every configured or recorded line's replayed state and idle bound (what is cached)."""
    from ..line.lifecycle import line_state

    cfg = ledger.config
    out: list[LineBase] = []
    for name in sorted(set(cfg.lines) | set(ledger.line_ids())):
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

    `status` goes through the status cache instead (statuscache.cached_line_statuses), which
    gives the same answer without reading streams.
    """
    return statuses(line_bases(ledger), summaries, now)
