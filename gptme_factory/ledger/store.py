"""The artifact ledger: append-only YAML records in the brain repo, one commit per event.

Layout (see docs/ledger-format.md)::

    factory/factory.yaml                       line, role, contract and budget config
    factory/.gitignore                         keeps factory/.runtime/ (caches, progress) out of git
    factory/artifacts/<id>/intake.yaml         immutable intake record (chain root, seq 0)
    factory/artifacts/<id>/NNNN-<kind>-<h12>.yaml   one file per event

Each event names its parent record's sha256 (of the file bytes); the file name carries the
event's own hash prefix, so two writers on two machines never produce the same file name:
merges never conflict, and a fork (two events with one parent) is visible to `verify`.
Writers hold the git-dir lock while they read the chain tip and commit (gitstore).
"""

from __future__ import annotations

import errno
import getpass
import hashlib
import os
import re
import secrets
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ArtifactNotFound, InvalidRecord, LedgerConflict, NotAFactory, UsageError
from .gitstore import GitRepo

if TYPE_CHECKING:
    from .config import FactoryConfig
    from .records import Event, Intake

# pydantic, the record models and PyYAML are imported where they are used, not here: a warm
# `status` (served from the status cache) and `--help` never need them (about 150 ms).

LEDGER_DIR = "factory"
CONFIG_FILE = "factory.yaml"
INTAKE_FILE = "intake.yaml"
BRIEFS_DIR = "briefs"  # cells' briefs, committed with their cell_spawned events (cells.py)
RUNTIME_DIR = ".runtime"
EVENT_FILE_RE = re.compile(r"^(\d{4,})-([a-z_]+)-([0-9a-f]{12})\.yaml$")
_SLUG_RE = re.compile(r"[^a-z0-9]+")
_QUERY_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,79}$")
# Event header fields: the ledger fills them in; a payload may not (it could re-parent a chain).
_HEADER_FIELDS = frozenset({"schema_version", "artifact", "seq", "parent", "at", "by"})


def _open_nofollow(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NOFOLLOW)


def utcnow() -> datetime:
    """The current time, second precision, UTC."""
    return datetime.now(timezone.utc).replace(microsecond=0)


def default_actor() -> str:
    """Who is appending: $GPTME_FACTORY_ACTOR, else the login name."""
    actor = os.environ.get("GPTME_FACTORY_ACTOR")
    if actor:
        return actor
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in some containers
        return "unknown"


def sha256(raw: bytes) -> str:
    """Hex sha256 of record bytes: the identity of a record."""
    return hashlib.sha256(raw).hexdigest()


def slugify(title: str, max_len: int = 40) -> str:
    """A readable id prefix from a title: lowercase ascii words joined by '-'."""
    slug = _SLUG_RE.sub("-", title.lower()).strip("-")
    slug = slug[:max_len].rstrip("-")
    return slug or "artifact"


@dataclass(frozen=True)
class StoredRecord:
    """One record file as read from disk: where, its bytes' hash and the parsed model."""

    path: str
    digest: str
    record: Intake | Event


@dataclass
class Chain:
    """An artifact's records in order, plus any integrity problems found while reading."""

    artifact: str
    intake: StoredRecord
    events: list[StoredRecord] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def tip(self) -> StoredRecord:
        """The last record of the linear chain."""
        return self.events[-1] if self.events else self.intake

    def models(self) -> list[Event]:
        """The events' models, in chain order."""
        return [e.record for e in self.events]  # type: ignore[misc]


def parse_record(raw: bytes, source: str, expect_intake: bool) -> Intake | Event:
    """Parse and validate one record file."""
    from pydantic import ValidationError

    from . import yamlio
    from .records import EVENT_ADAPTER, Intake, format_validation_error

    data = yamlio.loads(raw, source)
    try:
        if expect_intake:
            return Intake.model_validate(data)
        if data.get("kind") == "intake":
            raise InvalidRecord(source, ["kind: an intake record must be named intake.yaml"])
        return EVENT_ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise InvalidRecord(source, format_validation_error(exc)) from None


def link_chain(
    artifact: str, intake: StoredRecord, events: list[tuple[int, StoredRecord]]
) -> Chain:
    """Order events by their parent links and report forks, gaps and bad links."""
    chain = Chain(artifact=artifact, intake=intake)
    if intake.record.artifact != artifact:
        chain.problems.append(
            f"{intake.path}: artifact is {intake.record.artifact!r}, but the directory is {artifact!r}"
        )
    by_parent: dict[str, list[tuple[int, StoredRecord]]] = {}
    for seq, rec in events:
        parent = rec.record.parent  # type: ignore[union-attr]
        by_parent.setdefault(parent, []).append((seq, rec))
        if rec.record.seq != seq:  # type: ignore[union-attr]
            chain.problems.append(f"{rec.path}: file name says seq {seq}, record says {rec.record.seq}")  # type: ignore[union-attr]
        if rec.record.artifact != artifact:
            chain.problems.append(f"{rec.path}: artifact is {rec.record.artifact!r}, not {artifact!r}")
        name_hash = EVENT_FILE_RE.match(rec.path.rpartition("/")[2])
        if name_hash and not rec.digest.startswith(name_hash.group(3)):
            chain.problems.append(
                f"{rec.path}: content does not match the hash in its name "
                "(edited after it was written)"
            )
        if name_hash and name_hash.group(2) != rec.record.kind:
            chain.problems.append(
                f"{rec.path}: file name says kind {name_hash.group(2)}, "
                f"record says {rec.record.kind}"
            )
    current = intake
    while True:
        children = sorted(by_parent.get(current.digest, []), key=lambda x: x[1].path)
        if not children:
            break
        if len(children) > 1:
            names = ", ".join(c[1].path for c in children)
            chain.problems.append(
                f"fork: {names} all claim parent {Path(current.path).name} "
                "(two writers advanced this artifact concurrently)"
            )
        _, nxt = children[0]
        if nxt.record.seq != len(chain.events) + 1:  # type: ignore[union-attr]
            chain.problems.append(
                f"{nxt.path}: seq {nxt.record.seq} does not follow its parent's "  # type: ignore[union-attr]
                f"seq {len(chain.events)}"
            )
        chain.events.append(nxt)
        current = nxt
    reachable = {intake.digest}
    frontier = [intake.digest]
    while frontier:
        for _, child in by_parent.get(frontier.pop(), []):
            if child.digest not in reachable:
                reachable.add(child.digest)
                frontier.append(child.digest)
    for _, rec in events:
        if rec.digest not in reachable:
            chain.problems.append(
                f"{rec.path}: its parent {rec.record.parent[:12]} is not in the chain "  # type: ignore[union-attr]
                "(missing parent, or an earlier record was edited)"
            )
    return chain


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

    # -- opening ------------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path | str = ".", ledger_dir: str | None = None) -> Ledger:
        """Open the ledger of the repo containing `path`; NotAFactory if there is none."""
        repo = GitRepo.discover(path)
        if repo.is_cell_worktree():
            # A cell's worktree holds a stale copy of the ledger (writing there would lose
            # the event, or commit it onto a builder's branch): the ledger is the brain's.
            main = repo.main_worktree()
            if main is None:
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
        path = self.dir / CONFIG_FILE
        source = self.relpath(path)
        from . import yamlio
        from .config import parse_config

        return parse_config(yamlio.loads(path.read_bytes(), source), source)

    # -- locking ------------------------------------------------------------------------

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the writer lock (re-entrant within this Ledger object)."""
        if self._lock_depth:
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
            return
        with self.repo.exclusive():
            self._lock_depth = 1
            try:
                yield
            finally:
                self._lock_depth = 0

    # -- reading ------------------------------------------------------------------------

    def artifact_ids(self) -> list[str]:
        """Every artifact directory name, sorted."""
        try:
            with os.scandir(self.artifacts_dir) as entries:
                return sorted(
                    e.name
                    for e in entries
                    if e.is_dir(follow_symlinks=False) and not e.name.startswith(".")
                )
        except FileNotFoundError:
            return []

    def resolve(self, query: str) -> str:
        """Resolve an id or unambiguous prefix to an artifact id."""
        query = query.strip()
        if not _QUERY_RE.match(query):
            raise UsageError(
                f"{query!r} is not an artifact id: ids are lowercase letters, digits and '-' "
                "(no '/', '..' or absolute paths)"
            )
        if (self.artifacts_dir / query / INTAKE_FILE).is_file():
            return query
        matches = [a for a in self.artifact_ids() if a.startswith(query)]
        if len(matches) == 1:
            return matches[0]
        raise ArtifactNotFound(query, matches)

    def read(
        self, artifact: str, *, tolerant: bool = False, raw: dict[str, bytes] | None = None
    ) -> Chain:
        """Read, validate and link one artifact's records.

        Raises InvalidRecord on a bad file, unless `tolerant`: then bad files are skipped and
        reported in `chain.problems` (what `verify` wants). `raw`, if given, receives the
        name and exact bytes of every file read: what the status cache keys a summary by.
        """
        if not _QUERY_RE.match(artifact):
            raise UsageError(f"{artifact!r} is not an artifact id (no '/', '..' or absolute paths)")
        adir = self.artifacts_dir / artifact
        intake_path = adir / INTAKE_FILE
        if not intake_path.is_file():
            raise ArtifactNotFound(artifact)
        bad: list[str] = []

        def load(path: str, name: str, expect_intake: bool) -> StoredRecord | None:
            src = f"{prefix}/{name}"
            try:
                # never follow a symlink out of the ledger (git stores them as files too)
                with open(path, "rb", opener=_open_nofollow) as fh:
                    data = fh.read()
            except OSError as exc:
                if exc.errno != errno.ELOOP:
                    raise
                err = InvalidRecord(src, ["is a symlink, not a ledger record"])
                if not tolerant:
                    raise err from None
                bad.extend(f"{src}: {p}" for p in err.problems)
                return None
            if raw is not None:
                raw[name] = data
            try:
                return StoredRecord(src, sha256(data), parse_record(data, src, expect_intake))
            except InvalidRecord as exc:
                if not tolerant:
                    raise
                bad.extend(f"{src}: {p}" for p in exc.problems)
                return None

        prefix = f"{self.rel}/artifacts/{artifact}"
        intake = load(str(intake_path), INTAKE_FILE, True)
        if intake is None:
            raise InvalidRecord(f"{prefix}/{INTAKE_FILE}", [b.split(": ", 1)[1] for b in bad])
        events: list[tuple[int, StoredRecord]] = []
        with os.scandir(adir) as entries:  # closed even when a strict read raises
            listing = list(entries)
        for entry in listing:
            m = EVENT_FILE_RE.match(entry.name)
            regular = entry.is_file(follow_symlinks=False)
            if not m or not regular:
                known_dir = entry.name == BRIEFS_DIR and entry.is_dir(follow_symlinks=False)
                if (tolerant and entry.name != INTAKE_FILE and not entry.name.startswith(".")
                        and not known_dir):
                    what = "file" if regular else "directory" if entry.is_dir() else "symlink"
                    bad.append(f"{prefix}/{entry.name}: not a ledger record (unexpected {what})")
                continue
            rec = load(entry.path, entry.name, False)
            if rec is not None:
                events.append((int(m.group(1)), rec))
        events.sort(key=lambda x: (x[0], x[1].path))
        chain = link_chain(artifact, intake, events)
        chain.problems[:0] = bad
        return chain

    # -- writing ------------------------------------------------------------------------

    def new_artifact_id(self, title: str) -> str:
        """A readable, collision-safe id: slug of the title plus 6 random hex digits."""
        slug = slugify(title)
        while True:
            candidate = f"{slug}-{secrets.token_hex(3)}"
            if not (self.artifacts_dir / candidate).exists():
                return candidate

    def create(
        self,
        *,
        title: str,
        demand: str,
        consumers: list[str],
        acceptance: list[str],
        problem: str = "",
        line: str | None = None,
        classification: str = "factory_run",
        by: str | None = None,
    ) -> Intake:
        """Record a new artifact's intake (state `idea`) in one commit."""
        from pydantic import ValidationError

        from . import yamlio
        from .records import Intake, format_validation_error

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
        line = line or self.config.default_line
        self.config.line(line)  # unknown line -> ConfigError before anything is written
        with self.locked():
            from ..line.lifecycle import check_accepts_intake

            check_accepts_intake(self, line)  # a parked or archived line refuses intake
            aid = self.new_artifact_id(title)
            data: dict[str, Any] = {
                "artifact": aid,
                "title": title,
                "problem": problem,
                "demand": demand,
                "consumers": consumers,
                "acceptance": acceptance,
                "line": line,
                "classification": classification,
                "created_at": self.clock(),
                "created_by": by or default_actor(),
            }
            try:
                intake = Intake.model_validate(data)
            except ValidationError as exc:
                raise InvalidRecord("intake", format_validation_error(exc)) from None
            raw = yamlio.dumps(intake.model_dump(mode="json"))
            rel = f"{self.rel}/artifacts/{aid}/{INTAKE_FILE}"
            self.repo.commit_files(
                {rel: raw},
                commit_message(aid, "intake", title, {"Factory-Seq": "0", "Factory-Hash": sha256(raw)}),
            )
        return intake

    def append(
        self,
        chain: Chain,
        payload: Mapping[str, Any],
        *,
        by: str | None = None,
        extra_files: Mapping[str, bytes] | None = None,
        summary: str = "",
    ) -> StoredRecord:
        """Append one event after `chain.tip` and commit it (with any `extra_files`).

        The caller must hold `locked()` and must have read `chain` under that lock, so the tip
        cannot move in between. `payload` holds the event's kind and its own fields.
        """
        from pydantic import ValidationError

        from . import yamlio
        from .records import EVENT_ADAPTER, format_validation_error

        if not self._lock_depth:
            raise RuntimeError("Ledger.append requires the writer lock (use Ledger.locked())")
        forks = [p for p in chain.problems if p.startswith("fork")]
        if forks:
            raise LedgerConflict(
                f"artifact {chain.artifact} has a fork; nothing was appended. {forks[0]}. "
                "Keep one side: `git revert` the other side's commits, then retry"
            )
        if chain.problems:
            raise LedgerConflict(
                f"artifact {chain.artifact} fails its integrity check; nothing was appended: "
                f"{chain.problems[0]} (run `gptme-factory verify`)"
            )
        kind = payload.get("kind")
        if not isinstance(kind, str) or not kind:
            raise InvalidRecord("event", ["kind: required field is missing"])
        owned = sorted(set(payload) & _HEADER_FIELDS)
        if owned:
            raise InvalidRecord(
                f"{kind} event", [f"{f}: set by the ledger, not by the caller" for f in owned]
            )
        seq = len(chain.events) + 1
        stale = [
            name
            for name in os.listdir(self.artifacts_dir / chain.artifact)
            if (m := EVENT_FILE_RE.match(name)) and int(m.group(1)) >= seq
        ]
        if stale:  # read before the lock was taken: appending would fork the chain
            raise LedgerConflict(
                f"artifact {chain.artifact} has moved on since it was read ({stale[0]}); "
                "nothing was appended: read it again inside Ledger.locked()"
            )
        data = {
            "kind": kind,
            "schema_version": 1,
            "artifact": chain.artifact,
            "seq": seq,
            "parent": chain.tip.digest,
            "at": self.clock(),
            "by": by or default_actor(),
            **{k: v for k, v in payload.items() if k != "kind"},
        }
        try:
            event = EVENT_ADAPTER.validate_python(data)
        except ValidationError as exc:
            raise InvalidRecord(f"{kind} event", format_validation_error(exc)) from None
        raw = yamlio.dumps(event.model_dump(mode="json", exclude_none=True))
        digest = sha256(raw)
        name = f"{seq:04d}-{event.kind}-{digest[:12]}.yaml"
        rel = f"{self.rel}/artifacts/{chain.artifact}/{name}"
        files = {rel: raw, **(extra_files or {})}
        trailers = {"Factory-Seq": str(seq), "Factory-Hash": digest}
        detail = summary or _event_detail(event)
        self.repo.commit_files(files, commit_message(chain.artifact, event.kind, detail, trailers))
        stored = StoredRecord(rel, digest, event)
        chain.events.append(stored)
        return stored

    # -- init ---------------------------------------------------------------------------

    @classmethod
    def init(
        cls, path: Path | str = ".", ledger_dir: str | None = None
    ) -> tuple[Ledger, list[str]]:
        """Make the repo at `path` a factory. Returns the ledger and what changed (idempotent)."""
        from . import yamlio
        from .config import default_config

        repo = GitRepo.discover(path)
        # the same default as `open`, or `init` and every later command disagree on the place
        ledger = cls(repo, ledger_dir or os.environ.get("GPTME_FACTORY_DIR") or LEDGER_DIR)
        files: dict[str, bytes] = {}
        cfg_path = ledger.dir / CONFIG_FILE
        if not cfg_path.exists():
            files[f"{ledger.rel}/{CONFIG_FILE}"] = yamlio.dumps(
                default_config().model_dump(mode="json", exclude_none=True)
            )
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
            with ledger.locked():
                repo.commit_files(files, commit_message(None, "init", "create the factory ledger", {}))
        return ledger, changed


def commit_message(
    artifact: str | None, event: str, detail: str, trailers: Mapping[str, str]
) -> str:
    """`factory(<artifact>): <event> <detail>` plus machine-readable trailers."""
    scope = f"factory({artifact})" if artifact else "factory"
    detail = " ".join(detail.split())  # a title with newlines must not break the subject
    subject = f"{scope}: {event}" + (f" {detail}" if detail else "")
    if len(subject) > 100:
        subject = subject[:97] + "..."
    lines = [subject, ""]
    if artifact:
        lines.append(f"Factory-Artifact: {artifact}")
    lines.append(f"Factory-Event: {event}")
    lines += [f"{k}: {v}" for k, v in trailers.items()]
    return "\n".join(lines) + "\n"


def _event_detail(event: Event) -> str:
    stage = getattr(event, "stage", None)
    cell = getattr(event, "cell", None)
    # The subject should tell the story on its own in `git log --oneline`.
    for name in ("outcome", "decision", "to_stage", "successor", "target"):
        value = getattr(event, name, None)
        if value:
            where = stage or cell
            return f"{value} [{where}]" if where else str(value)
    if getattr(event, "terminal", None):
        return "terminal"
    if stage:
        return f"[{stage}]"
    if cell:
        return f"[{cell}]"
    return ""
