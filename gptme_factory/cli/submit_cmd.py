"""`gptme-factory submit`: a cell hands over its typed result."""

from __future__ import annotations

import sys

import click

from ._common import echo_json, json_option, open_ledger, repo_option


@click.command("submit")
@click.option("--cell", required=True, help="Your cell id, from your brief.")
@click.argument("file", type=click.Path(allow_dash=True, dir_okay=False))
@click.option("--check", "check_only", is_flag=True,
              help="Validate only: record nothing and spend no repair.")
@repo_option
@json_option
def command(cell: str, file: str, check_only: bool, repo: str, as_json: bool) -> None:
    """Submit a handoff FILE (YAML or JSON; '-' reads stdin) for CELL's stage.

    Exit 0: accepted and committed (with --check: valid, nothing recorded). Exit 4: invalid,
    with one `field: problem` line for every problem to fix before submitting again. Exit 7:
    refused (wrong cell, artifact, role or stage); nothing was recorded.
    """
    from ..errors import FactoryError
    from ..line.engine import submit

    if file == "-":
        raw = sys.stdin.buffer.read()
    else:
        try:
            with open(file, "rb") as fh:
                raw = fh.read()
        except OSError as exc:
            raise click.BadParameter(f"cannot read {file}: {exc.strerror}") from None
    ledger = open_ledger(repo)
    try:
        stored = submit(ledger, cell, raw, check=check_only)
    except FactoryError as exc:
        if not as_json:
            raise
        # A program reading --json gets the verdict and the problems on stdout too.
        echo_json({"accepted": False, "error": str(exc).splitlines()[0],
                   "problems": list(getattr(exc, "problems", []))})
        raise SystemExit(exc.exit_code) from None
    if stored is None:
        if as_json:
            echo_json({"accepted": False, "valid": True, "checked_only": True})
        else:
            click.echo("valid: nothing was recorded (--check); submit it without --check")
    elif as_json:
        echo_json({"accepted": True, "file": stored.path, "hash": stored.digest,
                   "notes": ledger.notes})
    else:
        click.echo(f"accepted: {stored.path}")
        for note in ledger.notes:
            click.echo(f"note: {note}", err=True)
