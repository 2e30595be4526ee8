"""Intake: a new artifact enters a line, answering real demand.

Intake needs a demand source, at least one named consumer and an acceptance criterion; the
line must exist and take intake (a parked or archived line refuses, lifecycle.py). The
artifact's target — the project repository it changes — is the one named, else the line's,
else factory.yaml's `default_target`, else the brain itself (recorded as no target); a named
target's clone must be there. The intake record is the immutable root of the artifact's
stream (kinds.ARTIFACTS), committed alone.
"""

from __future__ import annotations

from pydantic import ValidationError

from ..errors import InvalidRecord, UsageError
from ..ledger.kinds import ARTIFACTS
from ..ledger.records import Intake, format_validation_error
from ..ledger.store import Ledger
from ..targets import registry
from .lifecycle import check_accepts_intake


def intake(
    ledger: Ledger,
    *,
    title: str,
    demand: str,
    consumers: list[str],
    acceptance: list[str],
    problem: str = "",
    line: str | None = None,
    classification: str = "factory_run",
    target: str | None = None,
    by: str | None = None,
) -> Intake:
    """Record a new artifact's intake (state `idea`) in one commit; returns the record."""
    demand = demand.strip()
    consumers = [c.strip() for c in consumers if c.strip()]
    acceptance = [a.strip() for a in acceptance if a.strip()]
    missing = [
        what
        for what, value in (
            ("a demand source (--demand)", demand),
            ("a named consumer (--consumer)", consumers),
            ("an acceptance criterion (--accept)", acceptance),
        )
        if not value
    ]
    if missing:
        raise UsageError(f"intake needs {' and '.join(missing)}; nothing was written")
    line = line or ledger.config.default_line
    ledger.config.line(line)  # unknown line -> ConfigError before anything is written
    target = registry.choose(ledger.config, explicit=target, line=line)
    registry.resolve(ledger, target)  # its clone must be there: TargetError, nothing written
    with ledger.locked():
        check_accepts_intake(ledger, line)  # a parked or archived line refuses intake
        aid = ledger.new_artifact_id(title)
        try:
            record = Intake.model_validate({
                "artifact": aid, "title": title, "problem": problem, "demand": demand,
                "consumers": consumers, "acceptance": acceptance, "line": line,
                "target": target, "classification": classification, "created_at": ledger.clock(),
                "created_by": by or ledger.actor,
            })
        except ValidationError as exc:
            raise InvalidRecord("intake", format_validation_error(exc)) from None
        ledger.add_root(ARTIFACTS, aid, record, f"intake: {title}")
    return record
