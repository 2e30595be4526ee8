"""The words the factory says about itself, shared by the CLI, the gptme tool and the board.

Ages and durations, a gate's verdict with the evidence the factory saw, a reaped cell, an
artifact's audit trail: each is formatted once here, so a person at the terminal and an agent
calling the tool read the same sentences. Plain text only (no rich, no click); imports nothing
heavy, because `status` formats ages on its fast path.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..cells.reaper import Reaped
    from ..ledger.gitstore import LogEntry
    from ..ledger.records import CheckResult
    from ..line.engine import AdvanceResult

FINAL_STATES = ("closed", "rejected", "abandoned")


def age(iso: str, now: datetime) -> str:
    """A short age like 42s, 5m, 3h, 2d ('?' when unknown)."""
    if not iso:
        return "?"
    secs = int((now - datetime.fromisoformat(iso)).total_seconds())
    # unrolled: `status` calls this twice per artifact
    if secs >= 86400:
        return f"{secs // 86400}d"
    if secs >= 3600:
        return f"{secs // 3600}h"
    if secs >= 60:
        return f"{secs // 60}m"
    return f"{max(secs, 0)}s"


def duration(seconds: float) -> str:
    """A short duration like 45s, 3m05s, 2h10m."""
    s = int(max(0, seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def lead_time(seconds: float | None) -> str:
    """A lead time at a glance: 45s, 12m, 3.5h, 2.0d ('-' when undefined)."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    if seconds < 86400:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def pct(value: float | None, digits: int = 1) -> str:
    """A rate as a percentage, or '-' when undefined."""
    return "-" if value is None else f"{value * 100:.{digits}f}%"


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], *, indent: str = "",
          last_wide: bool = True) -> list[str]:
    """A plain-text table with a header row; columns as wide as their widest cell.

    The last column is left unpadded (titles, notes) when `last_wide`.
    """
    body = [[str(c) for c in r] for r in rows]
    widths = [max([len(h), *(len(r[i]) for r in body)]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        padded = [c.ljust(w) for c, w in zip(cells, widths, strict=True)]
        if last_wide:
            padded[-1] = cells[-1]
        return (indent + "  ".join(padded)).rstrip()

    return [line([h.upper() for h in headers]), *(line(r) for r in body)]


def check_line(c: CheckResult) -> str:
    """One check the factory ran: `$ command  exit N  1.2s`."""
    code = "timeout" if c.timed_out else c.exit_code
    return f"$ {c.command}  exit {code}  {c.duration_s:.1f}s"


def verdict_lines(res: AdvanceResult) -> list[str]:
    """A gate's verdict: the new state, every check the factory ran, and the reasons."""
    lines = [res.headline()]
    lines += [f"  {check_line(c)}" for c in (res.outcome.checks if res.outcome else [])]
    lines += [f"  - {r}" for r in res.reasons]
    return lines


def reaped_lines(r: Reaped) -> list[str]:
    """How a reaped cell ended, what it cost, and its gate's verdict."""
    lines = [r.headline()]
    if r.advanced is not None:
        lines += ["  " + line for line in verdict_lines(r.advanced)]
    if r.gate_note:
        lines.append(f"  gate: {r.gate_note}")
    return lines


def log_lines(entries: Iterable[LogEntry]) -> list[str]:
    """An artifact's audit trail: one line per commit, its events and its subject."""
    out = []
    for e in entries:
        seqs = e.trailers.get("Factory-Seq", [])
        kinds = ", ".join(e.trailers.get("Factory-Event", [])) or "?"
        where = f"#{seqs[0]}" + (f"-{seqs[-1]}" if len(seqs) > 1 else "") if seqs else "#?"
        out.append(f"{e.commit[:10]}  {e.time}  {e.author:<30}  {where:<6} {kinds:<24} "
                   f"{e.subject}")
    return out
