"""The `Ledger` of one brain repo: its paths, its writer lock, its streams, one commit per decision.

Layout (see docs/ledger-format.md)::

    factory/factory.yaml                        lines, roles, contracts and budgets (config.py)
    factory/.gitignore                          keeps factory/.runtime/ (caches, progress) out of git
    factory/artifacts/<b>/<id>/intake.yaml      an artifact's immutable intake (its root, seq 0)
    factory/artifacts/<b>/<id>/NNNN-<kind>-<h12>.yaml   one file per event (stream.py)
    factory/lines/<line>/NNNN-<kind>-<h12>.yaml     a line's lifecycle events

Writing: a caller holds the writer lock (`locked()`, a flock in the git dir, re-entrant per
`Ledger`), reads the stream under it, and `record`s a typed payload: the ledger builds the
header (seq, parent, time, author), lets the caller check the event against its replayed
state (`check`), and commits it. A `transaction()` groups several events — a gate verdict and
the rework it triggers, a stage start and its cell's spawn — into one commit whose subject is
the decision (at most 72 characters, the decision first). Inside a transaction reads see the
events recorded so far; at its end everything lands as one commit, or (on an unexpected
exception) nothing does. An expected failure (a `FactoryError`) still commits what was
recorded before it: those events were checked and are true.

An artifact's folder is fanned out under the last three characters of its id (layout.py;
the flat and shallow folders of older ledgers are read too): `artifact_dir` / `artifact_rel`
are the one place that says where an artifact lives.

Importing this module stays light (no pydantic, no YAML): a warm `status` opens a `Ledger`
and never reads a record.
"""

from __future__ import annotations

import getpass
import os
import re
import secrets
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import (
    ArtifactNotFound,
    FactoryError,
    ForkDetected,
    GitBusy,
    LedgerConflict,
    LedgerDamaged,
    NotAFactory,
    UsageError,
)
from . import layout
from .gitstore import GitRepo, LogEntry

if TYPE_CHECKING:
    from pydantic import BaseModel

    from .config import FactoryConfig
    from .kinds import ArtifactChain, LineStream
    from .stream import RootedKind, Stored, Stream, StreamKind

    P = TypeVar("P", bound=BaseModel)
    R = TypeVar("R", bound=BaseModel)

LEDGER_DIR = "factory"
CONFIG_FILE = "factory.yaml"
INTAKE_FILE = "intake.yaml"
RUNTIME_DIR = ".runtime"
SUBJECT_MAX = 72
_SLUG_RE = re.compile(r"[^a-z0-9]+")
_QUERY_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,79}$")


def utcnow() -> datetime:
    """The current time, second precision, UTC."""
    return datetime.now(timezone.utc).replace(microsecond=0)


def slugify(title: str, max_len: int = 40) -> str:
    """A readable id prefix from a title: lowercase ascii words joined by '-'."""
    slug = _SLUG_RE.sub("-", title.lower()).strip("-")
    slug = slug[:max_len].rstrip("-")
    return slug or "artifact"


def short_id(artifact: str) -> str:
    """The artifact's first word and random suffix (`accept-dae93e`): a commit subject's scope."""
    head, _, tail = artifact.rpartition("-")
    if not head or len(artifact) <= 20:
        return artifact
    return f"{head.split('-')[0][:12]}-{tail}"


@dataclass
class Transaction:
    """Events and files recorded since the outermost `transaction()` began."""

    subject: str | None = None
    subjects: list[str] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)
    events: list[tuple[str, str, str, Stored[Any]]] = field(default_factory=list)
    roots: list[tuple[str, str, str, str]] = field(default_factory=list)  # key, id, kind, hash
    pending: dict[tuple[str, str], list[Stored[Any]]] = field(default_factory=dict)
    marker: str = "update"  # the Factory-Event trailer of a commit without events (init, wire)
    host: str | None = None  # the Factory-Host trailer (a shared ledger's commits name it)
    # stream kind name -> what a list of its events decided (line/subjects.py), for the subject
    describers: dict[str, Callable[[list[Stored[Any]]], str]] = field(default_factory=dict)

    def note(self, subject: str | None) -> None:
        """Add what one step decided to the commit subject (the outermost subject wins)."""
        if subject and subject not in self.subjects:
            self.subjects.append(subject)


class Ledger:
    """The factory ledger of one brain repo."""

    def __init__(
        self,
        repo: GitRepo,
        ledger_dir: str = LEDGER_DIR,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.repo = repo
        self.rel = ledger_dir.strip("/")
        if any(part in ("", ".", "..", ".git") for part in self.rel.split("/")):
            raise UsageError(
                f"ledger directory {ledger_dir!r} must be a plain path inside the repo "
                "(like `factory`)"
            )
        self.dir = repo.root / self.rel
        self.clock = clock
        self._lock_depth = 0
        self._tx: Transaction | None = None
        # called after each commit with the artifacts it changed (views/statuscache.keep_fresh)
        self.after_commit: list[Callable[[Ledger, list[str]], None]] = []
        self.lock_waits: list[float] = []  # seconds each outermost `locked()` waited
        self.notes: list[str] = []  # what automatic steps (a sync after a handoff) had to say

    # -- opening ------------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path | str = ".", ledger_dir: str | None = None) -> Ledger:
        """Open the ledger of the repo containing `path`; NotAFactory if there is none."""
        repo = GitRepo.discover(path)
        if repo.is_cell_worktree():
            # A cell's worktree holds a stale copy of the ledger (writing there would lose
            # the event, or commit it onto a builder's branch): the ledger is the brain's.
            main = repo.main_worktree()
            if main is None or not (main / (ledger_dir or os.environ.get("GPTME_FACTORY_DIR")
                                            or LEDGER_DIR) / CONFIG_FILE).is_file():
                # no main tree, or the main tree is a target project's clone, not the brain
                raise NotAFactory(
                    f"{repo.root} is a factory cell's worktree, not the brain repo: pass "
                    "--repo BRAIN (the brain repo named in your brief)"
                )
            repo = GitRepo.discover(main)
        ledger = cls(repo, ledger_dir or os.environ.get("GPTME_FACTORY_DIR") or LEDGER_DIR)
        repo.recover()  # a writer killed after its commit: put its files in place first
        if not (ledger.dir / CONFIG_FILE).is_file():
            raise NotAFactory(
                f"{repo.root} has no factory ledger ({ledger.rel}/{CONFIG_FILE} is missing): "
                "run `gptme-factory init` there first"
            )
        return ledger

    @property
    def artifacts_dir(self) -> Path:
        """factory/artifacts."""
        return self.dir / "artifacts"

    def artifact_folder(self, artifact: str) -> str:
        """An artifact's folder relative to factory/artifacts (`2a/<id>`, or `<id>` if flat)."""
        return layout.locate(self.artifacts_dir, artifact)

    def artifact_dir(self, artifact: str) -> Path:
        """The folder of an artifact: where it is, or where a new one goes."""
        return self.artifacts_dir / self.artifact_folder(artifact)

    def artifact_rel(self, artifact: str) -> str:
        """The repo-relative POSIX path of an artifact's folder (for git and messages)."""
        return f"{self.rel}/artifacts/{self.artifact_folder(artifact)}"

    def artifact_listing(self, only: Collection[str] | None = None) -> layout.Listing:
        """Every artifact folder (all layouts) and the stray entries beside them.

        With `only`, the folders in those buckets (`2a`) and shelves (`2a/f`) only
        (layout.scan), beside the flat ones.
        """
        return layout.scan(self.artifacts_dir, only)

    def stream_rel(self, kind: StreamKind[Any], sid: str) -> str:
        """The repo-relative folder of stream `sid` of `kind` (fanned out if the kind is)."""
        if kind.fanout:
            return f"{self.rel}/{kind.folder}/{layout.locate(self.dir / kind.folder, sid)}"
        return f"{self.rel}/{kind.folder}/{sid}"

    @property
    def lines_dir(self) -> Path:
        """factory/lines."""
        return self.dir / "lines"

    @property
    def stream_folders(self) -> list[str]:
        """The repo-relative folders of every stream: factory/artifacts, factory/lines."""
        return [f"{self.rel}/artifacts", f"{self.rel}/lines"]

    @property
    def runtime_dir(self) -> Path:
        """factory/.runtime: gitignored caches and progress notes."""
        return self.dir / RUNTIME_DIR

    def relpath(self, path: Path) -> str:
        """Repo-relative POSIX path."""
        return path.relative_to(self.repo.root).as_posix()

    @cached_property
    def config(self) -> FactoryConfig:
        """factory/factory.yaml, validated."""
        from . import yamlio
        from .config import parse_config

        path = self.dir / CONFIG_FILE
        source = self.relpath(path)
        return parse_config(yamlio.loads(path.read_bytes(), source), source)

    @cached_property
    def host(self) -> str:
        """The name of this machine in claims and commits: $GPTME_FACTORY_HOST, else the hostname."""
        import socket

        return (os.environ.get("GPTME_FACTORY_HOST") or socket.gethostname() or "unknown")[:200]

    def shared_host(self) -> str | None:
        """`host` when factory.yaml shares the ledger through a remote (`sync.remote`)."""
        try:
            sync = self.config.sync
        except (FactoryError, OSError):
            return None
        return self.host if sync is not None and sync.remote else None

    @cached_property
    def actor(self) -> str:
        """Who appends by default: $GPTME_FACTORY_ACTOR, else the git identity, else the login."""
        actor = os.environ.get("GPTME_FACTORY_ACTOR") or self.repo.identity()
        if actor:
            return actor[:500]
        try:
            return getpass.getuser()
        except Exception:  # noqa: BLE001 - no passwd entry in some containers
            return "unknown"

    # -- locking and transactions -------------------------------------------------------

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the writer lock (re-entrant within this Ledger object).

        The wait is bounded (gitstore.lock_timeout): LedgerBusy names the holder past it.
        """
        if self._lock_depth:
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
            return
        with self.repo.exclusive() as waited:
            self.lock_waits.append(waited)
            self._lock_depth = 1
            try:
                yield
            finally:
                self._lock_depth = 0

    @property
    def in_transaction(self) -> bool:
        """True inside `transaction()`: what is recorded now is not committed yet."""
        return self._tx is not None

    @contextmanager
    def transaction(self, subject: str | None = None) -> Iterator[Transaction]:
        """Group what is recorded inside into one commit (joins an open transaction)."""
        if self._tx is not None:
            self._tx.note(subject)
            yield self._tx
            return
        with self.locked():
            self.refuse_busy_git()
            tx = Transaction(subject=subject)
            self._tx = tx
            try:
                yield tx
            except FactoryError:
                self._tx = None
                self._commit(tx)  # what was recorded before an expected failure stands
                raise
            except BaseException:
                self._tx = None  # a bug or an interrupt: nothing of it is written
                raise
            self._tx = None
            self._commit(tx)

    def _commit(self, tx: Transaction,
                before_land: Callable[[str], None] | None = None) -> str | None:
        if not tx.files:
            return None
        self.refuse_busy_git()
        if tx.events or tx.roots:
            tx.host = tx.host or self.shared_host()
        commit = self.repo.commit_files(tx.files, commit_message(tx), before_land=before_land)
        changed = list(dict.fromkeys(
            [sid for key, sid, _, _ in tx.roots if key == "artifact"]
            + [sid for key, _, sid, _ in tx.events if key == "artifact"]))
        for hook in list(self.after_commit):
            try:
                hook(self, changed)
            except Exception:  # noqa: BLE001 - the decision is committed; a cache may lag
                pass
        return commit

    def flush(self, before_land: Callable[[str], None] | None = None) -> str | None:
        """Commit what the open transaction recorded so far, now; the transaction goes on.

        A claim needs its commit on the remote before anything is launched: `before_land`
        (see GitRepo.commit_files) pushes it. If that raises, nothing lands and the recorded
        events stay in the transaction: flush again (the remote moved for other streams), or
        `discard` them (they lost the race). Returns the commit (None if nothing to commit).
        """
        tx = self._tx
        if tx is None:
            raise RuntimeError("Ledger.flush requires an open transaction")
        commit = self._commit(tx, before_land)
        self.discard()
        return commit

    def discard(self) -> None:
        """Forget what the open transaction recorded and did not commit yet.

        After a `flush` whose push lost the race, say: those events were never written.
        """
        tx = self._tx
        if tx is None:
            return
        tx.files.clear()
        tx.events.clear()
        tx.roots.clear()
        tx.pending.clear()
        tx.subjects.clear()
        tx.subject = None

    @property
    def open_transaction(self) -> Transaction | None:
        """The open transaction, if any (what it recorded so far)."""
        return self._tx

    def refuse_busy_git(self) -> None:
        """Never write the ledger where git will drop it (onto a rebase's temporary HEAD)."""
        busy = self.repo.operation_in_progress()
        if busy is not None:
            what, how = busy
            raise GitBusy(
                f"{what} is in progress in {self.repo.root}: a ledger commit now would land on "
                f"its temporary HEAD and could be lost; finish it ({how}), then retry; nothing "
                "was recorded"
            )

    # -- reading ------------------------------------------------------------------------

    def artifact_ids(self) -> list[str]:
        """Every artifact id (a folder in any layout), sorted."""
        return list(self.artifact_listing().folders)

    def line_ids(self) -> list[str]:
        """Every line with a lifecycle stream, sorted."""
        return _dir_names(self.lines_dir)

    def resolve(self, query: str) -> str:
        """Resolve an id or unambiguous prefix to an artifact id."""
        query = query.strip()
        if not _QUERY_RE.match(query):
            raise UsageError(
                f"{query!r} is not an artifact id: ids are lowercase letters, digits and '-' "
                "(no '/', '..' or absolute paths)"
            )
        if (self.artifact_dir(query) / INTAKE_FILE).is_file():
            return query
        ids = self.artifact_ids()
        matches = [a for a in ids if a.startswith(query)]
        if len(matches) == 1:
            return matches[0]
        raise ArtifactNotFound(query, matches, known=ids)

    def read(
        self, artifact: str, *, tolerant: bool = False, raw: dict[str, bytes] | None = None
    ) -> ArtifactChain:
        """Read, validate and link one artifact's records (stream.read_chain).

        Raises InvalidRecord on a bad file, unless `tolerant`: then bad files are skipped and
        reported in `chain.problems` (what `verify` wants). Inside a transaction, the events
        it recorded so far follow the committed ones.
        """
        from .kinds import ARTIFACTS
        from .stream import read_chain

        if not _QUERY_RE.match(artifact):
            raise UsageError(f"{artifact!r} is not an artifact id (no '/', '..' or absolute paths)")
        prefix = self.artifact_rel(artifact)
        folder = self.repo.root / prefix
        if not (folder / INTAKE_FILE).is_file():
            raise ArtifactNotFound(artifact)
        chain = read_chain(ARTIFACTS, folder, prefix, artifact, tolerant=tolerant, raw=raw)
        self._overlay(chain)
        return chain

    def read_line(self, line: str, *, tolerant: bool = False) -> LineStream:
        """Read, validate and link one line's lifecycle stream (empty when it has none)."""
        from .kinds import LINES
        from .stream import read_stream

        try:
            LINES.check_id(line)
        except ValueError as exc:
            raise UsageError(f"{line!r} is not a line name: {exc}") from None
        prefix = self.stream_rel(LINES, line)
        stream = read_stream(LINES, self.repo.root / prefix, prefix, line, tolerant=tolerant)
        self._overlay(stream)
        return stream

    def history(self, artifacts: Sequence[str]) -> list[LogEntry]:
        """The commits that recorded these artifacts' events, oldest first (and their reverts).

        Found by the `Factory-Artifact` trailer every ledger commit carries (gitstore
        `log_trailer`), not by walking every tree in history, and whichever layout the
        folders had when the commit was made.
        """
        return self.repo.log_trailer(trailer_key("artifact"), artifacts)

    def _overlay(self, stream: Stream[Any]) -> None:
        pending = self._tx.pending.get((stream.kind.name, stream.id)) if self._tx else None
        if pending and not stream.problems and stream.tip == pending[0].header.parent:
            stream.events.extend(pending)

    # -- writing ------------------------------------------------------------------------

    def record(
        self,
        stream: Stream[P],
        event: P,
        *,
        by: str | None = None,
        extra_files: Mapping[str, bytes] | None = None,
        check: Callable[[Stored[P]], None] | None = None,
        subject: str | None = None,
    ) -> Stored[P]:
        """Append `event` after `stream`'s tip: one commit, or part of the open transaction.

        The caller holds `locked()` and read `stream` under it, so the tip cannot move in
        between. `check` sees the event with its header before anything is written (raise to
        refuse it); `subject` says what was decided, for the commit subject.
        """
        from .records import EventHeader
        from .stream import new_event

        if not self._lock_depth:
            raise RuntimeError("Ledger.record requires the writer lock (use Ledger.locked())")
        what = f"{stream.kind.name} {stream.id}"
        if stream.forks:
            raise fork_error(stream)
        if stream.problems:
            raise LedgerDamaged(
                f"{what} fails its integrity check; nothing was recorded: "
                f"{stream.problems[0]} (run `gptme-factory verify`)"
            )
        seq = len(stream.events) + 1
        self._refuse_stale(stream, seq)
        kind = str(getattr(event, "kind"))  # noqa: B009 - every payload has one
        header = EventHeader(kind=kind, seq=seq, parent=stream.tip, at=self.clock(),
                             by=by or self.actor)
        stored, raw = new_event(stream.kind, stream.folder, stream.id, header, event)
        if check is not None:
            check(stored)
        with self.transaction() as tx:
            tx.note(subject)
            tx.files[stored.path] = raw
            tx.files.update(extra_files or {})
            tx.events.append((stream.kind.key, stream.kind.name, stream.id, stored))
            tx.pending.setdefault((stream.kind.name, stream.id), []).append(stored)
        stream.events.append(stored)
        return stored

    def _refuse_stale(self, stream: Stream[Any], seq: int) -> None:
        """A stream read before the lock was taken (or before this transaction moved it on)."""
        from .stream import EVENT_FILE_RE

        folder = self.repo.root / stream.folder
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            names = []
        known = {e.path.rpartition("/")[2] for e in (*stream.events, *stream.discarded)}
        stale = [n for n in names if (m := EVENT_FILE_RE.match(n)) and int(m.group(1)) >= seq
                 and n not in known]
        pending = self._tx.pending.get((stream.kind.name, stream.id), []) if self._tx else []
        stale += [p.path.rpartition("/")[2] for p in pending if p.header.seq >= seq]
        if stale:
            raise LedgerConflict(
                f"{stream.kind.name} {stream.id} has moved on since it was read ({stale[0]}); "
                "nothing was recorded: read it again inside Ledger.locked()"
            )

    def add_root(self, kind: RootedKind[R, Any], sid: str, record: R, subject: str) -> str:
        """Commit a new stream's root record (an artifact's intake); returns its path."""
        from .stream import sha256

        if not self._lock_depth:
            raise RuntimeError("Ledger.add_root requires the writer lock (use Ledger.locked())")
        kind.check_id(sid)
        rel = f"{self.stream_rel(kind, sid)}/{kind.root_file}"
        if (self.repo.root / rel).exists():
            raise LedgerConflict(f"{rel} exists already; nothing was recorded")
        raw = kind.dump_root(record)
        with self.transaction() as tx:
            tx.note(subject)
            tx.files[rel] = raw
            tx.roots.append((kind.key, sid, kind.root_file.rsplit(".", 1)[0], sha256(raw)))
        return rel

    def new_artifact_id(self, title: str) -> str:
        """A readable, collision-safe id: slug of the title plus 6 random hex digits."""
        slug = slugify(title)
        while True:
            candidate = f"{slug}-{secrets.token_hex(3)}"
            if not self.artifact_dir(candidate).exists():
                return candidate

    # -- init ---------------------------------------------------------------------------

    @classmethod
    def init(
        cls, path: Path | str = ".", ledger_dir: str | None = None,
        lines: Sequence[str] = (),
    ) -> tuple[Ledger, list[str]]:
        """Make the repo at `path` a factory. Returns the ledger and what changed (idempotent).

        `lines`: built-in lines (config.BUILTIN_LINES, e.g. `bugfix`) the config must have;
        added to an existing factory.yaml that lacks them.
        """
        from . import yamlio
        from .config import add_builtin_lines, default_config

        repo = GitRepo.discover(path)
        # the same default as `open`, or `init` and every later command disagree on the place
        ledger = cls(repo, ledger_dir or os.environ.get("GPTME_FACTORY_DIR") or LEDGER_DIR)
        files: dict[str, bytes] = {}
        cfg_path = ledger.dir / CONFIG_FILE
        if not cfg_path.exists():
            data = default_config().model_dump(mode="json", exclude_none=True)
            add_builtin_lines(data, lines)
            files[f"{ledger.rel}/{CONFIG_FILE}"] = yamlio.dumps(data)
        elif lines:
            data = yamlio.loads(cfg_path.read_bytes(), f"{ledger.rel}/{CONFIG_FILE}")
            if add_builtin_lines(data, lines):
                files[f"{ledger.rel}/{CONFIG_FILE}"] = yamlio.dumps(data)
        ignore_path = ledger.dir / ".gitignore"
        wanted = f"/{RUNTIME_DIR}/\n"
        if not ignore_path.exists() or wanted not in ignore_path.read_text("utf-8"):
            old = ignore_path.read_text("utf-8") if ignore_path.exists() else ""
            if old and not old.endswith("\n"):
                old += "\n"
            files[f"{ledger.rel}/.gitignore"] = (
                old + "# runtime state of gptme-factory (caches, progress, cell output)\n" + wanted
            ).encode()
        changed = sorted(files)
        if files:
            with ledger.transaction("init the ledger") as tx:
                tx.marker = "init"
                tx.files.update(files)
        return ledger, changed


def trailer_key(key: str) -> str:
    """The commit trailer naming a stream of a kind whose header key is `key`."""
    return f"Factory-{key.title()}"
def fork_error(stream: Stream[Any]) -> ForkDetected:
    """The refusal to append to a forked stream, saying how to settle the fork."""
    target = stream.id if stream.kind.name == "artifact" else f"{stream.kind.name}:{stream.id}"
    return ForkDetected(
        f"{stream.kind.name} {stream.id} has a fork; nothing was recorded. "
        f"{stream.forks[0].message}. Keep one side: `gptme-factory resolve {target} --keep "
        "EVENT` (without --keep it lists the branches), then retry"
    )


def _dir_names(path: Path) -> list[str]:
    try:
        with os.scandir(path) as entries:
            return sorted(e.name for e in entries
                          if e.is_dir(follow_symlinks=False) and not e.name.startswith("."))
    except FileNotFoundError:
        return []


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())  # a title with newlines must not break the subject
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def commit_message(tx: Transaction) -> str:
    """`factory(<scope>): <decision>` (at most 72 characters), the events, their trailers.

    The scope names the one stream the commit touches (`accept-dae93e`, `line:default`); the
    full ids, every event's kind, seq and hash are trailers (`Factory-Artifact`,
    `Factory-Line`, `Factory-Event`, `Factory-Seq`, `Factory-Hash`), which `log` reads.
    """
    streams: dict[tuple[str, str], list[str]] = {}
    trailers: dict[tuple[str, str], list[str]] = {}
    for key, sid, kind, digest in tx.roots:
        streams.setdefault((key, sid), []).append(f"- {sid} #0 {kind}")
        trailers.setdefault((key, sid), []).extend(
            [f"Factory-Event: {kind}", "Factory-Seq: 0", f"Factory-Hash: {digest}"])
    for key, _name, sid, s in tx.events:
        streams.setdefault((key, sid), []).append(f"- {sid} #{s.seq} {s.kind}")
        trailers.setdefault((key, sid), []).extend(
            [f"Factory-Event: {s.kind}", f"Factory-Seq: {s.seq}", f"Factory-Hash: {s.digest}"])
    scope = ""
    if len(streams) == 1:
        ((key, sid),) = streams
        scope = short_id(sid) if key == "artifact" else f"{key}:{sid}"
    described: list[str] = []
    for name in dict.fromkeys(n for _, n, _, _ in tx.events):
        describe = tx.describers.get(name)
        own = [s for _, n, _, s in tx.events if n == name]
        if describe is not None and (text := describe(own)):
            described.append(text)
    kinds = [line.rsplit(" ", 1)[1] for listed in streams.values() for line in listed]
    text = (tx.subject or "; ".join([*described, *tx.subjects])
            or ", ".join(dict.fromkeys(kinds)) or tx.marker)
    head = f"factory({scope}): " if scope else "factory: "
    lines = [head + _clip(text, SUBJECT_MAX - len(head)), ""]
    body = [line for listed in streams.values() for line in listed]
    if body:
        lines += [*body, ""]
    for (key, sid), lines_of in trailers.items():
        lines += [f"{trailer_key(key)}: {sid}", *lines_of]
    if not streams:
        lines.append(f"Factory-Event: {tx.marker}")
    if tx.host:
        lines.append(f"Factory-Host: {' '.join(tx.host.split())}")
    return "\n".join(lines).rstrip("\n") + "\n"
