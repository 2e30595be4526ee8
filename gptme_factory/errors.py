"""The factory's error hierarchy.

Every expected failure is a `FactoryError` whose message says what happened and what to do
next. Each class carries the exit code the CLI uses; the gptme tool returns the message to
the agent as a sentence. Anything else that escapes is a bug and keeps its traceback.
Decisions are taken on these types (`except NotPublished`), never on a message's wording.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any


class FactoryError(Exception):
    """Base of every expected failure; `str(err)` is the actionable message."""

    exit_code = 1


class UsageError(FactoryError):
    """The caller asked for something malformed (bad id, missing option, unknown role)."""

    exit_code = 2


class NotAGitRepo(FactoryError):
    """The path is not inside a git working tree."""

    exit_code = 3


class NotAFactory(FactoryError):
    """The git repo has no factory ledger yet."""

    exit_code = 3


class ArtifactNotFound(UsageError):
    """No artifact (or several) match the id or prefix given."""

    def __init__(self, query: str, candidates: Iterable[str] = (),
                 known: Iterable[str] = ()) -> None:
        self.query = query
        self.candidates = sorted(candidates)
        self.suggestions = [] if self.candidates else difflib.get_close_matches(
            query, list(known), n=3, cutoff=0.6)
        if self.candidates:
            shown = ", ".join(self.candidates[:10])
            more = f" (and {len(self.candidates) - 10} more)" if len(self.candidates) > 10 else ""
            msg = (
                f"artifact id {query!r} is ambiguous: it matches {shown}{more}; "
                "give a longer prefix"
            )
        elif self.suggestions:
            msg = (f"no artifact matches {query!r}; did you mean "
                   f"{' or '.join(self.suggestions)}?")
        else:
            msg = f"no artifact matches {query!r}: run `gptme-factory status` to list artifacts"
        super().__init__(msg)


class InvalidRecord(FactoryError):
    """A ledger file or handoff failed to parse or validate; `problems` are `field: message`."""

    exit_code = 4

    def __init__(self, source: str, problems: Iterable[str]) -> None:
        self.source = source
        self.problems = list(problems)
        lines = "\n".join(f"  {source}: {p}" for p in self.problems)
        super().__init__(f"invalid record in {source}:\n{lines}")


class InvalidHandoff(InvalidRecord):
    """A cell's handoff failed its contract; `problems` are `field: problem` lines to fix."""

    def __init__(self, cell: str, problems: Iterable[str], status: str) -> None:
        super().__init__(f"handoff from {cell}", problems)
        self.cell = cell
        self.status = status
        lines = "\n".join(f"  {p}" for p in self.problems)
        self.args = (f"invalid handoff from {cell} ({status}):\n{lines}",)


class ConfigError(FactoryError):
    """factory/factory.yaml is invalid; the message names the key."""

    exit_code = 4


class LedgerConflict(FactoryError):
    """The ledger changed under us (a concurrent writer or a fork); retry or run `verify`."""

    exit_code = 5


class ForkDetected(LedgerConflict):
    """Two events of one stream claim the same parent; keep one side before appending."""


class LedgerDamaged(LedgerConflict):
    """A stream fails its integrity check (tampered, missing parent, bad record)."""


class LedgerBusy(LedgerConflict):
    """Another writer held the ledger's lock longer than the wait allowed; nothing was written."""


class ClaimLost(LedgerConflict):
    """Someone else holds the stage (claimed first, on this machine or another one)."""

    def __init__(self, message: str, *, artifact: str, stage: str, cell: str | None = None,
                 host: str | None = None, at: str | None = None) -> None:
        super().__init__(message)
        self.artifact = artifact
        self.stage = stage
        self.cell = cell
        self.host = host
        self.at = at


class SyncRefused(FactoryError):
    """Syncing would publish or overwrite the user's own work; nothing was changed."""

    exit_code = 5


class GitError(FactoryError):
    """A git command failed; the message carries git's own words."""

    exit_code = 6


class GitBusy(GitError):
    """A rebase, merge, cherry-pick, revert or bisect is in progress: the ledger waits."""


class RemoteUnreachable(GitError):
    """The remote could not be fetched from or pushed to (network, auth, no such remote)."""


class IllegalTransition(FactoryError):
    """The requested event is not legal in the artifact's current state."""

    exit_code = 7


class NothingToAdvance(IllegalTransition):
    """The current stage has no handoff waiting for its gate."""


class NotPublished(IllegalTransition):
    """The package gate needs a publication first (`gptme-factory package`)."""


class AwaitingReview(IllegalTransition):
    """The stage's result waits for a person's review."""


class HandoffRefused(FactoryError):
    """A handoff came from the wrong cell, role, artifact or stage; nothing was recorded."""

    exit_code = 7


class CellError(FactoryError):
    """A cell could not be spawned, found or controlled."""

    exit_code = 8


class CellCapacity(CellError):
    """`max_concurrent_cells` cells are running: wait for one to finish."""


class EnvironmentNotReady(FactoryError):
    """The machine cannot run the cell or its checks (no model key, a missing program)."""

    exit_code = 12

    def __init__(self, message: str, failure: Any = None) -> None:
        super().__init__(message)
        self.failure = failure  # the envcheck.EnvironmentFailure behind it


class BoardError(FactoryError):
    """The board's web server could not be started or stopped."""

    exit_code = 13


class TargetError(FactoryError):
    """A target repository is missing, misconfigured or unreachable; the message says how to fix it."""

    exit_code = 3
