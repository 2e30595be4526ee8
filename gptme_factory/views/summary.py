"""One summary per artifact: what `status`, the gptme tool and the board show of it.

A summary is derived by reading and replaying an artifact's chain (`summarize_artifact`); the
status cache (statuscache.py) keeps them so a warm run re-reads only the artifacts whose files
changed, and status.py is the entry point. This module imports the replay (and with it
pydantic and the models) only when an artifact is read.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

from ..errors import FactoryError, InvalidRecord
from ..ledger.store import Ledger

if TYPE_CHECKING:
    from ..line.replay import ArtifactView


@dataclass(frozen=True)
class ArtifactSummary:
    """What the board shows for one artifact."""

    artifact: str
    title: str
    line: str
    state: str
    stage: str | None
    status: str
    cell: str | None
    last_event: str
    last_at: str
    created_at: str
    events: int
    problem: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Plain dict for --json output."""
        return asdict(self)

    def to_row(self) -> list[Any]:
        """The field values in declaration order (the status cache's compact form)."""
        return [getattr(self, name) for name in _FIELDS]

    @classmethod
    def from_row(cls, row: list[Any]) -> ArtifactSummary:
        """Inverse of `to_row`; ValueError if `row` does not hold one value per field."""
        if len(row) != len(_FIELDS):
            raise ValueError("not a summary row")
        # What the frozen dataclass's __init__ does, without 12 object.__setattr__ calls:
        # a warm `status` builds 10,000 of these.
        obj = object.__new__(cls)
        obj.__dict__.update(zip(_FIELDS, row, strict=True))
        return obj


_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(ArtifactSummary))


def summarize(view: ArtifactView, problem: str | None = None) -> ArtifactSummary:
    """Summary of a replayed artifact."""
    stage = view.stage
    last_at = view.last_at or view.intake.created_at
    return ArtifactSummary(
        artifact=view.intake.artifact,
        title=view.intake.title,
        line=view.intake.line,
        state=view.state,
        stage=stage.name if stage else None,
        status=view.status if not view.is_final else view.state,
        cell=view.cell,
        last_event=view.last_kind,
        last_at=last_at.isoformat(),
        created_at=view.intake.created_at.isoformat(),
        events=view.events,
        problem=problem,
    )


def load_view(ledger: Ledger, artifact: str) -> ArtifactView:
    """Read and replay one artifact (raises on a bad record; problems are verify's)."""
    from ..line.transitions import replay_chain

    return replay_chain(ledger, ledger.read(artifact))


def summarize_artifact(
    ledger: Ledger, artifact: str, raw: dict[str, bytes] | None = None
) -> ArtifactSummary:
    """Summary of one artifact; a broken one is shown with its problem, not hidden.

    `raw` is passed to `Ledger.read`: it receives the bytes the summary was derived from.
    """
    from ..line.transitions import replay_chain

    try:
        chain = ledger.read(artifact, raw=raw)
        view = replay_chain(ledger, chain)
    except FactoryError as exc:
        first = (
            f"{exc.source}: {exc.problems[0]}"
            if isinstance(exc, InvalidRecord) and exc.problems
            else str(exc).splitlines()[0]
        )
        return ArtifactSummary(
            artifact=artifact, title="?", line="?", state="broken", stage=None,
            status="broken", cell=None, last_event="?", last_at="", created_at="", events=0,
            problem=first + " (run `gptme-factory verify`)",
        )
    problem = str(chain.problems[0]) if chain.problems else None
    return summarize(view, problem)
