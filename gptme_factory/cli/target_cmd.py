"""`gptme-factory target add|list|show|remove`: the project repositories the factory builds for."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ._common import echo_json, json_option, open_ledger, repo_option

if TYPE_CHECKING:
    from ..ledger.store import Ledger


@click.group("target")
def group() -> None:
    """Manage targets: the project repositories artifacts change (the brain is `brain`)."""


@group.command("add")
@click.argument("name")
@click.argument("path", type=click.Path(file_okay=False, path_type=Path))
@click.option("--remote", default=None, help="The clone's remote (default: origin, or its only one).")
@click.option("--no-remote", is_flag=True, help="A local-only project: never fetch or push.")
@click.option("--url", default=None, help="The remote's URL as evidence names it (default: the clone's).")
@click.option("--slug", default=None, metavar="OWNER/NAME",
              help="Its GitHub repository (default: from a GitHub remote URL).")
@click.option("--base", default=None, help="Base branch (default: the remote's default branch).")
@click.option("--check", "checks", multiple=True, help="A test command (repeat; default: detected).")
@click.option("--setup", "setup", multiple=True,
              help='A set-up command making $FACTORY_ENV (repeat; default: detected).')
@click.option("--setup-input", "setup_inputs", multiple=True,
              help="A file whose change remakes the environment (repeat; default: detected).")
@click.option("--link", "links", multiple=True,
              help="A path the set-up makes in the checkout, shared by later checkouts (repeat).")
@click.option("--no-detect", is_flag=True, help="Guess no test or set-up commands.")
@click.option("--replace", is_flag=True, help="Register an existing target anew.")
@repo_option
@json_option
def add(name: str, path: Path, remote: str | None, no_remote: bool, url: str | None,
        slug: str | None, base: str | None, checks: tuple[str, ...], setup: tuple[str, ...],
        setup_inputs: tuple[str, ...], links: tuple[str, ...], no_detect: bool, replace: bool,
        repo: str, as_json: bool) -> None:
    """Register the clone at PATH as target NAME, detecting what it can (and saying so).

    Detected: the remote and its URL, the GitHub slug, the default branch, and the test and
    set-up commands (pyproject.toml, package.json, Makefile). Explicit options win.
    """
    from pydantic import ValidationError

    from ..errors import NotAGitRepo, TargetError, UsageError
    from ..ledger.config import TargetConfig
    from ..ledger.gitstore import GitRepo
    from ..ledger.records import format_validation_error
    from ..targets import registry
    from ..targets.detect import Detection, detect

    ledger = open_ledger(repo)
    try:
        clone = GitRepo.discover(path)
    except NotAGitRepo:
        raise TargetError(f"{path} is not a git working tree: clone the project first "
                          "(`git clone URL PATH`)") from None
    if no_remote and remote:
        raise UsageError("give --remote NAME or --no-remote, not both")
    if no_remote:
        found = Detection(root=clone.root)
        found.base = clone.branch()
        found.said.append(("base", f"base branch: {found.base} (the clone's current branch; "
                                   "check it)"))
        if not no_detect:
            from ..targets.detect import detect_commands

            detect_commands(clone.root, found)
    else:
        found = detect(clone, remote=remote, commands=not no_detect)
    given = {k for k, v in (("remote", remote or no_remote), ("slug", slug), ("base", base),
                            ("checks", checks), ("setup", setup or setup_inputs)) if v}
    spec: dict[str, Any] = {
        "path": registry.stored_path(ledger, clone.root),
        "remote": None if no_remote else (remote or found.remote),
        "url": url or (None if no_remote else found.url),
        "slug": slug or (None if no_remote else found.slug),
        "base": base or found.base,
        "setup": list(setup) if setup or setup_inputs else found.setup,
        "setup_inputs": list(setup_inputs) if setup or setup_inputs else found.setup_inputs,
        "links": list(links) if links or setup else found.links,
        "checks": list(checks) or found.checks,
    }
    if not spec["base"]:
        raise UsageError("could not tell the base branch (no remote default, HEAD detached): "
                         "pass --base BRANCH")
    try:
        cfg = TargetConfig.model_validate({k: v for k, v in spec.items() if v is not None})
    except ValidationError as exc:
        raise UsageError("target " + name + ": " + "; ".join(format_validation_error(exc))
                         ) from None
    target = registry.add(ledger, name, cfg, replace=replace)
    guesses = found.guesses(frozenset(given))
    if as_json:
        echo_json({**target.describe(), "guessed": guesses})
        return
    if clone.root.resolve() != path.resolve():
        click.echo(f"note: {path} is inside the clone {clone.root}; registered the clone")
    click.echo(f"target {name}: {target.repo.root}")
    for line in guesses:
        click.echo(f"  guessed {line}")
    _print_target(target.describe())
    click.echo(f"  (check it with `gptme-factory target show {name}`; change it with "
               "`target add ... --replace`)")


def _print_target(d: dict[str, Any]) -> None:
    remote = f"{d['remote']} {d['url'] or ''}".strip() if d["remote"] else "none"
    click.echo(f"  remote: {remote}" + (f"  (GitHub {d['slug']})" if d["slug"] else ""))
    click.echo(f"  base:   {d['base']}")
    click.echo("  checks: " + ("; ".join(d["checks"]) or "none (the line's and the scout's only)"))
    click.echo("  setup:  " + ("; ".join(d["setup"]) or "none (the factory's own environment)"))
    if d["setup_inputs"]:
        click.echo("  inputs: " + ", ".join(d["setup_inputs"]))
    if d["links"]:
        click.echo("  links:  " + ", ".join(d["links"]))


@group.command("list")
@repo_option
@json_option
def list_targets(repo: str, as_json: bool) -> None:
    """List the targets, the built-in `brain` first."""
    ledger = open_ledger(repo)
    rows = _rows(ledger)
    if as_json:
        echo_json(rows)
        return
    for r in rows:
        where = r["slug"] or r["url"] or ("local only" if not r["brain"] else "the ledger's repo")
        base = r["base"] or "HEAD"
        click.echo(f"{r['name']:<16} {base:<12} {where}  ({r['path']})")


def _rows(ledger: Ledger) -> list[dict[str, Any]]:
    from ..ledger.config import BRAIN_TARGET
    from ..targets.registry import clone_path

    rows: list[dict[str, Any]] = [{"name": BRAIN_TARGET, "brain": True,
                                   "path": str(ledger.repo.root), "remote": None, "url": None,
                                   "slug": None, "base": None, "checks": []}]
    for name, cfg in sorted(ledger.config.targets.items()):
        rows.append({"name": name, "brain": False, "path": str(clone_path(ledger, cfg)),
                     "remote": cfg.remote, "url": cfg.url, "slug": cfg.slug, "base": cfg.base,
                     "checks": list(cfg.checks)})
    return rows


@group.command("show")
@click.argument("name")
@repo_option
@json_option
def show(name: str, repo: str, as_json: bool) -> None:
    """Show target NAME: its config, its clone's state, its environments."""
    from ..targets import bases, envs
    from ..targets.registry import resolve

    ledger = open_ledger(repo)
    target = resolve(ledger, name)
    data = target.describe()
    data["base_commit"] = target.repo.resolve_commit(bases.base_ref(target))
    data["clone_url"] = target.repo.remote_url(target.remote) if target.remote else None
    data["environments"] = envs.made_envs(ledger.runtime_dir, target.name)
    if as_json:
        echo_json(data)
        return
    click.echo(f"target {name}: {data['path']}" + ("  (the brain repo itself)"
                                                   if target.is_brain else ""))
    if target.is_brain:
        click.echo(f"  builders start from the brain's HEAD ({(data['base_commit'] or '?')[:12]});"
                   " checks run in the factory's own environment")
        return
    _print_target(data)
    fetched = data["base_commit"]
    click.echo(f"  base tip: {fetched[:12] if fetched else 'not fetched yet'} "
               f"({bases.base_ref(target)})")
    if data["clone_url"] and data["url"] and data["clone_url"] != data["url"]:
        click.echo(f"  warning: the clone's {target.remote} is {data['clone_url']}, "
                   f"not {data['url']}")
    for env in data["environments"]:
        click.echo(f"  environment {env['key']}: made {env['made_at']} at "
                   f"{(env['commit'] or '?')[:12]} ({env['path']})")


@group.command("remove")
@click.argument("name")
@repo_option
@json_option
def remove(name: str, repo: str, as_json: bool) -> None:
    """Unregister target NAME (refused while an open artifact works on it)."""
    from ..ledger import yamlio
    from ..line.engine import load
    from ..targets import registry

    ledger = open_ledger(repo)
    open_ones = []
    for aid in ledger.artifact_ids():
        intake = ledger.artifact_dir(aid) / "intake.yaml"
        data = yamlio.loads(intake.read_bytes(), ledger.relpath(intake))
        if data.get("target") == name and not load(ledger, aid)[1].is_final:
            open_ones.append(aid)
    registry.remove(ledger, name, open_artifacts=open_ones)
    if as_json:
        echo_json({"removed": name})
    else:
        click.echo(f"removed target {name} (its clone and environments are left as they are)")
