"""The shared ledger on the board: what is not pushed yet, and what came in from where.

Read from git (this clone's commits that the remote-tracking branch lacks) and from what the
last `sync` kept in factory/.runtime/sync.json (ledger/sync.py) — no record is parsed and
the config is not loaded, so a warm `status` stays fast.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..ledger.store import Ledger
from ..ledger.sync import pending
from .present import age


def sync_json(ledger: Ledger) -> dict[str, Any] | None:
    """The board's sync facts as plain data (None: this clone never synced)."""
    info = pending(ledger)
    if info is None:
        return None
    last = info.last or {}
    return {"remote": info.remote, "unpushed_commits": info.unpushed_commits,
            "last_sync": last.get("at"), "last_push": last.get("pushed_at"),
            "incoming_events": last.get("incoming_events", 0),
            "incoming_from": last.get("hosts", {})}


def sync_lines(ledger: Ledger, now: datetime) -> list[str]:
    """`sync` and its lines for the board (empty when this clone never synced)."""
    data = sync_json(ledger)
    if data is None:
        return []
    unpushed = data["unpushed_commits"]
    state = ("not fetched yet" if unpushed is None else
             "everything pushed" if unpushed == 0 else
             f"{unpushed} commit(s) not pushed yet (`gptme-factory sync`)")
    lines = ["sync", f"  {data['remote']}: {state}"]
    if data["last_sync"]:
        hosts = data["incoming_from"] or {}
        came = ", ".join(f"{h} ({n})" for h, n in sorted(hosts.items())) or "nothing new"
        lines.append(f"  last sync {age(str(data['last_sync']), now)} ago: "
                     f"{data['incoming_events']} event(s) in from {came}")
    return lines
