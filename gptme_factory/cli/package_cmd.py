"""`gptme-factory package`: render a release package to files and publish it."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import echo_json, json_option, open_ledger, repo_option


@click.command("package")
@click.argument("artifact")
@click.option("--target", type=click.Choice(["pr", "release", "note"]), default="pr",
              show_default=True, help="Where to publish: a pull request, a release, a note.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory for the rendered files (default: factory/packages, committed).")
@click.option("--base", default=None, help="Base branch of the PR (default: the current branch).")
@click.option("--remote", default="origin", show_default=True, help="Git remote to push to.")
@click.option("--tag", default=None, help="Release tag (required for --target release).")
@click.option("--where", default=None,
              help="Record a publication made by hand (a PR URL, a tag, a path); runs nothing.")
@click.option("--dry-run", is_flag=True, help="Render the files only; publish and record nothing.")
@repo_option
@json_option
def command(artifact: str, target: str, out_dir: Path | None, base: str | None, remote: str,
            tag: str | None, where: str | None, dry_run: bool, repo: str, as_json: bool) -> None:
    """Render ARTIFACT's release package to files and publish it.

    Writes a changelog fragment, release notes, the PR description and an announcement, then
    runs `gh pr create` / `gh release create` when gh is logged in, or prints exactly what to
    run (exit 11: nothing was published). Publishing is recorded in the ledger.
    """
    from ..outcomes.packaging import publish

    ledger = open_ledger(repo)
    res = publish(ledger, ledger.resolve(artifact), target=target, out_dir=out_dir, base=base,
                  remote=remote, tag=tag, where=where, dry_run=dry_run)
    if as_json:
        echo_json(res.to_json())
    else:
        p = res.package
        click.echo(f"{p.artifact}: {p.change_type}, suggested version bump {p.version_bump}")
        if p.self_play:
            click.echo("  self-play: every named consumer is the factory itself")
        for f in res.written:
            click.echo(f"  wrote {f}")
        for c in res.ran:
            click.echo(f"  ran   {c}")
        if res.published:
            click.echo(f"published ({res.target}): {res.where}")
            click.echo(f"  next: `gptme-factory advance {p.artifact}` passes the package gate")
        else:
            click.echo(res.reason)
            for c in res.commands:
                click.echo(f"  {c}")
    if not res.published and not dry_run:
        raise SystemExit(11)
