"""Ledger integrity: `verify` checks what changed since the last clean run, `--full` everything.

For every stream kind (artifacts, lines) it is a tolerant read of every stream
(ledger/stream.py: every record parses and validates — unknown kinds, unknown fields,
malformed YAML, aliases, bad UTF-8, symlinks, directories where a record belongs —, every
file's hash matches its name, every parent is in the chain, no two events share a parent),
plus what the line adds: the events are a legal history (replay for artifacts, lifecycle for
lines) and every recorded handoff satisfies its contract. Finally git, the audit trail, is
asked about what the chains alone cannot see: a committed record edited or deleted in the
working tree, or edited or deleted by a later commit (records are append-only: a commit may
add one or undo a commit with `git revert`, never modify or delete one otherwise; `migrate`
moves whole folders, which is not a deletion).

`verify` (what the CLI runs) remembers a clean result by its commit id and next time checks
only what came after it (see `verify`); `verify_ledger` always checks everything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from ..errors import FactoryError, IllegalTransition, InvalidRecord
from ..ledger import dirmarks, layout, watcher
from ..ledger.kinds import ARTIFACTS, LINES
from ..ledger.records import HandoffSubmitted, format_validation_error
from ..ledger.store import INTAKE_FILE, Ledger
from ..ledger.stream import EVENT_FILE_RE, Problem, Stream, stream_ids
from . import verifystate
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


def verify(ledger: Ledger, *, full: bool = False,
           started: verifystate.Started | None = None) -> Verification:
    """Check the ledger: what changed since the last clean verify, or with `full` everything.

    What the last clean run saw is kept outside git (verifystate.py). This run checks only
    what is new relative to it: the artifacts whose folders differ between its commit and
    HEAD (`git diff-tree`, which skips unchanged subtrees), or changed on disk since; the
    commits after it, for edited records; the line streams and the folders' stray entries.
    What changed on disk is, when watchman runs here (ledger/watcher.py), what the watcher
    saw since that run began: only those folders are read, listed and compared with HEAD,
    and git compares the index with HEAD without looking at any file (`_verify_watched`).
    Without a watcher it is what differs from HEAD in the index or the working tree (`git
    diff-index`, git's stat check of every tracked file), or a directory whose entries
    changed or an untracked file that was edited (the snapshot of directories,
    ledger/dirmarks.py: one `lstat` per directory; git's index is asked about the files of
    the changed ones only). When that commit is no longer in HEAD's history (a rebase, a
    reset, an amend rewrote it), the config or code changed, or the watcher cannot say what
    changed since its clock and the state has no snapshot to go by, everything is checked,
    and a note says why. `started` is
    `verifystate.start(ledger, full=full)` if the caller set git to work already.
    """
    run = started if started is not None else verifystate.start(ledger, full=full)
    try:
        changed = run.watched() if run.watched is not None else None
        if run.watched is not None and changed is None:
            run.unwatched(ledger)
        if run.since is not None and changed is not None and run.counts is not None:
            problems, count, checked = _verify_watched(ledger, run, changed, run.counts)
        elif run.since is not None and run.snapshot is not None:
            problems, count, checked = _verify_since(ledger, run, run.since, run.snapshot)
        else:
            problems, count = _verify_all(ledger, run, run.notes)
            return Verification(problems, run.notes, count, count)
        return Verification(problems, run.notes, count, checked, run.since)
    finally:
        run.finish()


def verify_ledger(ledger: Ledger, notes: list[str] | None = None) -> list[Problem]:
    """Every problem in the whole ledger (empty when clean); a clean result is remembered.

    `notes`, if given, receives what is worth knowing but not a problem: a record that a
    commit edited and a later commit restored byte for byte, the events of a fork's
    discarded branch. The history check (a `git log` over every commit) runs in the
    background while the records are read.
    """
    run = verifystate.start(ledger, full=True)
    try:
        return _verify_all(ledger, run, notes)[0]
    finally:
        run.finish()


# Records sit in the folders three levels below the stream folders (artifacts/<b>/<s>/<id>; a
# line's folder, or an artifact's from an older layout, is one or two levels down): deeper
# directories (a cell's briefs/) are never read as records, so the snapshot does not look.
_DEPTH = 3


def _verify_all(ledger: Ledger, run: verifystate.Started, notes: list[str] | None
                ) -> tuple[list[Problem], int]:
    """(problems, artifacts) of the whole ledger."""
    problems: list[Problem] = []
    try:
        ledger.__dict__.pop("config", None)
        ledger.config  # noqa: B018 - validates factory.yaml
    except FactoryError as exc:
        return [Problem(f"{ledger.rel}/factory.yaml", str(exc).replace("\n", " "))], 0
    # What the next run compares with, taken before anything is read.
    root, scratch, folders = str(ledger.repo.root), str(ledger.runtime_dir), ledger.stream_folders
    watch = run.clock()
    snap = dirmarks.take(root, folders, scratch, _DEPTH)
    if run.head is not None:
        dirmarks.add_files(root, snap, ledger.repo.untracked(folders), scratch)
    listing = ledger.artifact_listing()
    artifacts, bad = stream_ids(ARTIFACTS, ledger.artifacts_dir, folders[0], listing=listing)
    problems += bad
    for artifact in artifacts:
        problems += verify_artifact(ledger, artifact, notes)
    problems += verify_lines(ledger, notes)
    named = {p.where for p in problems}
    problems += [p for p in _git_problems(ledger, notes, run, run.against())
                 if p.where not in named]
    if not problems:
        verifystate.remember(ledger, run.head, snap, watch, _counts(listing))
    return problems, len(listing.folders)


def _verify_since(ledger: Ledger, run: verifystate.Started, since: str,
                  old: dirmarks.Snapshot) -> tuple[list[Problem], int, int]:
    """(problems, artifacts, artifacts read) of what changed after clean commit `since`."""
    repo = ledger.repo
    root, scratch, folders = str(repo.root), str(ledger.runtime_dir), ledger.stream_folders
    problems: list[Problem] = []
    try:
        ledger.config  # noqa: B018 - validates factory.yaml
    except FactoryError as exc:
        return [Problem(f"{ledger.rel}/factory.yaml", str(exc).replace("\n", " "))], 0, 0
    # git looks at history and at every tracked file (started already), while this process
    # looks at the directories (one lstat each) and asks git about the files of the changed
    # ones only: those it does not track are kept in the snapshot, to see them edited.
    watch = run.clock()  # the watcher's, if one runs now: for the next run, before any read
    moved = dirmarks.changes(root, old, folders, scratch, _DEPTH)
    new_files = repo.untracked_of(moved.listed)
    dirmarks.add_files(root, moved.now, new_files, scratch)
    paths = [*moved.dirs, *moved.files, *new_files, *run.between(),
             *(p for p, _ in run.against())]
    # A shelf or bucket whose directory did not change holds the folders it held: only the
    # changed ones are listed, the others keep their count (all of them, with no counts kept).
    ids, reread, _ = _touched(folders, paths)
    counts = run.counts
    listing = ledger.artifact_listing(reread if counts is not None else None)
    artifacts, bad = stream_ids(ARTIFACTS, ledger.artifacts_dir, folders[0], listing=listing,
                                only=ids)
    problems += bad
    for artifact in artifacts:
        if artifact in ids:
            problems += verify_artifact(ledger, artifact, run.notes)
    problems += verify_lines(ledger, run.notes)
    named = {p.where for p in problems}
    problems += [p for p in _git_problems(ledger, run.notes, run, run.against())
                 if p.where not in named]
    now = _counts(listing) if counts is None else _merged_counts(counts, reread, listing)
    if not problems:
        verifystate.remember(ledger, run.head, moved.now, watch, now)
    return problems, _total(now, listing), len(ids & set(artifacts))


def _verify_watched(ledger: Ledger, run: verifystate.Started, seen: watcher.Changed,
                    counts: verifystate.Counts) -> tuple[list[Problem], int, int]:
    """(problems, artifacts, artifacts read) of what changed since the last clean verify.

    The watcher says which paths changed on disk since its clock (taken when that verify
    began), the tree diff which changed in commits since its commit: only their folders are
    read, only their shelves listed (a bucket, where something changed beside its shelves),
    only their files compared with HEAD (`worktree_against`; git compares the index with HEAD
    meanwhile, without looking at any file). The places not listed keep the number of
    artifacts they had.
    """
    repo, folders = ledger.repo, ledger.stream_folders
    assert run.head is not None
    try:
        ledger.config  # noqa: B018 - validates factory.yaml
    except FactoryError as exc:
        return [Problem(f"{ledger.rel}/factory.yaml", str(exc).replace("\n", " "))], 0, 0
    ids, reread, places = _touched(folders, [*seen.paths, *run.between()])
    listing = ledger.artifact_listing(reread)
    artifacts, problems = stream_ids(ARTIFACTS, ledger.artifacts_dir, folders[0],
                                     listing=listing, only=ids)
    for artifact in artifacts:
        if artifact in ids:
            problems += verify_artifact(ledger, artifact, run.notes)
    problems += verify_lines(ledger, run.notes)
    against = run.against() + repo.worktree_against(run.head, sorted(places))
    named = {p.where for p in problems}
    problems += [p for p in _git_problems(ledger, run.notes, run, against)
                 if p.where not in named]
    now = _merged_counts(counts, reread, listing)
    if not problems:
        verifystate.remember(ledger, run.head, None, seen.watch, now)
    return problems, _total(now, listing), len(ids & set(artifacts))


def _touched(folders: list[str], paths: list[str]) -> tuple[set[str], set[str], set[str]]:
    """(ids, places to list, folders) that `paths` (repo-relative) may touch, by their shape.

    ids and places to list: layout.touched's, for the paths under factory/artifacts; folders:
    the repo-relative artifact and line folders to compare with HEAD.
    """
    arts, lines = folders
    inside: list[str] = []
    places: set[str] = set()
    for path in paths:
        if path.startswith(lines + "/"):
            places.add(f"{lines}/{path[len(lines) + 1:].partition('/')[0]}")
        elif path.startswith(arts + "/"):
            inside.append(path[len(arts) + 1:])
    ids, reread, under = layout.touched(inside)
    return ids, reread, places | {f"{arts}/{rel}" for rel in under}


def _counts(listing: layout.Listing) -> verifystate.Counts:
    """How many artifact folders each shelf (`b/s`) or bucket (`b`, shallow ones) holds."""
    out: verifystate.Counts = {}
    for folder in listing.folders.values():
        place = layout.place_of(folder)
        if place:
            out[place] = out.get(place, 0) + 1
    return out


def _merged_counts(counts: verifystate.Counts, reread: set[str],
                   listing: layout.Listing) -> verifystate.Counts:
    """The last clean run's counts, with those of the places listed again (`reread`) anew."""
    return {k: n for k, n in counts.items()
            if k not in reread and k.partition("/")[0] not in reread} | _counts(listing)


def _total(counts: verifystate.Counts, listing: layout.Listing) -> int:
    """How many artifacts there are: those in shelves and buckets, and the flat ones."""
    return sum(counts.values()) + sum(1 for folder in listing.folders.values()
                                      if "/" not in folder)


def _is_record(path: str) -> bool:
    """True if `path` names a record (an event file or an intake), not a brief or a stray."""
    name = path.rpartition("/")[2]
    return name == INTAKE_FILE or EVENT_FILE_RE.match(name) is not None


def _moved(ledger: Ledger, path: str, moved: dict[str, str | None]) -> bool:
    """True if `path`, gone, was an artifact file whose folder moved (`migrate`) with it."""
    prefix = f"{ledger.rel}/artifacts/"
    if not path.startswith(prefix):
        return False
    rel = path[len(prefix):]
    folder = layout.folder_of(rel)
    if folder is None:
        return False
    if folder not in moved:
        here = ledger.artifact_folder(folder.rpartition("/")[2])
        moved[folder] = here if here != folder else None
    now = moved[folder]
    return now is not None and (ledger.artifacts_dir / now / rel[len(folder) + 1:]).exists()


def _git_problems(ledger: Ledger, notes: list[str] | None, run: verifystate.Started,
                  against: list[tuple[str, str]]) -> list[Problem]:
    """Records changed against git: in the working tree, or by a commit after they were added.

    A record a commit edited and a later one restored to its first bytes (a revert) is not a
    problem any more: its chain verifies, and `notes` names the commits. A record a commit
    deleted is one (the chain alone cannot tell a deleted tip from one never written), unless
    its artifact's folder moved with it (`migrate`) or the commit is a `git revert` (an undo
    the history shows, as when a fork is resolved by reverting one side).
    """
    repo = ledger.repo
    changed = run.history()
    if run.head is None:
        return []
    out: dict[str, Problem] = {}
    for path, change in against:
        out[path] = Problem(path, f"{change} since it was committed (records are append-only)")
    moved: dict[str, str | None] = {}  # old folder -> where its artifact's folder is now
    deleted: dict[str, str] = {}  # record -> the commit that deleted it
    for path, seen in changed.items():
        if path in out:
            continue
        if not (repo.root / path).exists():
            if seen[0][1] == "D" and _is_record(path) and not _moved(ledger, path, moved):
                deleted[path] = seen[0][0]
            continue
        commits = [commit for commit, status in seen if status == "M"]
        if not commits:
            continue  # deleted once and added back: its bytes are the chain's to check
        added = repo.first_added(path)
        if added is not None and repo.blob_id(added, path) == repo.blob_id("HEAD", path):
            if notes is not None:
                shown = ", ".join(c[:12] for c in reversed(commits))
                notes.append(f"{path}: edited and restored to its recorded bytes by {shown}")
            continue
        out[path] = Problem(path, "modified by a commit after it was recorded "
                                  "(records are append-only: `git log -p` shows who)")
    reverts = repo.reverts(sorted(set(deleted.values()))) if deleted else set()
    for path, commit in deleted.items():
        if commit not in reverts:  # a `git revert` of the commit that added it is an undo
            out[path] = Problem(path, f"deleted by commit {commit[:12]} after it was recorded "
                                      f"(records are append-only: `git show {commit[:12]}` "
                                      "shows it; `git revert` that commit to restore it)")
    return sorted(out.values(), key=lambda p: p.where)
