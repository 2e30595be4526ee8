"""`gptme-factory status`: the board, artifacts grouped by state."""

from __future__ import annotations

import gc
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import click

from ._common import echo_json, json_option, open_ledger, repo_option

if TYPE_CHECKING:
    from ..ledger.store import Ledger

def now_utc() -> datetime:
    """The current time (for ages and idleness)."""
    return datetime.now(timezone.utc)


def board_text(ledger: Ledger, no_cache: bool) -> str:
    """The whole board as plain text: artifacts, lines, running cells (tables with headers).

    On a shared ledger it ends with what is not pushed yet and what came in from where.
    """
    from ..views.cellboard import observations
    from ..views.status import load_line_statuses, load_summaries, render_board
    from ..views.statuscache import config_values
    from ..views.syncview import sync_lines

    summaries = load_summaries(ledger, use_cache=not no_cache)
    # Tens of thousands of summaries live until the board is printed: keep the collector
    # from walking them again and again while the rows are formatted (it halves the time).
    gc.freeze()
    now = now_utc()
    statuses = load_line_statuses(ledger, summaries, now, use_cache=not no_cache)
    cells = observations(ledger, now)
    cap = int(config_values(ledger)["max_concurrent_cells"]) if cells else 0
    return "\n".join([render_board(summaries, statuses, cells, cap, now),
                       *sync_lines(ledger, now)])


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
    progress note (or last meaningful output line) and whether it looks stalled. On a shared
    ledger: how many commits are not pushed yet, and what the last sync brought in from which
    hosts.
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
        from ..views.syncview import sync_json

        echo_json({"artifacts": [s.to_json() for s in summaries],
                   "lines": [x.to_json() for x in load_line_statuses(
                       ledger, summaries, now_utc(), use_cache=not no_cache)],
                   "cells": to_json(observations(ledger)),
                   "sync": sync_json(ledger)})
        return
    click.echo(board_text(ledger, no_cache))
