"""The words the factory says about itself, shared by the CLI, the gptme tool and the board.

Ages, durations, times, money and token counts, a gate's verdict with the evidence the
factory saw, a check the factory ran, a reaped cell, what one event did, an artifact's audit
trail: each is formatted once here, so a person at the terminal, an agent calling the tool and
a viewer of the web board read the same sentences. Plain text only (no rich, no click, no
HTML); imports nothing heavy, because `status` formats ages on its fast path.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..cells.reaper import Reaped
    from ..ledger.gitstore import LogEntry
    from ..ledger.records import ArtifactEvent, CheckResult
    from ..ledger.stream import Stored
    from ..line.engine import AdvanceResult

FINAL_STATES = ("closed", "rejected", "abandoned")


def ago(seconds: float | None) -> str:
    """A time span at a glance, in its largest unit: 42s, 5m, 3h, 2d ('?' when unknown)."""
    if seconds is None:
        return "?"
    secs = int(seconds)
    # unrolled: `status` calls this twice per artifact
    if secs >= 86400:
        return f"{secs // 86400}d"
    if secs >= 3600:
        return f"{secs // 3600}h"
    if secs >= 60:
        return f"{secs // 60}m"
    return f"{max(secs, 0)}s"


def age(iso: str, now: datetime) -> str:
    """How long ago `iso` was, like 42s, 5m, 3h, 2d ('?' when unknown)."""
    if not iso:
        return "?"
    return ago((now - datetime.fromisoformat(iso)).total_seconds())


def duration(seconds: float | None) -> str:
    """A duration with two units: 45s, 3m05s, 2h10m, 3d04h ('-' when unknown)."""
    if seconds is None:
        return "-"
    s = int(max(0, seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def when(iso: str | None) -> str:
    """An ISO time as `2026-01-02 03:04 UTC` (the ledger's times are UTC); '-' when unknown."""
    if not iso:
        return "-"
    try:
        return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return iso


def usd(value: float | None) -> str:
    """Money: $0.0123, $1.23, $1,234.00 ('-' when unmeasured)."""
    if value is None:
        return "-"
    return f"${value:.4f}" if abs(value) < 1 else f"${value:,.2f}"


def tokens(n: int | None) -> str:
    """A token count: 12, 3.4k, 1.2M ('-' when unmeasured)."""
    if n is None:
        return "-"
    if n >= 1_000_000:
        return f"{n / 1_000_000:.1f}M"
    return f"{n / 1000:.1f}k" if n >= 1000 else str(n)


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
    body: list[Sequence[str]] = rows if isinstance(rows, list) else list(rows)
    n = len(headers)
    if set(map(len, body)) - {n}:
        raise ValueError(f"every row of the table needs {n} cells")
    columns = list(zip(*body, strict=True)) if body else [()] * n
    if any(set(map(type, column)) - {str} for column in columns):  # a cell not text yet
        columns = [tuple(map(str, column)) for column in columns]
        body = list(zip(*columns, strict=True))
    widths = [max(len(h), max(map(len, column), default=0))
              for h, column in zip(headers, columns, strict=True)]
    # One %-format pads every cell of a row (in C, and cheaper than str.format, which parses
    # its format string again for every row: `status` prints a row per artifact).
    cells = [f"%-{w}s" for w in widths]
    if last_wide:
        cells[-1] = "%s"
    fmt = indent.replace("%", "%%") + "  ".join(cells)
    return [(fmt % tuple(h.upper() for h in headers)).rstrip(),
            *[(fmt % tuple(r)).rstrip() for r in body]]


def exit_text(exit_code: int | None, timed_out: bool) -> str:
    """How a check ended: its exit code, or `timeout`."""
    return "timeout" if timed_out else str(exit_code)


def check_line(c: CheckResult) -> str:
    """One check the factory ran: `$ command  exit N  1.2s`."""
    return f"$ {c.command}  exit {exit_text(c.exit_code, c.timed_out)}  {c.duration_s:.1f}s"


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


def event_line(e: ArtifactEvent) -> str:
    """What one event of an artifact did, in a line (the board's timeline)."""
    from ..ledger import records as r  # loaded already: the event is one of its models

    if isinstance(e, r.StageStarted):
        return f"{e.stage} attempt {e.attempt} started: cell {e.cell} ({e.role})"
    if isinstance(e, r.CellSpawned):
        model = f", model {e.model}" if e.model else ""
        return f"{e.backend} cell launched{model}, {e.budget.timeout_s:g} s budget"
    if isinstance(e, r.HandoffSubmitted):
        return f"{e.contract} handed off by {e.cell}"
    if isinstance(e, r.GatePassed):
        return f"{e.gate} gate passed at {e.stage}: now {e.state}"
    if isinstance(e, r.GateFailed):
        return f"{e.gate} gate failed at {e.stage}: {e.failure_summary}"
    if isinstance(e, r.Rework):
        return f"sent back from {e.from_stage} to {e.to_stage}: {e.retry_note}"
    if isinstance(e, r.AttemptsExhausted):
        return f"{e.stage} used its {e.attempts} attempts"
    if isinstance(e, r.ContractViolation):
        return f"contract violation by {e.cell} after {e.attempts} tries: {e.errors[0]}"
    if isinstance(e, r.CellFinished):
        cost = f", {usd(e.cost_usd)}" if e.cost_usd is not None else ""
        why = f": {e.reason}" if e.reason else ""
        return f"cell {e.cell} ended ({e.outcome}) after {duration(e.wall_s)}{cost}{why}"
    if isinstance(e, r.ApprovalRequested):
        return f"approval requested for {e.stage}"
    if isinstance(e, r.Reviewed):
        said = f": {e.comments}" if e.comments else ""
        return f"{e.reviewer} reviewed {e.stage}: {e.decision}{said}"
    if isinstance(e, (r.Rejected, r.Abandoned)):
        return f"{e.kind}: {e.reason}"
    if isinstance(e, r.Published):
        return f"published ({e.target}) at {e.where}"
    if isinstance(e, r.Closed):
        return f"closed, successor {e.successor}" if e.successor else f"closed: {e.terminal}"
    if isinstance(e, r.LeaseRenewed):
        return f"claim of {e.cell} renewed until {e.until.isoformat()}"
    if isinstance(e, r.ClaimTakenOver):
        where = f" on {e.host}" if e.host else ""
        return (f"claim of {e.cell}{where} taken over (its lease expired "
                f"{e.lease_until.isoformat()})")
    if isinstance(e, r.ForkResolved):
        kept = ", ".join(c.kept[:12] for c in e.choices)
        return f"fork resolved: kept {kept}" + (f" ({e.reason})" if e.reason else "")
    return str(e.kind)  # pragma: no cover - the union is exhaustive


def describe_event(stored: Stored[Any]) -> str:
    """One event in a line: `#3 stage_started by tester at 2026-01-02T03:04:05+00:00 (host)`."""
    host = getattr(stored.event, "host", None)
    return (f"#{stored.seq} {stored.kind} by {stored.by} at {stored.at.isoformat()}"
            + (f" on {host}" if host else ""))
