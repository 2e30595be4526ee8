"""`gptme-factory demo`: the whole line, offline, in a temporary brain repo."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("demo")
@click.option("--keep", type=click.Path(file_okay=False, path_type=Path), default=None,
              metavar="DIR",
              help="Build the demo in DIR (new or empty: brain/, the project, its upstream) "
                   "and keep it.")
def command(keep: Path | None) -> None:
    """Run a whole production line offline: scout, build, verify, package, measure.

    Creates a brain repo and, as its target, a small sample project in its own repo with a
    bare upstream remote, takes in a real demand, then drives it with scripted cells — the
    real `gptme` CLI on the offline `mock/echo` model, spawned through gptodo and tmux —
    showing the live board, the typed handoffs, the branch pushed to the upstream with the
    PR text and the `gh` command, and the `git log` audit trail. No model key, no network;
    about a minute.
    """
    from rich.console import Console

    from ..demo.run import run_demo

    raise SystemExit(run_demo(Console(soft_wrap=True), keep=keep))
