"""Ledger integrity: `verify` re-reads everything and names every problem's file.

Checks: the config validates; every record parses and validates (unknown kinds, unknown
fields, malformed YAML, aliases, bad UTF-8); every file's hash matches its name; every event's
parent is in the chain (tampering or a missing parent); no two events share a parent (a fork
from concurrent advances on two clones); the event sequence is a legal history of the line;
every recorded handoff satisfies its contract. Finally git, the audit trail, is asked about
what the chain alone cannot see: a committed record edited or deleted in the working tree (the
intake of an artifact with no events yet, or the last event of a chain), or edited by a later
commit (records are append-only: a commit may add or revert one, never modify it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from pydantic import ValidationError

from ..errors import FactoryError, IllegalTransition, InvalidRecord
from ..ledger.records import HandoffSubmitted, format_validation_error
from ..ledger.store import INTAKE_FILE, Ledger
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
    if not (ledger.artifacts_dir / artifact / INTAKE_FILE).is_file():
        return [Problem(where, f"no {INTAKE_FILE}: not an artifact (unexpected directory)")]
    try:
        chain = ledger.read(artifact, tolerant=True)
    except InvalidRecord as exc:
        return [Problem(exc.source, p) for p in exc.problems]
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
        with os.scandir(adir) as entries:
            for entry in entries:
                if entry.name.startswith(".") or entry.is_dir(follow_symlinks=False):
                    continue
                what = "symlink" if entry.is_symlink() else "file"
                problems.append(
                    Problem(f"{ledger.rel}/artifacts/{entry.name}", f"unexpected {what} in artifacts/")
                )
    for artifact in ledger.artifact_ids():
        problems += verify_artifact(ledger, artifact)
    from .lifecycle import verify_lines

    problems += verify_lines(ledger)
    named = {p.where for p in problems}
    problems += [p for p in _git_problems(ledger) if p.where not in named]
    return problems


def _git_problems(ledger: Ledger) -> list[Problem]:
    """Records changed against git: in the working tree, or by a commit after they were added."""
    repo = ledger.repo
    if repo.head() is None:
        return []
    rel = f"{ledger.rel}/artifacts"
    out: dict[str, Problem] = {}
    status = repo.git("diff-index", "--name-status", "--no-renames", "-z", "HEAD", "--", rel)
    fields = status.decode("utf-8", "surrogateescape").split("\0")
    for code, path in zip(fields[0::2], fields[1::2], strict=False):
        if code == "M":
            out[path] = Problem(path, "modified since it was committed (records are append-only)")
        elif code == "D":
            out[path] = Problem(path, "deleted since it was committed (records are append-only)")
    log = repo.git(
        "log", "--no-renames", "--diff-filter=M", "--name-only", "-z", "--format=", "HEAD",
        "--", rel,
    )
    for path in log.decode("utf-8", "surrogateescape").split("\0"):
        path = path.strip("\n")
        if path and path not in out and (repo.root / path).exists():
            out[path] = Problem(path, "modified by a commit after it was recorded "
                                      "(records are append-only: `git log -p` shows who)")
    return sorted(out.values(), key=lambda p: p.where)
