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
from typing import Any

from pydantic import ValidationError

from . import yamlio
from .config import FactoryConfig, default_config, parse_config
from .errors import ArtifactNotFound, InvalidRecord, LedgerConflict, NotAFactory, UsageError
from .gitstore import GitRepo
from .records import EVENT_ADAPTER, Event, Intake, format_validation_error

LEDGER_DIR = "factory"
CONFIG_FILE = "factory.yaml"
INTAKE_FILE = "intake.yaml"
RUNTIME_DIR = ".runtime"
EVENT_FILE_RE = re.compile(r"^(\d{4,})-([a-z_]+)-([0-9a-f]{12})\.yaml$")
_SLUG_RE = re.compile(r"[^a-z0-9]+")


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
        name_hash = EVENT_FILE_RE.match(Path(rec.path).name)
        if name_hash and not rec.digest.startswith(name_hash.group(3)):
            chain.problems.append(
                f"{rec.path}: content does not match the hash in its name (edited after it was written)"
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
        self.dir = repo.root / self.rel
        self.clock = clock
        self._lock_depth = 0

    # -- opening ------------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path | str = ".", ledger_dir: str | None = None) -> Ledger:
        """Open the ledger of the repo containing `path`; NotAFactory if there is none."""
        repo = GitRepo.discover(path)
        ledger = cls(repo, ledger_dir or os.environ.get("GPTME_FACTORY_DIR") or LEDGER_DIR)
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
            return sorted(
                e.name
                for e in os.scandir(self.artifacts_dir)
                if e.is_dir() and not e.name.startswith(".")
            )
        except FileNotFoundError:
            return []

    def resolve(self, query: str) -> str:
        """Resolve an id or unambiguous prefix to an artifact id."""
        query = query.strip()
        if not query or "/" in query or query.startswith(".") or "\0" in query:
            raise UsageError(
                f"{query!r} is not an artifact id: ids are lowercase letters, digits and '-'"
            )
        if (self.artifacts_dir / query / INTAKE_FILE).is_file():
            return query
        matches = [a for a in self.artifact_ids() if a.startswith(query)]
        if len(matches) == 1:
            return matches[0]
        raise ArtifactNotFound(query, matches)

    def read(self, artifact: str, *, tolerant: bool = False) -> Chain:
        """Read, validate and link one artifact's records.

        Raises InvalidRecord on a bad file, unless `tolerant`: then bad files are skipped and
        reported in `chain.problems` (what `verify` wants).
        """
        adir = self.artifacts_dir / artifact
        intake_path = adir / INTAKE_FILE
        if not intake_path.is_file():
            raise ArtifactNotFound(artifact)
        bad: list[str] = []

        def load(path: Path, src: str, expect_intake: bool) -> StoredRecord | None:
            raw = path.read_bytes()
            try:
                return StoredRecord(src, sha256(raw), parse_record(raw, src, expect_intake))
            except InvalidRecord as exc:
                if not tolerant:
                    raise
                bad.extend(f"{src}: {p}" for p in exc.problems)
                return None

        prefix = f"{self.rel}/artifacts/{artifact}"
        intake = load(intake_path, f"{prefix}/{INTAKE_FILE}", True)
        if intake is None:
            raise InvalidRecord(f"{prefix}/{INTAKE_FILE}", [b.split(": ", 1)[1] for b in bad])
        events: list[tuple[int, StoredRecord]] = []
        for entry in os.scandir(adir):
            m = EVENT_FILE_RE.match(entry.name)
            if not m:
                if tolerant and entry.is_file() and entry.name != INTAKE_FILE and not entry.name.startswith("."):
                    bad.append(f"{prefix}/{entry.name}: not a ledger record name (unexpected file)")
                continue
            rec = load(Path(entry.path), f"{prefix}/{entry.name}", False)
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
        line = line or self.config.default_line
        self.config.line(line)  # unknown line -> ConfigError before anything is written
        with self.locked():
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
        if not self._lock_depth:
            raise RuntimeError("Ledger.append requires the writer lock (use Ledger.locked())")
        forks = [p for p in chain.problems if p.startswith("fork")]
        if forks:
            raise LedgerConflict(
                f"artifact {chain.artifact} has a fork; nothing was appended. {forks[0]}. "
                "Keep one side: `git revert` the other side's commits, then retry"
            )
        seq = len(chain.events) + 1
        data = {
            "kind": payload["kind"],
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
            raise InvalidRecord(f"{payload['kind']} event", format_validation_error(exc)) from None
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
    def init(cls, path: Path | str = ".", ledger_dir: str = LEDGER_DIR) -> tuple[Ledger, list[str]]:
        """Make the repo at `path` a factory. Returns the ledger and what changed (idempotent)."""
        repo = GitRepo.discover(path)
        ledger = cls(repo, ledger_dir)
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
    if stage:
        return f"[{stage}]"
    if cell:
        return f"[{cell}]"
    return ""
