"""What `status` reads: every artifact's summary, every line's status.

Both go through the status cache (statuscache.py) unless told not to, so a warm run reads no
ledger file; `--no-cache` derives everything from the ledger again (same answer, slower).
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from operator import attrgetter
from typing import TYPE_CHECKING

from ..ledger.store import Ledger
from .present import age, table
from .summary import ArtifactSummary, summarize_artifact

if TYPE_CHECKING:
    from ..cells.watch import Observation
    from .linestatus import LineStatus

STATE_ORDER = ["idea", "designed", "patched", "verified", "published", "measured", "closed",
               "rejected", "abandoned", "broken"]


def load_summaries(ledger: Ledger, use_cache: bool = True) -> list[ArtifactSummary]:
    """Summaries of every artifact, sorted by id."""
    if use_cache:
        from .statuscache import cached_summaries

        return cached_summaries(ledger)
    return [summarize_artifact(ledger, a) for a in ledger.artifact_ids()]


def load_line_statuses(
    ledger: Ledger, summaries: list[ArtifactSummary], now: datetime, use_cache: bool = True
) -> list[LineStatus]:
    """Every line's status for the board (through the status cache unless `use_cache` is off)."""
    if use_cache:
        from .statuscache import cached_line_statuses

        return cached_line_statuses(ledger, summaries, now)
    from .linestatus import line_statuses

    return line_statuses(ledger, summaries, now)


def render_board(summaries: list[ArtifactSummary], lines: list[LineStatus],
                 cells: list[Observation], cap: int, now: datetime) -> str:
    """The board as `status` prints it: tables of artifacts, lines and running cells."""
    from .cellboard import row

    out: list[str] = []
    if not summaries:
        out.append("no artifacts yet: `gptme-factory intake TITLE --demand ... --consumer ... "
                   "--accept ...`")
    else:
        rank = {state: i for i, state in enumerate(STATE_ORDER)}
        # by state, then by id: two stable sorts, the first of a list already in id order
        ordered = sorted(sorted(summaries, key=_artifact_of),
                         key=lambda s: rank.get(s.state, len(rank)))
        rows: list[list[str]] = []
        notes: dict[int, str] = {}
        for s in ordered:
            created = age(s.created_at, now)  # (an idea's last event is its intake: one age)
            last = created if s.last_at == s.created_at else age(s.last_at, now)
            rows.append([s.artifact, s.state, s.stage or "-", s.status, created,
                         f"{s.last_event} {last} ago", s.title])
            if s.problem:
                notes[len(rows)] = f"    ! {s.problem}"
            elif s.needs_person:  # the cause the factory observed, where people look
                notes[len(rows)] = f"    ! needs a person: {s.needs_person}"
            elif s.retry_note and s.status == "pending":
                notes[len(rows)] = f"    retry: {s.retry_note.splitlines()[0]}"
        counts = ", ".join(f"{n} {state}" for state, n in sorted(
            Counter(map(_state_of, summaries)).items(),
            key=lambda kv: rank.get(kv[0], len(rank))))
        out.append(f"artifacts ({len(summaries)}: {counts})")
        for i, text in enumerate(table(
                ["artifact", "state", "stage", "status", "age", "last event", "title"], rows,
                indent="  ")):
            out.append(text)
            if i in notes:
                out.append(notes[i])
    out.append("lines")
    out += table(["line", "state", "artifacts", "last intake", "note"],
                 [_line_row(x) for x in lines], indent="  ")
    if cells:
        out.append(f"cells ({sum(o.alive for o in cells)} running, max {cap})")
        cell_rows = [row(o) for o in cells]
        out += table(["cell", "role", "backend", "elapsed", "state", "budget left", "latest"],
                     [[r["cell"], r["role"], r["backend"], r["elapsed"], r["state"],
                       r["budget"], r["latest"][:100]] for r in cell_rows], indent="  ")
    return "\n".join(out)


_artifact_of, _state_of = attrgetter("artifact"), attrgetter("state")


def _line_row(x: LineStatus) -> list[str]:
    return [x.line, x.state, str(x.artifacts), (x.last_intake or "none yet")[:10], x.note()]
