"""`gptme-factory verify`: ledger integrity check."""

from __future__ import annotations

import click

from ._common import echo_json, json_option, open_ledger, repo_option


@click.command("verify")
@repo_option
@json_option
def command(repo: str, as_json: bool) -> None:
    """Re-validate every record and hash; report tampering, forks, gaps. Exit 0 only if clean."""
    from ..line.verify import verify_ledger

    ledger = open_ledger(repo)
    problems = verify_ledger(ledger)
    count = len(ledger.artifact_ids())
    if as_json:
        echo_json({"ok": not problems, "artifacts": count,
                   "problems": [{"where": p.where, "message": p.message} for p in problems]})
    elif problems:
        for p in problems:
            click.echo(str(p))
        click.echo(f"{len(problems)} problem(s) in {count} artifact(s)")
    else:
        click.echo(f"ledger ok: {count} artifact(s)")
    if problems:
        raise SystemExit(9)
