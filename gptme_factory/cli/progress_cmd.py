"""`gptme-factory progress`: a cell reports what it just did (runtime only, no commit)."""

from __future__ import annotations

import click

from ._common import echo_json, json_option, open_ledger, repo_option


@click.command("progress")
@click.option("--cell", required=True, help="Your cell id, from your brief.")
@click.argument("note", nargs=-1, required=True)
@repo_option
@json_option
def command(cell: str, note: tuple[str, ...], repo: str, as_json: bool) -> None:
    """Record NOTE as CELL's latest progress (shown by `status`; kept with its handoff).

    On a shared ledger this also renews CELL's claim on its stage when half its lease has
    run out (a small commit, pushed); it fails if the claim was taken over: stop then.
    """
    from ..cells.spawn import progress

    text = " ".join(note)
    until = progress(open_ledger(repo), cell, text)
    if as_json:
        echo_json({"cell": cell, "note": text,
                   "lease_until": until.isoformat() if until else None})
    else:
        click.echo(f"noted: {text}")
        if until is not None:
            click.echo(f"claim renewed until {until.isoformat()}")
