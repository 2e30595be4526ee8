"""Transitions: how an event is checked against an artifact's replayed state and recorded.

Every mutation of an artifact goes through `record`: the ledger builds the event's header,
the event is applied to a copy of the replayed view first (IllegalTransition, nothing
written), then recorded — one commit, or part of the open transaction — and folded into the
view. Callers hold the ledger's writer lock and read the chain under it (`load`), so the tip
cannot move in between. Used by engine.py (stages, gates, people, cells), handoffs.py
(submit) and the reaper.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

from ..errors import IllegalTransition, LedgerDamaged
from ..ledger.config import StageConfig
from ..ledger.kinds import ArtifactChain, StoredEvent
from ..ledger.records import ArtifactEvent
from ..ledger.store import Ledger, fork_error
from .replay import ArtifactView, apply, replay
from .subjects import describe

# Longest free text an event holds (records.Text): longer summaries and notes are clipped.
MAX_TEXT = 20_000
_CLIPPED = "\n[... clipped]"


def clip(text: str, limit: int = MAX_TEXT) -> str:
    """`text`, cut to at most `limit` characters with a visible marker."""
    return text if len(text) <= limit else text[: limit - len(_CLIPPED)] + _CLIPPED


def load(ledger: Ledger, artifact: str) -> tuple[ArtifactChain, ArtifactView]:
    """Read and replay an artifact (strict: a damaged chain is refused)."""
    chain = ledger.read(artifact)
    if chain.forks:
        raise fork_error(chain)
    if chain.problems:
        raise LedgerDamaged(
            f"artifact {artifact} has ledger problems: {chain.problems[0]} "
            "(run `gptme-factory verify`); nothing was recorded"
        )
    return chain, replay_chain(ledger, chain)


def replay_chain(ledger: Ledger, chain: ArtifactChain) -> ArtifactView:
    """The replayed view of a chain already read."""
    assert chain.root is not None
    intake = chain.root.record
    return replay(intake, ledger.config.line(intake.line), chain.events)


def record(ledger: Ledger, chain: ArtifactChain, view: ArtifactView, event: ArtifactEvent, *,
           by: str | None = None, subject: str | None = None,
           extra_files: Mapping[str, bytes] | None = None) -> StoredEvent:
    """Check `event` against `view`, record it and fold it in (IllegalTransition if illegal)."""

    def legal(stored: StoredEvent) -> None:
        apply(copy.deepcopy(view), stored.event, stored.header.at)

    with ledger.transaction() as tx:
        tx.describers.setdefault("artifact", describe)
        stored = ledger.record(chain, event, by=by, check=legal, subject=subject,
                               extra_files=extra_files)
    apply(view, stored.event, stored.header.at)
    return stored


def current_stage(view: ArtifactView) -> StageConfig:
    """The stage an event may act on now, or IllegalTransition saying why there is none."""
    aid = view.intake.artifact
    if view.is_final:
        raise IllegalTransition(f"{aid} is {view.state}: nothing more can happen to it")
    stage = view.stage
    if stage is None:
        raise IllegalTransition(
            f"every stage of {aid} has passed: close it with "
            "`gptme-factory close ARTIFACT --successor ID` or `--terminal REASON`"
        )
    return stage
