"""`board --html FILE`: the board as one self-contained HTML file.

The same page as the served one, with the data, the stylesheet, the script and the vendored
chart library inlined, and the pages of the artifacts that have a card embedded behind
`#artifact-ID` anchors (their commits found with one `git log`). No server, no network: for
a PR comment, a CI artifact or a brain repo's published site.
"""

from __future__ import annotations

import os
import sys
from datetime import datetime, timezone

from ..ledger.store import Ledger
from . import data, render


def static_html(ledger: Ledger, *, limit: int = data.DEFAULT_LIMIT,
                now: datetime | None = None) -> str:
    """The board page as one HTML document."""
    now = now or datetime.now(timezone.utc)
    board = data.board_data(ledger, now=now, limit=limit)
    pages = data.artifact_pages(ledger, data.shown_artifacts(board), now)
    return render.static_page(board, pages)


def write_static(ledger: Ledger, path: str, *, limit: int = data.DEFAULT_LIMIT) -> int:
    """Write the page to `path` (`-`: standard output) atomically; returns its size in bytes."""
    raw = static_html(ledger, limit=limit).encode()
    if path == "-":
        sys.stdout.buffer.write(raw)
        sys.stdout.buffer.flush()
        return len(raw)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(raw)
    os.replace(tmp, path)
    return len(raw)
