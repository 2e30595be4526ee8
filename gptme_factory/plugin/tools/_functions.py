"""The factory tool functions the agent calls through gptme's `ipython` tool: the index.

Each function is a thin adapter over the core API that opens the ledger of the brain repo
gptme runs in (the current directory, or `GPTME_FACTORY_REPO`; inside a cell's worktree,
the main brain repo), calls one core function, and returns a short text — a `Reply`, which
also carries `.ok` and, where it applies, `.artifact`/`.cell`. An expected failure comes
back as a sentence starting with "error:" that says what to do; only bugs raise. The first
paragraph of each docstring is what the model sees in the tool's function list.

They live in `_artifacts` (intake, board, stages, endings), `_cellfns` (spawn, progress,
collect, kill, run) and `_outcomes` (package, measure, metrics, lines); `FUNCTIONS` is the
order the `factory` tool lists them in.
"""

from __future__ import annotations

from collections.abc import Callable

from ._artifacts import (
    factory_abandon,
    factory_advance,
    factory_close,
    factory_intake,
    factory_log,
    factory_reject,
    factory_review,
    factory_schema,
    factory_show,
    factory_start,
    factory_status,
    factory_submit,
    factory_verify,
)
from ._base import brain_path
from ._cellfns import (
    factory_collect,
    factory_kill,
    factory_progress,
    factory_run,
    factory_spawn,
    factory_wait,
)
from ._outcomes import (
    factory_measure,
    factory_metrics,
    factory_package,
    factory_park,
    factory_unpark,
)
from ._render import Reply
from ._shared import factory_resolve, factory_sync

FUNCTIONS: list[Callable[..., str]] = [
    factory_intake,
    factory_status,
    factory_show,
    factory_schema,
    factory_start,
    factory_spawn,
    factory_progress,
    factory_submit,
    factory_advance,
    factory_collect,
    factory_wait,
    factory_kill,
    factory_run,
    factory_package,
    factory_measure,
    factory_metrics,
    factory_park,
    factory_unpark,
    factory_review,
    factory_close,
    factory_reject,
    factory_abandon,
    factory_log,
    factory_verify,
    factory_sync,
    factory_resolve,
]

__all__ = [
    "FUNCTIONS",
    "Reply",
    "brain_path",
    "factory_abandon",
    "factory_advance",
    "factory_close",
    "factory_intake",
    "factory_log",
    "factory_reject",
    "factory_resolve",
    "factory_review",
    "factory_schema",
    "factory_show",
    "factory_start",
    "factory_status",
    "factory_sync",
    "factory_submit",
    "factory_verify",
    "factory_measure",
    "factory_metrics",
    "factory_package",
    "factory_park",
    "factory_unpark",
]
