"""Shared plumbing of the factory tool functions: the adapter wrapper and ledger lookup.

`adapter` turns a `FactoryError` into an "error: ..." sentence (a `Reply` with `ok=False`),
so the agent never sees a traceback for an expected failure; only bugs raise.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ._render import Reply

if TYPE_CHECKING:
    from ...ledger.store import Ledger

F = TypeVar("F", bound=Callable[..., str])


def adapter(func: F) -> F:
    """Turn FactoryError into an actionable sentence; wrap every answer in a Reply."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> str:
        from ...errors import FactoryError

        try:
            result = func(*args, **kwargs)
        except FactoryError as exc:
            return Reply(f"error: {exc}", ok=False)
        return result if isinstance(result, Reply) else Reply(result)

    return wrapper  # type: ignore[return-value]


def brain_path(start: str | Path) -> tuple[Path, bool]:
    """The brain repo for a working directory, and whether it is a cell's worktree.

    Cells work in linked worktrees inside the brain repo's git directory; their checkout holds
    a stale copy of the ledger on the cell's branch, so the ledger is always the main one.
    """
    from ...ledger.gitstore import GitRepo

    repo = GitRepo.discover(start)
    main = repo.main_worktree() if repo.is_cell_worktree() else None
    return (main, True) if main is not None else (repo.root, False)


def open_ledger() -> Ledger:
    from ...ledger.store import Ledger
    from ...views.factcache import keep_warm
    from ..settings import settings

    root, _ = brain_path(os.environ.get("GPTME_FACTORY_REPO") or ".")
    ledger = Ledger.open(root, settings.ledger_dir)
    keep_warm(ledger)  # its commits keep the status cache warm
    return ledger


def as_list(value: str | list[str] | tuple[str, ...] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def summary_of(ledger: Ledger, artifact: str) -> Any:
    from ...views.summary import summarize_artifact

    return summarize_artifact(ledger, artifact)
