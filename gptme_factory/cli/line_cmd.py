"""`gptme-factory park`, `unpark`, `archive`: a line's lifecycle, recorded with reasons."""

from __future__ import annotations

import click

from ._common import echo_json, json_option, open_ledger, repo_option


@click.command("park")
@click.argument("line")
@click.option("--trigger", "triggers", multiple=True, required=True,
              help="What would restart the line, in words (repeat for more).")
@click.option("--reason", default="", help="Why it is parked now.")
@repo_option
@json_option
def park(line: str, triggers: tuple[str, ...], reason: str, repo: str, as_json: bool) -> None:
    """Park LINE: it refuses intake until one of its restart triggers fires."""
    from ..line.lifecycle import park as park_line

    stored = park_line(open_ledger(repo), line, list(triggers), reason=reason)
    _report(stored.path, f"{line}: parked until " + "; ".join(f'"{t}"' for t in triggers),
            as_json, {"line": line, "state": "parked", "triggers": list(triggers)})


@click.command("unpark")
@click.argument("line")
@click.option("--because", required=True, help="Which restart trigger fired.")
@repo_option
@json_option
def unpark(line: str, because: str, repo: str, as_json: bool) -> None:
    """Resume a parked LINE, saying which trigger fired."""
    from ..line.lifecycle import unpark as unpark_line

    stored = unpark_line(open_ledger(repo), line, because)
    _report(stored.path, f"{line}: active again ({because})", as_json,
            {"line": line, "state": "active", "because": because})


@click.command("archive")
@click.argument("line")
@click.option("--reason", required=True, help="Why the line is retired.")
@repo_option
@json_option
def archive(line: str, reason: str, repo: str, as_json: bool) -> None:
    """Archive LINE for good: it never takes intake again."""
    from ..line.lifecycle import archive as archive_line

    stored = archive_line(open_ledger(repo), line, reason)
    _report(stored.path, f"{line}: archived ({reason})", as_json,
            {"line": line, "state": "archived", "reason": reason})


def _report(path: str, text: str, as_json: bool, data: dict[str, object]) -> None:
    if as_json:
        echo_json({**data, "event": path})
    else:
        click.echo(text)
