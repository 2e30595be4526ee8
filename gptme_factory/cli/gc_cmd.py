"""`gptme-factory gc`: remove what finished cells left behind (never the ledger)."""

from __future__ import annotations

import click

from ._common import echo_json, json_option, open_ledger, repo_option


@click.command("gc")
@click.option("--dry-run", is_flag=True, help="List what would be removed; remove nothing.")
@repo_option
@json_option
def command(dry_run: bool, repo: str, as_json: bool) -> None:
    """Remove stale cell worktrees, finished cells' build branches, old cell task files and runtime leftovers.

    Keeps everything of a running cell and the accepted build branch of every artifact
    still in progress; never touches the ledger.
    """
    from ..cells.gc import collect_garbage

    done = collect_garbage(open_ledger(repo), dry_run=dry_run)
    if as_json:
        echo_json({"dry_run": dry_run, "worktrees": done.worktrees, "branches": done.branches,
                   "task_files": done.task_files, "runtime": done.runtime})
        return
    verb = "would remove" if dry_run else "removed"
    for what, items in (("worktree", done.worktrees), ("branch", done.branches),
                        ("task file", done.task_files), ("runtime file", done.runtime)):
        for item in items:
            click.echo(f"{verb} {what} {item}")
    click.echo(f"{verb} {done.total} item(s)" if done.total else "nothing to remove")
