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
    notes: list[str] = []
    problems = verify_ledger(ledger, notes)
    count = len(ledger.artifact_ids())
    if as_json:
        echo_json({"ok": not problems, "artifacts": count, "notes": notes,
                   "problems": [{"where": p.where, "message": p.message, "code": p.code}
                                for p in problems]})
        raise SystemExit(9 if problems else 0)
    for note in notes:
        click.echo(f"note: {note}")
    if problems:
        for p in problems:
            click.echo(str(p))
        click.echo(f"{len(problems)} problem(s) in {count} artifact(s)")
    else:
        click.echo(f"ledger ok: {count} artifact(s)")
    if problems:
        raise SystemExit(9)
