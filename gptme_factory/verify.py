"""Ledger integrity: `verify` re-reads everything and names every problem's file.

Checks: the config validates; every record parses and validates (unknown kinds, unknown
fields, malformed YAML, aliases, bad UTF-8); every file's hash matches its name; every event's
parent is in the chain (tampering or a missing parent); no two events share a parent (a fork
from concurrent advances on two clones); the event sequence is a legal history of the line;
every recorded handoff satisfies its contract.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from pydantic import ValidationError

from .errors import FactoryError, IllegalTransition
from .ledger import Ledger
from .records import HandoffSubmitted, format_validation_error
from .replay import ArtifactView, apply


@dataclass(frozen=True)
class Problem:
    """One integrity problem, anchored to a file or artifact."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


def _split(line: str, default: str) -> Problem:
    where, sep, msg = line.partition(": ")
    return Problem(where, msg) if sep and "/" in where else Problem(default, line)


def verify_artifact(ledger: Ledger, artifact: str) -> list[Problem]:
    """Every problem with one artifact's records."""
    where = f"{ledger.rel}/artifacts/{artifact}"
    try:
        chain = ledger.read(artifact, tolerant=True)
    except FactoryError as exc:
        return [Problem(where, str(exc).replace("\n", " "))]
    problems = [_split(p, where) for p in chain.problems]
    try:
        line = ledger.config.line(chain.intake.record.line)  # type: ignore[union-attr]
    except FactoryError as exc:
        return [*problems, Problem(chain.intake.path, str(exc))]
    view = ArtifactView(intake=chain.intake.record, line=line)  # type: ignore[arg-type]
    for stored in chain.events:
        event = stored.record
        try:
            apply(view, event)  # type: ignore[arg-type]
        except IllegalTransition as exc:
            problems.append(Problem(stored.path, f"illegal transition: {exc}"))
            break
        if isinstance(event, HandoffSubmitted):
            problems += _check_handoff(ledger, stored.path, event)
    return problems


def _check_handoff(ledger: Ledger, path: str, event: HandoffSubmitted) -> list[Problem]:
    try:
        model = ledger.config.contract_model(event.contract)
    except KeyError:
        return [Problem(path, f"handoff.contract: unknown contract {event.contract!r}")]
    try:
        handoff = model.model_validate(event.handoff)
    except ValidationError as exc:
        return [Problem(path, f"handoff.{p}") for p in format_validation_error(exc)]
    if handoff.artifact != event.artifact:
        return [Problem(path, f"handoff.artifact: {handoff.artifact!r} is not {event.artifact!r}")]
    return []


def verify_ledger(ledger: Ledger) -> list[Problem]:
    """Every problem in the whole ledger (empty when clean)."""
    problems: list[Problem] = []
    try:
        ledger.__dict__.pop("config", None)
        ledger.config  # noqa: B018 - validates factory.yaml
    except FactoryError as exc:
        return [Problem(f"{ledger.rel}/factory.yaml", str(exc).replace("\n", " "))]
    adir = ledger.artifacts_dir
    if adir.is_dir():
        for entry in os.scandir(adir):
            if entry.is_file() and not entry.name.startswith("."):
                problems.append(
                    Problem(f"{ledger.rel}/artifacts/{entry.name}", "unexpected file in artifacts/")
                )
    for artifact in ledger.artifact_ids():
        problems += verify_artifact(ledger, artifact)
    return problems
