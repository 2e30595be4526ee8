"""Short texts for the agent: the board, one artifact's next step, the session briefing.

Shared by the tool functions, the `/factory` command and the `session.start` hook, so the
agent and the human read the same words. Works on `board.ArtifactSummary` values only.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from ...views.present import FINAL_STATES, age

if TYPE_CHECKING:
    from ...views.summary import ArtifactSummary

FINAL = FINAL_STATES


class Reply(str):
    """A tool function's answer: text that IPython shows plainly (not as a quoted repr).

    It also carries data for code that chains calls: `.ok` (False for an "error: ..."
    answer) and, where it applies, `.artifact`, `.cell` or `.path`.
    """

    ok: bool

    def __new__(cls, text: str, ok: bool = True, **data: object) -> Reply:
        obj = super().__new__(cls, text)
        obj.ok = ok
        obj.__dict__.update(data)
        return obj

    def __repr__(self) -> str:
        return str(self)

    def _repr_pretty_(self, p: object, cycle: bool) -> None:
        p.text(str(self))  # type: ignore[attr-defined]


def next_step(s: ArtifactSummary) -> str:
    """What to do next with an artifact, naming the tool function."""
    a = s.artifact
    if s.state in FINAL:
        return "nothing: it is final"
    if s.state == "broken":
        return "run factory_verify() and repair the ledger"
    if s.stage is None:
        return (f"every stage passed: factory_close({a!r}, successor=ID) "
                "or factory_close(..., terminal=REASON)")
    if s.status == "pending":
        return (f"stage {s.stage} needs a cell: factory_spawn({a!r}) (or factory_start({a!r}) "
                "to do it yourself)")
    if s.status == "running":
        return f"cell {s.cell} works on {s.stage}; it hands off with factory_submit(cell, handoff)"
    if s.status == "submitted":
        return f"run the {s.stage} gate: factory_advance({a!r})"
    if s.status == "awaiting_approval":
        return f"a person reviews {s.stage}: factory_review({a!r}, 'approve'|'request_changes'|'reject', reviewer)"
    if s.status == "blocked":
        return "blocked: a person decides (start --force to retry, or abandon/reject it)"
    return s.status


def summary_line(s: ArtifactSummary, now: datetime | None = None) -> str:
    """One artifact on one line."""
    where = f"{s.stage}:{s.status}" if s.stage and s.state not in FINAL else s.status
    cell = f"  cell {s.cell}" if s.cell and s.status == "running" else ""
    return (f"- {s.artifact}  {s.state}  {where}{cell}  "
            f"(last {s.last_event} {age(s.last_at, now or datetime.now(timezone.utc))} ago)  "
            f"{s.title}")


def board(summaries: Sequence[ArtifactSummary], include_final: bool = False,
          limit: int = 50) -> str:
    """The board: active artifacts (and final ones if asked), running cells, next steps."""
    if not summaries:
        return ("no artifacts yet: factory_intake(title, demand, consumers, acceptance) records "
                "the first one")
    now = datetime.now(timezone.utc)
    active = [s for s in summaries if s.state not in FINAL]
    final = [s for s in summaries if s.state in FINAL]
    running = [s for s in active if s.status == "running"]
    lines = [f"{len(summaries)} artifact(s): {len(active)} active, {len(final)} final; "
             f"{len(running)} cell(s) running"]
    shown = active + (final if include_final else [])
    for s in shown[:limit]:
        lines.append(summary_line(s, now))
        if s.state not in FINAL:
            lines.append(f"    next: {next_step(s)}")
        if s.problem:
            lines.append(f"    ! {s.problem}")
    if len(shown) > limit:
        lines.append(f"... and {len(shown) - limit} more")
    if final and not include_final:
        lines.append(f"({len(final)} final artifact(s) hidden: factory_status(include_final=True))")
    return "\n".join(lines)


def briefing(summaries: Sequence[ArtifactSummary], where: str, limit: int = 8) -> str:
    """The few lines the session.start hook gives the agent (empty: nothing to say)."""
    active = [s for s in summaries if s.state not in FINAL]
    if not active:
        return ""
    now = datetime.now(timezone.utc)
    running = [s for s in active if s.status == "running"]
    lines = [f"Factory ledger in {where}: {len(active)} active artifact(s), "
             f"{len(running)} cell(s) running."]
    order = running + [s for s in active if s.status != "running"]
    for s in order[:limit]:
        lines.append(summary_line(s, now))
    if len(order) > limit:
        lines.append(f"... and {len(order) - limit} more: factory_status()")
    lines.append("Use the factory tool functions (factory_status(), factory_show(id), ...); "
                 "the factory-run skill has the procedure.")
    return "\n".join(lines)
