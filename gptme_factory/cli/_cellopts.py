"""Options shared by `spawn` and `run`: backend, model and budget of the cells they launch."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from ..cells.spawn import SpawnOptions

F = TypeVar("F", bound=Callable[..., Any])

_OPTIONS = [
    click.option("--backend", type=click.Choice(["gptodo", "subagent", "command"]),
                 default="gptodo", show_default=True,
                 help="gptodo spawn (tmux), gptme's subagent API, or a command template."),
    click.option("--model", "-m", default=None, help="Model for the cell, e.g. anthropic/claude-sonnet-4-5."),
    click.option("--timeout", "timeout_s", type=float, default=None,
                 help="Wall-clock budget per cell in seconds (default: stage or factory budget)."),
    click.option("--max-tokens", type=int, default=None, help="Token budget per cell."),
    click.option("--max-cost", "max_cost_usd", type=float, default=None, help="Money budget per cell (USD)."),
    click.option("--command", "command_template", default=None,
                 help="For --backend command: template such as 'claude -p {prompt}'."),
    click.option("--scripted", default=None, metavar="PLAN",
                 help="Offline demo/tests: scripted cells (sample, sample-rework) on mock/echo."),
]


def cell_options(func: F) -> F:
    """Attach the cell launch options."""
    for opt in reversed(_OPTIONS):
        func = opt(func)
    return func


def spawn_options(backend: str, model: str | None, timeout_s: float | None,
                  max_tokens: int | None, max_cost_usd: float | None,
                  command_template: str | None, scripted: str | None,
                  force: bool = False) -> SpawnOptions:
    """SpawnOptions from the CLI values."""
    from ..cells.spawn import SpawnOptions

    script = None
    if scripted:
        from ..demo.scripted import SCRIPTED_MODEL, plan

        script = plan(scripted)
        model = model or SCRIPTED_MODEL
    return SpawnOptions(backend=backend, model=model, timeout_s=timeout_s, max_tokens=max_tokens,
                        max_cost_usd=max_cost_usd, command=command_template, script=script,
                        force=force)
