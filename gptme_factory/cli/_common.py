"""Shared options and output helpers for the CLI command modules."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from ..ledger.store import Ledger

F = TypeVar("F", bound=Callable[..., Any])


def repo_option(func: F) -> F:
    """`--repo PATH` (default: $GPTME_FACTORY_REPO or the current directory)."""
    return click.option(
        "--repo",
        "repo",
        type=click.Path(file_okay=False, path_type=str),
        default=lambda: os.environ.get("GPTME_FACTORY_REPO", "."),
        show_default="current directory",
        help="The brain repo (any path inside it).",
    )(func)


def json_option(func: F) -> F:
    """`--json` for machine-readable output."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for programs.")(func)


def open_ledger(repo: str) -> Ledger:
    """Open the ledger of the repo at `repo` (its commits keep the status cache warm)."""
    from ..ledger.store import Ledger
    from ..views.factcache import keep_warm

    ledger = Ledger.open(repo)
    keep_warm(ledger)
    return ledger


def echo_json(data: Any) -> None:
    """Print `data` as indented JSON."""
    click.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))
