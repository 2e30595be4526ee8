"""Ledger integrity: `verify` checks what changed since the last clean run, `--full` everything.

For every stream kind (artifacts, lines) it is a tolerant read of every stream
(ledger/stream.py: every record parses and validates — unknown kinds, unknown fields,
malformed YAML, aliases, bad UTF-8, symlinks, directories where a record belongs —, every
file's hash matches its name, every parent is in the chain, no two events share a parent),
plus what the line adds: the events are a legal history (replay for artifacts, lifecycle for
lines) and every recorded handoff satisfies its contract. Finally git, the audit trail, is
asked about what the chains alone cannot see: a committed record edited or deleted in the
working tree, or edited by a later commit (records are append-only: a commit may add or revert
one, never modify it).

`verify` (what the CLI runs) remembers a clean result by its commit id and next time checks
only what came after it (see `verify`); `verify_ledger` always checks everything.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..errors import FactoryError, IllegalTransition, InvalidRecord
from ..ledger.kinds import ARTIFACTS, LINES
from ..ledger.records import HandoffSubmitted, format_validation_error
from ..ledger.store import CONFIG_FILE, Ledger
from ..ledger.stream import Problem, Stream, stream_ids
from .lifecycle import LineState
from .lifecycle import apply as apply_line
from .replay import ArtifactView, apply

__all__ = ["Problem", "Verification", "verify", "verify_artifact", "verify_ledger", "verify_line",
           "verify_lines"]


def _note_discarded(stream: Stream[Any], notes: list[str] | None) -> None:
    if notes is not None and stream.discarded:
        names = ", ".join(e.path.rpartition("/")[2] for e in stream.discarded[:3])
        more = f" and {len(stream.discarded) - 3} more" if len(stream.discarded) > 3 else ""
        notes.append(f"{stream.folder}: a resolved fork's other branch stays in the ledger, "
                     f"discarded: {names}{more}")


def verify_artifact(ledger: Ledger, artifact: str,
                    notes: list[str] | None = None) -> list[Problem]:
    """Every problem with one artifact's records (`notes`: what is fine but worth knowing)."""
    where = ledger.artifact_rel(artifact)
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


@dataclass
class Verification:
    """What one `verify` found, and how much it looked at."""

    problems: list[Problem]
    notes: list[str]
    artifacts: int  # artifacts in the ledger
    checked: int  # artifacts whose records were read
    since: str | None = None  # the commit of the last clean verify (incremental), or None (full)


def verify(ledger: Ledger, *, full: bool = False) -> Verification:
    """Check the ledger: what changed since the last clean verify, or with `full` everything.

    A clean result is remembered outside git (factory/.runtime/verify-state.json) by HEAD's
    commit id, with the config's bytes and the verifying code. The next run checks only what
    is new relative to that commit: the artifacts whose folders differ between it and HEAD
    (`git diff-tree`, which skips unchanged subtrees), or differ in the index or the working
    tree, or hold untracked files; the commits after it, for edited records; the line streams
    and the folders' stray entries (cheap, always). When that commit is no longer in HEAD's
    history (a rebase, a reset, an amend rewrote it) or the config or code changed,
    everything is checked, and a note says why.
    """
    notes: list[str] = []
    base = _last_clean(ledger, notes) if not full else None
    if base is None:
        problems = verify_ledger(ledger, notes)
        count = len(ledger.artifact_ids())
        return Verification(problems, notes, count, count)
    problems, count, checked = _verify_since(ledger, base, notes)
    if not problems:
        _remember(ledger)
    return Verification(problems, notes, count, checked, base)


def verify_ledger(ledger: Ledger, notes: list[str] | None = None) -> list[Problem]:
    """Every problem in the whole ledger (empty when clean); a clean result is remembered.

    `notes`, if given, receives what is worth knowing but not a problem: a record that a
    commit edited and a later commit restored byte for byte, the events of a fork's
    discarded branch. The history check (a `git log` over every commit) runs in the
    background while the records are read.
    """
    problems: list[Problem] = []
    try:
        ledger.__dict__.pop("config", None)
        ledger.config  # noqa: B018 - validates factory.yaml
    except FactoryError as exc:
        return [Problem(f"{ledger.rel}/factory.yaml", str(exc).replace("\n", " "))]
    history = _start_history(ledger, None)
    artifacts, bad = stream_ids(ARTIFACTS, ledger.artifacts_dir, f"{ledger.rel}/{ARTIFACTS.folder}")
    problems += bad
    for artifact in artifacts:
        problems += verify_artifact(ledger, artifact, notes)
    problems += verify_lines(ledger, notes)
    named = {p.where for p in problems}
    problems += [p for p in _git_problems(ledger, notes, history) if p.where not in named]
    if not problems:
        _remember(ledger)
    return problems


def _verify_since(ledger: Ledger, since: str, notes: list[str]) -> tuple[list[Problem], int, int]:
    """(problems, artifacts, artifacts read) of what changed after clean commit `since`."""
    repo = ledger.repo
    problems: list[Problem] = []
    try:
        ledger.config  # noqa: B018 - validates factory.yaml
    except FactoryError as exc:
        return [Problem(f"{ledger.rel}/factory.yaml", str(exc).replace("\n", " "))], 0, 0
    history = _start_history(ledger, since)
    folders = _folders(ledger)
    touched = set(repo.changed_between(since, "HEAD", folders)) if repo.head() != since else set()
    touched.update(p for p, _ in repo.changed_against_head(folders))
    touched.update(repo.untracked(folders))
    listing = ledger.artifact_listing()
    cut = len(folders[0]) + 1
    changed = {aid for p in touched if p.startswith(folders[0] + "/")
               and (aid := listing.owner(p[cut:])) is not None}
    artifacts, bad = stream_ids(ARTIFACTS, ledger.artifacts_dir, folders[0])
    problems += bad
    for artifact in artifacts:
        if artifact in changed:
            problems += verify_artifact(ledger, artifact, notes)
    problems += verify_lines(ledger, notes)
    named = {p.where for p in problems}
    problems += [p for p in _git_problems(ledger, notes, history) if p.where not in named]
    return problems, len(artifacts), len(changed & set(artifacts))


def _folders(ledger: Ledger) -> list[str]:
    return [f"{ledger.rel}/{ARTIFACTS.folder}", f"{ledger.rel}/{LINES.folder}"]


def _start_history(ledger: Ledger, since: str | None) -> Callable[[], dict[str, list[str]]]:
    """Start git's history check (records modified by a commit after `since`) in the background."""
    if ledger.repo.head() is None:
        return dict
    return ledger.repo.start_modified_in_history(_folders(ledger), since)


def _git_problems(ledger: Ledger, notes: list[str] | None,
                  history: Callable[[], dict[str, list[str]]]) -> list[Problem]:
    """Records changed against git: in the working tree, or by a commit after they were added.

    A record a commit edited and a later one restored to its first bytes (a revert) is not a
    problem any more: its chain verifies, and `notes` names the commits.
    """
    repo = ledger.repo
    modified = history()
    if repo.head() is None:
        return []
    out: dict[str, Problem] = {}
    for path, change in repo.changed_against_head(_folders(ledger)):
        out[path] = Problem(path, f"{change} since it was committed (records are append-only)")
    for path, commits in modified.items():
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


# -- what the last clean verify saw ---------------------------------------------------------

STATE_FILE = "verify-state.json"
STATE_VERSION = 1
# The modules whose code decides what verify reports: editing one makes the next run full.
_CODE = ("ledger", "line/replay.py", "line/lifecycle.py", "line/verify.py")


def _key(ledger: Ledger) -> str:
    parts = [str(STATE_VERSION), ledger.rel]
    try:
        parts.append(hashlib.sha256((ledger.dir / CONFIG_FILE).read_bytes()).hexdigest())
    except OSError:
        parts.append("-")
    here = Path(__file__).parent.parent
    for name in _CODE:
        for path in sorted((here / name).glob("*.py")) if (here / name).is_dir() else [here / name]:
            try:
                st = path.stat()
                parts.append(f"{path.name}:{st.st_size}:{st.st_mtime_ns}")
            except OSError:
                parts.append(f"{path.name}:-")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def _remember(ledger: Ledger) -> None:
    """Keep HEAD as the last clean commit (nothing is kept without a commit)."""
    head = ledger.repo.head()
    if head is None:
        return
    path = ledger.runtime_dir / STATE_FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"key": _key(ledger), "commit": head}))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only checkout verifies in full every time


def _last_clean(ledger: Ledger, notes: list[str]) -> str | None:
    """The commit of the last clean verify, if HEAD descends from it (else None: verify all)."""
    try:
        data = json.loads((ledger.runtime_dir / STATE_FILE).read_text("utf-8"))
        commit, key = data["commit"], data["key"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(commit, str) or key != _key(ledger):
        if isinstance(commit, str):
            notes.append("the config or the factory's code changed since the last clean "
                         "verify: checked everything")
        return None
    head = ledger.repo.head()
    if head is None:
        return None
    if commit != head and not ledger.repo.is_ancestor(commit, head):
        notes.append(f"the last clean verify was at {commit[:12]}, which is no longer in "
                     "HEAD's history (it was rewritten: rebase, reset or amend): checked "
                     "everything")
        return None
    return commit
