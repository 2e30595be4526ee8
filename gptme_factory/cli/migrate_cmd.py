"""`gptme-factory migrate`: fan an older ledger's flat artifact folders out into id buckets."""

from __future__ import annotations

import click

from ._common import echo_json, json_option, open_ledger, repo_option


@click.command("migrate")
@click.option("--dry-run", is_flag=True, help="List what would move; move nothing.")
@repo_option
@json_option
def command(dry_run: bool, repo: str, as_json: bool) -> None:
    """Move flat artifact folders (factory/artifacts/ID/) into their buckets, in one commit.

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
        click.echo("nothing to move: every artifact folder is in its bucket")
        return
    verb = "would move" if dry_run else "moved"
    shown = list(done.moves.items())
    for aid, target in shown[:20]:
        click.echo(f"{verb} {aid} -> {target}")
    if len(shown) > 20:
        click.echo(f"... and {len(shown) - 20} more")
    click.echo(f"{verb} {len(shown)} folder(s)" + (f" in commit {done.commit[:12]}"
                                                     if done.commit else ""))
