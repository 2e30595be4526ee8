"""`gptme-factory doctor`: check the brain repo's gptme wiring and say how to fix each gap."""

from __future__ import annotations

import click

from ._common import echo_json, json_option, repo_option


@click.command("doctor")
@repo_option
@json_option
def command(repo: str, as_json: bool) -> None:
    """Check ledger, gptme.toml, plugin, tools, skill, gptme/gptodo/tmux (exit 1 on problems)."""
    from ..plugin.doctor import render, run_checks

    checks = run_checks(repo)
    if as_json:
        echo_json({"ok": all(c.ok for c in checks), "checks": [c.to_json() for c in checks]})
    else:
        click.echo(render(checks))
    if not all(c.ok for c in checks):
        raise SystemExit(1)
