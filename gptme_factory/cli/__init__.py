"""The `gptme-factory` command line: wiring only.

Each command lives in its own small module under `gptme_factory.cli` and is imported only when
it runs (or when `--help` lists it), and command modules import the core lazily inside their
functions, so `gptme-factory --help` stays light (no GitPython, no pydantic models).
`FactoryError`s become a one-line message and the error's exit code; anything else is a bug.
"""

from __future__ import annotations

import difflib
import importlib
import json
from typing import Any

import click

# command name -> module under gptme_factory.cli, optionally `module:attr` (default `command`)
COMMANDS: dict[str, str] = {
    "init": "init_cmd",
    "intake": "intake_cmd",
    "status": "status_cmd",
    "board": "board_cmd",
    "show": "show_cmd",
    "log": "log_cmd",
    "verify": "verify_cmd",
    "sync": "sync_cmd",
    "resolve": "resolve_cmd",
    "schema": "schema_cmd",
    "submit": "submit_cmd",
    "advance": "advance_cmd",
    "start": "start_cmd",
    "close": "close_cmd",
    "reject": "finish_cmd:reject",
    "abandon": "finish_cmd:abandon",
    "review": "review_cmd",
    "package": "package_cmd",
    "measure": "measure_cmd",
    "metrics": "metrics_cmd",
    "park": "line_cmd:park",
    "unpark": "line_cmd:unpark",
    "archive": "line_cmd:archive",
    "doctor": "doctor_cmd",
    "demo": "demo_cmd",
    "spawn": "spawn_cmd",
    "progress": "progress_cmd",
    "collect": "collect_cmd",
    "run": "run_cmd",
    "kill": "kill_cmd",
    "gc": "gc_cmd",
    "migrate": "migrate_cmd",
    "target": "target_cmd:group",
}


class FactoryGroup(click.Group):
    """A click group that loads command modules on demand and maps FactoryError to exits."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every command name, sorted (no module is imported)."""
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """Import the command's module on demand."""
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, _, attr = target.partition(":")
        mod = importlib.import_module(f"{__name__}.{module}")
        cmd: click.Command = getattr(mod, attr or "command")
        return _json_errors(cmd)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        """Resolve a command; a typo gets the nearest names (`statsu`: did you mean status?)."""
        name = args[0] if args else ""
        if name and not name.startswith("-") and name not in COMMANDS:
            near = difflib.get_close_matches(name, list(COMMANDS), n=3, cutoff=0.6)
            hint = f"; did you mean {' or '.join(near)}?" if near else ""
            raise click.UsageError(f"no such command {name!r}{hint} (`gptme-factory --help` "
                                   "lists them)", ctx)
        return super().resolve_command(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; a FactoryError becomes `error: ...` and its exit code."""
        from ..errors import FactoryError

        try:
            return super().invoke(ctx)
        except FactoryError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)


def _json_errors(cmd: click.Command) -> click.Command:
    """With `--json`, an expected failure is JSON on stdout too (a program reads stdout)."""
    if "_factory_json_errors" in cmd.__dict__:
        return cmd
    invoke = cmd.invoke

    def invoke_with_json_errors(ctx: click.Context) -> Any:
        from ..errors import FactoryError

        try:
            return invoke(ctx)
        except FactoryError as exc:
            if not ctx.params.get("as_json"):
                raise
            click.echo(json.dumps({"ok": False, "error": str(exc).splitlines()[0],
                                   "problems": list(getattr(exc, "problems", [])),
                                   "exit_code": exc.exit_code}, indent=2))
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)

    cmd.__dict__.update(invoke=invoke_with_json_errors, _factory_json_errors=True)
    return cmd


@click.group(cls=FactoryGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="gptme-factory", prog_name="gptme-factory")
@click.option("--offline", is_flag=True,
              help="Stay off the network: claims and handoffs are not pushed "
                   "(as GPTME_FACTORY_OFFLINE=1).")
def main(offline: bool) -> None:
    """A software factory for gptme agents: typed handoffs, bounded cells, a ledger in git.

    Start with `gptme-factory init` in a brain repo, then `intake` an artifact and `run` it.
    """
    _freeze_at_exit()
    if offline:
        import os

        os.environ["GPTME_FACTORY_OFFLINE"] = "1"


def _freeze_at_exit() -> None:
    """At exit, hand every object to the permanent generation before Python tears down.

    Tearing down runs the cycle collector over everything still alive (the record models,
    every module): skipping it made a `verify` with nothing to check 0.88x as long, side by
    side. The process is ending, so nothing is lost by not looking (memory is freed by
    refcounts and then by the OS). Registered once, however often the group runs.
    """
    import atexit
    import gc

    atexit.unregister(gc.freeze)
    atexit.register(gc.freeze)
