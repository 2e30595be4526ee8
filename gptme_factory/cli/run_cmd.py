"""`gptme-factory run`: the foreman loop, with live status of the running cells."""

from __future__ import annotations

import signal
import sys
import threading
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

import click

from ._cellopts import cell_options, spawn_options
from ._common import echo_json, json_option, open_ledger, repo_option

if TYPE_CHECKING:
    from ..cells.watch import Observation

INTERRUPTED = 130
LINE_FAILED = 1


class _Stop:
    """First Ctrl-C (or SIGTERM): stop between steps. Second Ctrl-C: stop now."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def __call__(self, signum: int, frame: Any) -> None:
        if self.event.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.event.set()


@click.command("run")
@click.argument("artifacts", nargs=-1, required=True)
@click.option("--until", default=None, metavar="STAGE", help="Stop once STAGE has passed.")
@click.option("--publish", type=click.Choice(["note", "pr", "release", "branch"]), default=None,
              help="Publish a release package this way when the package gate needs it "
                   "(default: stop and let a person run `package`).")
@cell_options
@click.option("--poll", "poll_s", type=float, default=1.0, show_default=True,
              help="Seconds between checks of the running cells.")
@click.option("--grace", "grace_s", type=float, default=30.0, show_default=True,
              help="Seconds a cell may linger after its handoff before it is stopped.")
@repo_option
@json_option
def command(artifacts: tuple[str, ...], until: str | None, publish: str | None, backend: str,
            model: str | None, timeout_s: float | None, max_tokens: int | None,
            max_cost_usd: float | None, command_template: str | None, scripted: str | None,
            poll_s: float, grace_s: float, repo: str, as_json: bool) -> None:
    """Drive ARTIFACTS through their line: spawn, watch, collect, gate, next stage.

    Each stage gets one bounded cell; a failed gate goes back for rework within the attempt
    budget; the loop stops at --until, at the end of the line, or where a person is needed
    (review, publishing, a blocked stage). Ctrl-C stops the loop and leaves running cells
    alone; run it again to resume from the ledger. Exit 0 when every artifact finished or
    waits for a person's review/publication, 1 when one is blocked or rejected, 130 when
    interrupted.
    """
    from ..cells.foreman import FAILED, Foreman

    ledger = open_ledger(repo)
    opts = spawn_options(backend, model, timeout_s, max_tokens, max_cost_usd, command_template,
                         scripted)
    stop = _Stop()
    old = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    live = None if as_json or not sys.stdout.isatty() else _LiveCells()
    say = (lambda m: None) if as_json else (live.say if live else click.echo)
    env: Any = nullcontext()
    if scripted:
        from ..demo.scripted import scripted_environment

        env = scripted_environment(ledger.repo.root)
    try:
        with env, (live or nullcontext()):
            foreman = Foreman(ledger, artifacts, until=until, opts=opts, poll_s=poll_s,
                              grace_s=grace_s, on_event=say, publish=publish,
                              on_tick=live.update if live else None,
                              should_stop=stop.event.is_set)
            stopped = foreman.run()
    except KeyboardInterrupt:
        stopped = None
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    interrupted = stopped is None or stop.event.is_set()
    if as_json:
        echo_json({"interrupted": interrupted,
                   "artifacts": [s.to_json() for s in stopped or []]})
    elif interrupted:
        click.echo("interrupted: running cells keep running; run the same command again to "
                   "resume (or `gptme-factory kill CELL`)", err=True)
    if interrupted:
        raise SystemExit(INTERRUPTED)
    if any(s.kind == FAILED for s in stopped or []):
        raise SystemExit(LINE_FAILED)


class _LiveCells:
    """A rich Live table of the running cells, with foreman events printed above it."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console()
        self.live: Any = None

    def __enter__(self) -> _LiveCells:
        from rich.live import Live

        self.live = Live(self._table([]), console=self.console, refresh_per_second=2,
                         transient=True)
        self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.__exit__(None, None, None)

    def say(self, message: str) -> None:
        self.console.print(message, highlight=False, markup=False)

    def update(self, obs: list[Observation]) -> None:
        self.live.update(self._table(obs))

    @staticmethod
    def _table(obs: list[Observation]) -> Any:
        from rich.table import Table

        from ..views.cellboard import row

        table = Table(title="running cells", expand=False)
        for col in ("cell", "role", "backend", "elapsed", "state", "budget", "latest"):
            table.add_column(col, overflow="fold" if col == "latest" else "ellipsis")
        for o in obs:
            r = row(o)
            table.add_row(r["cell"], r["role"], r["backend"], r["elapsed"], r["state"],
                          r["budget"], r["latest"][:80])
        return table
