"""`gptme-factory status`: the board, artifacts grouped by state."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING

import click

from ._common import echo_json, json_option, open_ledger, repo_option

if TYPE_CHECKING:
    from ..ledger.store import Ledger

STATE_ORDER = ["idea", "designed", "patched", "verified", "published", "measured", "closed",
               "rejected", "abandoned", "broken"]


def now_utc() -> datetime:
    """The current time (for ages and idleness)."""
    return datetime.now(timezone.utc)


def board_text(ledger: Ledger, no_cache: bool) -> str:
    """The whole board as plain text: artifacts by state, lines, running cells."""
    from ..views.cellboard import observations, render_text
    from ..views.present import age
    from ..views.status import load_line_statuses, load_summaries
    from ..views.summary import ArtifactSummary

    summaries = load_summaries(ledger, use_cache=not no_cache)
    now = now_utc()
    statuses = load_line_statuses(ledger, summaries, now, use_cache=not no_cache)
    cells = observations(ledger, now)
    cell_lines = render_text(cells, ledger.config.max_concurrent_cells) if cells else []
    if not summaries:
        return "\n".join([
            "no artifacts yet: `gptme-factory intake TITLE --demand ... --consumer ... --accept ...`",
            "lines", *(f"  {x.describe()}" for x in statuses), *cell_lines])
    groups: dict[str, list[ArtifactSummary]] = {}
    for s in summaries:
        groups.setdefault(s.state, []).append(s)
    order = STATE_ORDER + sorted(set(groups) - set(STATE_ORDER))
    lines: list[str] = []
    for state in order:
        items = groups.get(state)
        if not items:
            continue
        lines.append(f"{state} ({len(items)})")
        for s in items:
            stage = f"{s.stage}:{s.status}" if s.stage else s.status
            lines.append(
                f"  {s.artifact:<48} {stage:<22} {age(s.created_at, now):>5}  "
                f"last {s.last_event} {age(s.last_at, now)} ago  {s.title}"
            )
            if s.problem:
                lines.append(f"    ! {s.problem}")
    lines.append("lines")
    lines += [f"  {x.describe()}" for x in statuses]
    lines += cell_lines
    return "\n".join(lines)


@click.command("status")
@click.option("--no-cache", is_flag=True, help="Ignore the status cache (slower, same answer).")
@click.option("--watch", is_flag=True, help="Refresh in place until Ctrl-C (running cells live).")
@click.option("--interval", type=float, default=1.0, show_default=True,
              help="Seconds between refreshes with --watch.")
@repo_option
@json_option
def command(no_cache: bool, watch: bool, interval: float, repo: str, as_json: bool) -> None:
    """Show every artifact grouped by state, the lines, and every running cell.

    For each running cell: artifact, role, backend, elapsed time, budget left, its latest
    progress note (or last meaningful output line) and whether it looks stalled.
    """
    ledger = open_ledger(repo)
    if watch and not as_json:
        from .status_watch import watch_board

        watch_board(lambda: board_text(ledger, no_cache), interval)
        return
    if as_json:
        from ..views.cellboard import observations, to_json
        from ..views.status import load_line_statuses, load_summaries

        summaries = load_summaries(ledger, use_cache=not no_cache)
        echo_json({"artifacts": [s.to_json() for s in summaries],
                   "lines": [x.to_json() for x in load_line_statuses(
                       ledger, summaries, now_utc(), use_cache=not no_cache)],
                   "cells": to_json(observations(ledger))})
        return
    click.echo(board_text(ledger, no_cache))
