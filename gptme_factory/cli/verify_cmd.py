"""`gptme-factory verify`: ledger integrity check (what changed since the last clean one)."""

from __future__ import annotations

import click

from ._common import echo_json, json_option, open_ledger, repo_option


@click.command("verify")
@click.option("--full", is_flag=True,
              help="Check every record and the whole history, not only what changed since the "
                   "last clean verify.")
@repo_option
@json_option
def command(full: bool, repo: str, as_json: bool) -> None:
    """Re-validate records and hashes; report tampering, forks, gaps. Exit 0 only if clean.

    Checks what changed since the last clean verify (remembered by its commit; a rewritten
    history is noticed and checked in full); --full checks everything.
    """
    from ..line.verifystate import start

    ledger = open_ledger(repo)
    started = start(ledger, full=full)  # git works while the record models load
    from ..line.verify import verify

    found = verify(ledger, full=full, started=started)
    problems, count = found.problems, found.artifacts
    if as_json:
        echo_json({"ok": not problems, "artifacts": count, "checked": found.checked,
                   "since": found.since, "notes": found.notes,
                   "problems": [{"where": p.where, "message": p.message, "code": p.code}
                                for p in problems]})
        raise SystemExit(9 if problems else 0)
    for note in found.notes:
        click.echo(f"note: {note}")
    scope = (f" ({found.checked} changed since the last clean verify at {found.since[:12]}; "
             "--full checks all)" if found.since else "")
    if problems:
        for p in problems:
            click.echo(str(p))
        click.echo(f"{len(problems)} problem(s) in {count} artifact(s){scope}")
        raise SystemExit(9)
    click.echo(f"ledger ok: {count} artifact(s){scope}")
