"""Ledger integrity: `verify` re-reads everything and names every problem's file.

For every stream kind (artifacts, lines) it is a tolerant read of every stream
(ledger/stream.py: every record parses and validates — unknown kinds, unknown fields,
malformed YAML, aliases, bad UTF-8, symlinks, directories where a record belongs —, every
file's hash matches its name, every parent is in the chain, no two events share a parent),
plus what the line adds: the events are a legal history (replay for artifacts, lifecycle for
lines) and every recorded handoff satisfies its contract. Finally git, the audit trail, is
asked about what the chains alone cannot see: a committed record edited or deleted in the
working tree, or edited by a later commit (records are append-only: a commit may add or revert
one, never modify it).
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from ..errors import FactoryError, IllegalTransition, InvalidRecord
from ..ledger.kinds import ARTIFACTS, LINES
from ..ledger.records import HandoffSubmitted, format_validation_error
from ..ledger.store import Ledger
from ..ledger.stream import Problem, Stream, stream_ids
from .lifecycle import LineState
from .lifecycle import apply as apply_line
from .replay import ArtifactView, apply

__all__ = ["Problem", "verify_artifact", "verify_ledger", "verify_line", "verify_lines"]


def _note_discarded(stream: Stream[Any], notes: list[str] | None) -> None:
    if notes is not None and stream.discarded:
        names = ", ".join(e.path.rpartition("/")[2] for e in stream.discarded[:3])
        more = f" and {len(stream.discarded) - 3} more" if len(stream.discarded) > 3 else ""
        notes.append(f"{stream.folder}: a resolved fork's other branch stays in the ledger, "
                     f"discarded: {names}{more}")


def verify_artifact(ledger: Ledger, artifact: str,
                    notes: list[str] | None = None) -> list[Problem]:
    """Every problem with one artifact's records (`notes`: what is fine but worth knowing)."""
    where = f"{ledger.rel}/{ARTIFACTS.folder}/{artifact}"
    try:
        chain = ledger.read(artifact, tolerant=True)
    except InvalidRecord as exc:
        return [Problem(exc.source, p) for p in exc.problems]
    except FactoryError as exc:
        return [Problem(where, str(exc).replace("\n", " "))]
    problems = list(chain.problems)
    _note_discarded(chain, notes)
    assert chain.root is not None
    intake = chain.root
    try:
        line = ledger.config.line(intake.record.line)
    except FactoryError as exc:
        return [*problems, Problem(intake.path, str(exc))]
    view = ArtifactView(intake=intake.record, line=line)
    for stored in chain.events:
        event = stored.event
        try:
            apply(view, event, stored.at)
        except IllegalTransition as exc:
            problems.append(Problem(stored.path, f"illegal transition: {exc}"))
            break
        if isinstance(event, HandoffSubmitted):
            problems += _check_handoff(ledger, stored.path, artifact, event)
    return problems


def _check_handoff(ledger: Ledger, path: str, artifact: str,
                   event: HandoffSubmitted) -> list[Problem]:
    try:
        model = ledger.config.contract_model(event.contract)
    except KeyError:
        return [Problem(path, f"handoff.contract: unknown contract {event.contract!r}")]
    try:
        handoff = model.model_validate(event.handoff)
    except ValidationError as exc:
        return [Problem(path, f"handoff.{p}") for p in format_validation_error(exc)]
    if handoff.artifact != artifact:
        return [Problem(path, f"handoff.artifact: {handoff.artifact!r} is not {artifact!r}")]
    return []


def verify_line(ledger: Ledger, line: str, notes: list[str] | None = None) -> list[Problem]:
    """Every problem with one line's lifecycle stream."""
    stream = ledger.read_line(line, tolerant=True)
    problems = list(stream.problems)
    _note_discarded(stream, notes)
    state = LineState(line)
    for rec in stream.events:
        try:
            apply_line(state, rec.event, rec.at, rec.by)
        except IllegalTransition as exc:
            problems.append(Problem(rec.path, f"illegal transition: {exc}"))
            break
    return problems


def verify_lines(ledger: Ledger, notes: list[str] | None = None) -> list[Problem]:
    """Every problem in the lines' lifecycle streams (and stray entries beside them)."""
    lines, problems = stream_ids(LINES, ledger.lines_dir, f"{ledger.rel}/{LINES.folder}")
    for line in lines:
        problems += verify_line(ledger, line, notes)
    return problems


def verify_ledger(ledger: Ledger, notes: list[str] | None = None) -> list[Problem]:
    """Every problem in the whole ledger (empty when clean).

    `notes`, if given, receives what is worth knowing but not a problem: a record that a
    commit edited and a later commit restored byte for byte, the events of a fork's
    discarded branch.
    """
    problems: list[Problem] = []
    try:
        ledger.__dict__.pop("config", None)
        ledger.config  # noqa: B018 - validates factory.yaml
    except FactoryError as exc:
        return [Problem(f"{ledger.rel}/factory.yaml", str(exc).replace("\n", " "))]
    artifacts, bad = stream_ids(ARTIFACTS, ledger.artifacts_dir, f"{ledger.rel}/{ARTIFACTS.folder}")
    problems += bad
    for artifact in artifacts:
        problems += verify_artifact(ledger, artifact, notes)
    problems += verify_lines(ledger, notes)
    named = {p.where for p in problems}
    problems += [p for p in _git_problems(ledger, notes) if p.where not in named]
    return problems


def _git_problems(ledger: Ledger, notes: list[str] | None) -> list[Problem]:
    """Records changed against git: in the working tree, or by a commit after they were added.

    A record a commit edited and a later one restored to its first bytes (a revert) is not a
    problem any more: its chain verifies, and `notes` names the commits.
    """
    repo = ledger.repo
    if repo.head() is None:
        return []
    folders = [f"{ledger.rel}/{ARTIFACTS.folder}", f"{ledger.rel}/{LINES.folder}"]
    out: dict[str, Problem] = {}
    for path, change in repo.changed_against_head(folders):
        out[path] = Problem(path, f"{change} since it was committed (records are append-only)")
    for path, commits in repo.modified_in_history(folders).items():
        if path in out or not (repo.root / path).exists():
            continue
        added = repo.first_added(path)
        if added is not None and repo.blob_id(added, path) == repo.blob_id("HEAD", path):
            if notes is not None:
                shown = ", ".join(c[:12] for c in reversed(commits))
                notes.append(f"{path}: edited and restored to its recorded bytes by {shown}")
            continue
        out[path] = Problem(path, "modified by a commit after it was recorded "
                                  "(records are append-only: `git log -p` shows who)")
    return sorted(out.values(), key=lambda p: p.where)
