"""Commit subjects that tell the story: what one commit of an artifact's events decided.

A commit holds one decision — a stage started and its cell spawned, a handoff, a gate verdict
with the rework or block it triggers — so `git log --oneline` reads as the artifact's story:
`build passed -> patched; verify started (gptodo)`, `verify failed: 1 check failed; rework to
build`. The ledger (store.py) puts the artifact's short id in front and clips the whole to 72
characters, so the distinguishing part comes first.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..ledger.kinds import StoredEvent, StoredLineEvent
from ..ledger.records import (
    Abandoned,
    ApprovalRequested,
    AttemptsExhausted,
    CellFinished,
    CellSpawned,
    ClaimTakenOver,
    Closed,
    ContractFixed,
    ContractViolation,
    EnvironmentFailed,
    ForkResolved,
    GateFailed,
    GatePassed,
    HandoffSubmitted,
    LeaseRenewed,
    LineArchived,
    LineParked,
    LineUnparked,
    Published,
    Rejected,
    Reviewed,
    Rework,
    StageStarted,
    parse_cell_id,
)


def _stage_of(cell: str) -> str:
    try:
        return parse_cell_id(cell)[1]
    except ValueError:
        return cell


def _short(text: str, limit: int = 40) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def describe(events: Sequence[StoredEvent]) -> str:
    """The decision the events of one commit (of one artifact) record, the verdict first."""
    verdicts: list[str] = []
    phrases: list[str] = []
    judged = {s.event.stage for s in events
              if isinstance(s.event, (GatePassed, GateFailed, EnvironmentFailed))}
    spawned = {s.event.cell: s.event.backend for s in events if isinstance(s.event, CellSpawned)}
    published = [s.event.target for s in events if isinstance(s.event, Published)]
    for stored in events:
        e = stored.event
        if isinstance(e, (StageStarted, HandoffSubmitted)) and e.stage in judged:
            continue  # implied by the verdict on that stage
        if isinstance(e, StageStarted):
            # the backend is news when the start is the commit's whole story
            extras = [spawned[e.cell]] if e.cell in spawned and not judged else []
            if e.attempt > 1:
                extras.append(f"attempt {e.attempt}")
            phrases.append(f"{e.stage} started" + (f" ({', '.join(extras)})" if extras else ""))
        elif isinstance(e, CellSpawned):
            if not any(isinstance(s.event, StageStarted) and s.event.cell == e.cell
                       for s in events):
                phrases.append(f"{_stage_of(e.cell)} cell spawned ({e.backend})")
        elif isinstance(e, HandoffSubmitted):
            phrases.append(f"{e.stage} handoff ({e.contract})")
        elif isinstance(e, GatePassed):
            how = f" ({published[-1]})" if e.gate == "package" and published else ""
            verdicts.append(f"{e.stage} passed -> {e.state}{how}")
        elif isinstance(e, GateFailed):
            verdicts.append(f"{e.stage} failed: {_short(e.reasons[0])}")
        elif isinstance(e, ContractFixed):
            if e.stage not in judged:  # else implied by the verdict (and the subject is short)
                phrases.append(f"contract fixed ({len(e.checks)} checks)")
        elif isinstance(e, Rework):
            verdicts.append(f"rework to {e.to_stage}")
        elif isinstance(e, AttemptsExhausted):
            verdicts.append(f"{e.stage} blocked: {e.attempts} attempt(s) used")
        elif isinstance(e, ContractViolation):
            verdicts.append(f"{e.stage} blocked: contract violation")
        elif isinstance(e, EnvironmentFailed):
            verdicts.append(f"{e.stage} blocked by the environment: {_short(e.cause, 30)}")
        elif isinstance(e, CellFinished):
            if not judged:
                phrases.append(f"{_stage_of(e.cell)} cell {e.outcome}"
                               + (f" (exit {e.exit_code})" if e.exit_code else ""))
        elif isinstance(e, ApprovalRequested):
            verdicts.append("awaits review")
        elif isinstance(e, Reviewed):
            verdicts.append(f"{e.stage} reviewed: {e.decision} by {_short(e.reviewer, 20)}")
        elif isinstance(e, Published):
            if not judged:
                phrases.append(f"published ({e.target})")
        elif isinstance(e, Closed):
            verdicts.append(f"closed: successor {e.successor}" if e.successor else
                            "closed: terminal")
        elif isinstance(e, (Rejected, Abandoned)):
            verdicts.append(f"{e.kind}: {_short(e.reason)}")
        elif isinstance(e, ClaimTakenOver):
            verdicts.append(f"{_stage_of(e.cell)} taken over from "
                            + _short(e.host or e.cell, 24))
        elif isinstance(e, LeaseRenewed):
            phrases.append(f"{_stage_of(e.cell)} lease renewed")
        elif isinstance(e, ForkResolved):
            verdicts.append(resolved_phrase(e))
    return "; ".join(dict.fromkeys([*verdicts, *phrases]))


def resolved_phrase(event: ForkResolved) -> str:
    """`fork resolved: kept 3fa91c2b7d10` (or how many forks, when several)."""
    if len(event.choices) == 1:
        return f"fork resolved: kept {event.choices[0].kept[:12]}"
    return f"{len(event.choices)} forks resolved"


def describe_line(events: Sequence[StoredLineEvent]) -> str:
    """The decision of one commit of a line's lifecycle events."""
    phrases: list[str] = []
    for stored in events:
        e = stored.event
        if isinstance(e, LineParked):
            phrases.append(f"parked until {_short('; '.join(e.triggers))}")
        elif isinstance(e, LineUnparked):
            phrases.append(f"unparked: {_short(e.because)}")
        elif isinstance(e, LineArchived):
            phrases.append(f"archived: {_short(e.reason)}")
        elif isinstance(e, ForkResolved):
            phrases.append(resolved_phrase(e))
    return "; ".join(phrases)
