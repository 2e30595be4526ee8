"""`gptme-factory intake`: record a new artifact from real demand."""

from __future__ import annotations

import click

from ._common import echo_json, json_option, open_ledger, repo_option


@click.command("intake")
@click.argument("title")
@click.option("--demand", required=True, help="Where the demand comes from (gh:owner/repo#N, a task, a person).")
@click.option("--consumer", "consumers", multiple=True, required=True, help="A named consumer (repeat for more).")
@click.option("--accept", "acceptance", multiple=True, required=True, help="An acceptance criterion (repeat for more).")
@click.option("--problem", default="", help="Why: the problem this solves.")
@click.option("--line", default=None, help="Production line (default: the config's default_line).")
@click.option(
    "--class", "classification",
    type=click.Choice(["factory_run", "factory_maintenance", "manual_follow_on"]),
    default="factory_run", show_default=True, help="Output classification for metrics.",
)
@repo_option
@json_option
def command(
    title: str,
    demand: str,
    consumers: tuple[str, ...],
    acceptance: tuple[str, ...],
    problem: str,
    line: str | None,
    classification: str,
    repo: str,
    as_json: bool,
) -> None:
    """Create an artifact in state `idea` and print its id."""
    ledger = open_ledger(repo)
    intake = ledger.create(
        title=title,
        demand=demand,
        consumers=list(consumers),
        acceptance=list(acceptance),
        problem=problem,
        line=line,
        classification=classification,
    )
    if as_json:
        echo_json({"artifact": intake.artifact, "state": "idea", "line": intake.line})
    else:
        click.echo(f"{intake.artifact}  idea")
