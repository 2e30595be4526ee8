"""Transitions: how an event is checked against the replayed state and appended.

Every mutation of an artifact goes through `record_event`: the new event is validated and
applied to a copy of the replayed view first (IllegalTransition or InvalidRecord, nothing
written), then appended as one commit and folded into the view. Callers hold the ledger's
writer lock and read the chain under it (`load`), so the tip cannot move in between.
Used by engine.py (stages, gates, people, cells) and handoffs.py (submit).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from ..errors import IllegalTransition, InvalidRecord, LedgerConflict
from ..ledger.config import StageConfig
from ..ledger.records import EVENT_ADAPTER, format_validation_error
from ..ledger.store import Chain, Ledger, StoredRecord
from .replay import ArtifactView, apply, replay

# Longest free text an event holds (records.Text): longer summaries and notes are clipped.
MAX_TEXT = 20_000
_CLIPPED = "\n[... clipped]"


def clip(text: str, limit: int = MAX_TEXT) -> str:
    """`text`, cut to at most `limit` characters with a visible marker."""
    return text if len(text) <= limit else text[: limit - len(_CLIPPED)] + _CLIPPED


def load(ledger: Ledger, artifact: str) -> tuple[Chain, ArtifactView]:
    """Read and replay an artifact (strict)."""
    chain = ledger.read(artifact)
    if chain.problems:
        raise LedgerConflict(
            f"artifact {artifact} has ledger problems: {chain.problems[0]} "
            "(run `gptme-factory verify`); nothing was recorded"
        )
    line = ledger.config.line(chain.intake.record.line)  # type: ignore[union-attr]
    return chain, replay(chain.intake.record, line, chain.models())  # type: ignore[arg-type]


def _append(
    ledger: Ledger,
    chain: Chain,
    view: ArtifactView,
    payload: dict[str, Any],
    by: str | None,
    extra_files: Mapping[str, bytes] | None = None,
) -> StoredRecord:
    """Append (legality already checked) and fold the event into `view`."""
    stored = ledger.append(chain, payload, by=by, extra_files=extra_files)
    apply(view, stored.record)  # type: ignore[arg-type]
    return stored


def _check_legal(view: ArtifactView, ledger: Ledger, chain: Chain, payload: dict[str, Any]) -> None:
    """Raise InvalidRecord or IllegalTransition unless `payload` replays on `view`."""
    data = {
        "schema_version": 1, "artifact": chain.artifact, "seq": len(chain.events) + 1,
        "parent": chain.tip.digest, "at": ledger.clock(), "by": "check", **payload,
    }
    try:
        event = EVENT_ADAPTER.validate_python(data)
    except ValidationError as exc:
        # A bad argument (an unknown review decision, an empty reviewer, an overlong reason):
        # a FactoryError naming the field, never a traceback.
        tag = f"{payload['kind']}."  # the union's tag leads each location: drop it
        lines = [p.removeprefix(tag) for p in format_validation_error(exc)]
        raise InvalidRecord(f"{payload['kind']} event", lines) from None
    apply(copy.deepcopy(view), event)


def record_event(ledger: Ledger, chain: Chain, view: ArtifactView, payload: dict[str, Any],
            by: str | None, extra_files: Mapping[str, bytes] | None = None) -> StoredRecord:
    """Check `payload` against `view`, then append it as one commit and fold it in."""
    _check_legal(view, ledger, chain, payload)
    return _append(ledger, chain, view, payload, by, extra_files)


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
