"""`gptme-factory advance`: run the current stage's gate and record the verdict."""

from __future__ import annotations

import click

from ._common import echo_json, json_option, open_ledger, repo_option


@click.command("advance")
@click.argument("artifact")
@repo_option
@json_option
def command(artifact: str, repo: str, as_json: bool) -> None:
    """Evaluate the gate of ARTIFACT's current stage on its handoff (exit 10 if it failed)."""
    from ..line.engine import advance

    ledger = open_ledger(repo)
    res = advance(ledger, ledger.resolve(artifact))
    checks = res.outcome.checks if res.outcome else []
    if as_json:
        echo_json({"artifact": res.artifact, "stage": res.stage, "passed": res.passed,
                   "state": res.state, "reasons": res.reasons, "events": res.events,
                   "checks": [c.model_dump(mode="json") for c in checks]})
    else:
        from ..views.present import verdict_lines

        click.echo("\n".join(verdict_lines(res)))
    if not res.passed:
        raise SystemExit(10)
