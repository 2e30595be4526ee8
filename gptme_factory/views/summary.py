"""One summary per artifact: what `status`, the gptme tool and the board show of it.

A summary is derived by reading and replaying an artifact's chain (`summarize_artifact`):
besides what `status` prints, it holds what a board card shows (attempt n/max, cost so far,
when the artifact arrived at its stage, demand and consumers, why it is blocked or needs a
person), so neither ever re-reads an artifact that did not change. The status cache
(statuscache.py) keeps them so a warm run re-reads only the artifacts whose files changed,
and status.py is the entry point. This module imports the replay (and with it pydantic and
the models) only when an artifact is read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from ..errors import FactoryError, InvalidRecord
from ..ledger.store import Ledger

if TYPE_CHECKING:
    from ..ledger.kinds import ArtifactChain
    from ..line.replay import ArtifactView


class ArtifactSummary(NamedTuple):
    """What the board shows for one artifact.

    A named tuple rather than a dataclass: a warm `status` restores 10,000 of these from the
    status cache, and a tuple is built from a stored row in one step (~6x faster than a
    dataclass), its fields read ~3x faster. Immutable, like the frozen dataclass it was.
    """

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
    demand: str = ""
    consumers: Sequence[str] = ()
    attempt: int = 0  # attempts used at the current stage
    max_attempts: int = 0  # the current stage's attempt budget (0: no current stage)
    cost_usd: float = 0.0  # measured cost of its finished cells
    tokens: int = 0
    stage_since: str = ""  # ISO: when it arrived at its current stage (or became final)
    blocked_reason: str | None = None
    needs_person: str | None = None  # what a person must do, when the line waits for one
    retry_note: str | None = None
    target: str | None = None  # the repo it changes, once intakes name one

    def to_json(self) -> dict[str, Any]:
        """Plain dict for --json output."""
        data = self._asdict()
        data["consumers"] = list(self.consumers)
        return data

    def to_row(self) -> list[Any]:
        """The field values in declaration order (the status cache's compact form)."""
        return list(self)

    @classmethod
    def from_row(cls, row: list[Any]) -> ArtifactSummary:
        """Inverse of `to_row`; ValueError if `row` does not hold one value per field."""
        if len(row) != _WIDTH:
            raise ValueError("not a summary row")
        return _new(cls, row)


_WIDTH = len(ArtifactSummary._fields)
_new = tuple.__new__
NOTE_MAX = 300  # a card shows the start of a long reason; `show` has the whole of it


def _short(text: str) -> str | None:
    text = " ".join(text.split())
    if not text:
        return None
    return text if len(text) <= NOTE_MAX else text[: NOTE_MAX - 1] + "\u2026"


def target_of(intake: Any) -> str | None:
    """The intake's target repo as text, or None while intakes do not name one."""
    target = getattr(intake, "target", None)
    if target is None or isinstance(target, str):
        return target or None
    for attr in ("name", "repo", "url"):
        value = getattr(target, attr, None)
        if isinstance(value, str) and value:
            return value
    return str(target)


def summarize(view: ArtifactView, problem: str | None = None) -> ArtifactSummary:
    """Summary of a replayed artifact."""
    stage = view.stage
    intake = view.intake
    last_at = view.last_at or intake.created_at
    since = last_at if view.is_final else (view.stage_since or intake.created_at)
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
        demand=intake.demand,
        consumers=list(intake.consumers),
        attempt=view.attempts.get(stage.name, 0) if stage else 0,
        max_attempts=stage.attempts if stage else 0,
        cost_usd=round(view.cost_usd, 6),
        tokens=view.tokens,
        stage_since=since.isoformat(),
        blocked_reason=_short(view.blocked_reason) if view.status == "blocked" else None,
        needs_person=view.needs_person(),
        retry_note=_short(view.retry_note) if stage and view.status == "pending" else None,
        target=target_of(intake),
    )


def load_view(ledger: Ledger, artifact: str) -> ArtifactView:
    """Read and replay one artifact (raises on a bad record; problems are verify's)."""
    from ..line.transitions import replay_chain

    return replay_chain(ledger, ledger.read(artifact))


def summarize_artifact(
    ledger: Ledger, artifact: str, raw: dict[str, bytes] | None = None, *,
    chain: ArtifactChain | None = None, error: FactoryError | None = None,
) -> ArtifactSummary:
    """Summary of one artifact; a broken one is shown with its problem, not hidden.

    `raw` is passed to `Ledger.read`: it receives the bytes the summary was derived from.
    A caller that has already read the artifact passes its `chain`, or the `error` the read
    raised.
    """
    from ..line.transitions import replay_chain

    try:
        if error is not None:
            raise error
        if chain is None:
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
