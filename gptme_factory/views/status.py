"""What `status` reads: every artifact's summary, every line's status.

Both go through the status cache (statuscache.py) unless told not to, so a warm run reads no
ledger file; `--no-cache` derives everything from the ledger again (same answer, slower).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..ledger.store import Ledger
from .summary import ArtifactSummary, summarize_artifact

if TYPE_CHECKING:
    from datetime import datetime

    from .linestatus import LineStatus


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
