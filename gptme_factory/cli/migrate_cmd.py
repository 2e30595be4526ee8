"""`gptme-factory migrate`: move an older ledger's artifact folders into their id shelves."""

from __future__ import annotations

import click

from ._common import echo_json, json_option, open_ledger, repo_option


@click.command("migrate")
@click.option("--dry-run", is_flag=True, help="List what would move; move nothing.")
@repo_option
@json_option
def command(dry_run: bool, repo: str, as_json: bool) -> None:
    """Move older artifact folders into their shelves (factory/artifacts/B/S/ID/), in one commit.

    Flat folders (factory/artifacts/ID/) and shallow ones (factory/artifacts/B/ID/) go to
    B/S/ID/: B is the id's last two characters, S the one before them.

    Folders keep every file byte for byte, so hashes, chains and `verify` are unchanged;
    a commit then rewrites small trees only. Refuses while anything under
    factory/artifacts is uncommitted.
    """
    from ..ledger.migrate import migrate

    ledger = open_ledger(repo)
    done = migrate(ledger, dry_run=dry_run)
    if as_json:
        echo_json({"dry_run": dry_run, "moves": done.moves, "commit": done.commit})
        return
    if not done.moves:
        click.echo("nothing to move: every artifact folder is in its shelf")
        return
    verb = "would move" if dry_run else "moved"
    shown = list(done.moves.items())
    for folder, target in shown[:20]:
        click.echo(f"{verb} {folder} -> {target}")
    if len(shown) > 20:
        click.echo(f"... and {len(shown) - 20} more")
    click.echo(f"{verb} {len(shown)} folder(s)" + (f" in commit {done.commit[:12]}"
                                                     if done.commit else ""))
