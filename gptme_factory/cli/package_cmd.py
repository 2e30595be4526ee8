"""`gptme-factory package`: render a release package to files and publish it."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import echo_json, json_option, open_ledger, repo_option


@click.command("package")
@click.argument("artifact")
@click.option("--target", type=click.Choice(["pr", "release", "branch", "note"]), default="pr",
              show_default=True,
              help="Where to publish: a pull request, a release, the pushed branch, a note.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory for the rendered files (default: factory/packages, committed).")
@click.option("--base", default=None,
              help="Base branch of the PR (default: the target's base; the brain's current branch).")
@click.option("--remote", default=None,
              help="Git remote to push to (default: the target's remote; the brain's origin).")
@click.option("--tag", default=None, help="Release tag (required for --target release).")
@click.option("--where", default=None,
              help="Record a publication made by hand (a PR URL, a tag, a path); runs nothing.")
@click.option("--dry-run", is_flag=True,
              help="Show the rendered files; write, publish and record nothing.")
@repo_option
@json_option
def command(artifact: str, target: str, out_dir: Path | None, base: str | None,
            remote: str | None,
            tag: str | None, where: str | None, dry_run: bool, repo: str, as_json: bool) -> None:
    """Render ARTIFACT's release package to files and publish it.

    Writes a changelog fragment, release notes, the PR description and an announcement, then
    runs `gh pr create` / `gh release create` when gh is logged in, or prints exactly what to
    run (exit 11: nothing was published). `--target branch` only pushes the branch. For an
    artifact on a target, the branch goes to the target's remote and the PR or release is
    made on the target repo. Publishing is recorded in the ledger (in the brain).
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
        for f, text in zip(res.written, p.files.values(), strict=False):
            if dry_run:
                click.echo(f"  would write {f}:")
                click.echo("".join(f"    {line}\n" for line in text.splitlines()), nl=False)
            else:
                click.echo(f"  wrote {f}")
        for c in res.ran:
            click.echo(f"  ran   {c}")
        if res.published:
            click.echo(f"published ({res.target}): {res.where}")
            if res.commands:
                click.echo(f"  {res.reason}:")
                for c in res.commands:
                    click.echo(f"    {c}")
            click.echo(f"  next: `gptme-factory advance {p.artifact}` passes the package gate")
        else:
            click.echo(res.reason)
            for c in res.commands:
                click.echo(f"  {c}")
    if not res.published and not dry_run:
        raise SystemExit(11)
