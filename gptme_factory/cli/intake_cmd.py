"""`gptme-factory intake`: record a new artifact from real demand."""

from __future__ import annotations

import click

from ._common import echo_json, json_option, open_ledger, repo_option


@click.command("intake")
@click.argument("title", required=False)
@click.option("--demand", default=None, help="Where the demand comes from (gh:owner/repo#N, a task, a person).")
@click.option("--consumer", "consumers", multiple=True, help="A named consumer (repeat for more).")
@click.option("--accept", "acceptance", multiple=True, help="An acceptance criterion (repeat for more).")
@click.option("--from-issue", "from_issue", default=None, metavar="OWNER/REPO#N",
              help="Take title, problem, criteria and consumer (its author) from a GitHub issue (gh).")
@click.option("--from-task", "from_task", default=None, metavar="TASK",
              help="Take them from a gptodo task file (tasks/TASK.md).")
@click.option("--problem", default="", help="Why: the problem this solves.")
@click.option("--line", default=None, help="Production line (default: the config's default_line).")
@click.option("--target", default=None, metavar="NAME",
              help="The project repository it changes (default: the GitHub issue's, the line's, "
                   "default_target, else the brain).")
@click.option(
    "--class", "classification",
    type=click.Choice(["factory_run", "factory_maintenance", "manual_follow_on"]),
    default="factory_run", show_default=True, help="Output classification for metrics.",
)
@repo_option
@json_option
def command(
    title: str | None,
    demand: str | None,
    consumers: tuple[str, ...],
    acceptance: tuple[str, ...],
    problem: str,
    line: str | None,
    target: str | None,
    classification: str,
    from_issue: str | None,
    from_task: str | None,
    repo: str,
    as_json: bool,
) -> None:
    """Create an artifact in state `idea` and print its id.

    Give TITLE, --demand, --consumer and --accept, or take them from a tracker with
    --from-issue OWNER/REPO#N or --from-task TASK (explicit options still win). A demand on
    a GitHub issue goes to the target registered with that repository's slug.
    """
    from ..line.intake import intake as record_intake
    from ..outcomes.demand import intake_fields, target_of_demand
    from ..outcomes.selfplay import is_self_play, ledger_self_names

    ledger = open_ledger(repo)
    draft = intake_fields(
        ledger.repo.root, issue=from_issue, task=from_task, title=title, demand=demand,
        consumers=list(consumers), acceptance=list(acceptance), problem=problem,
    )
    intake = record_intake(ledger, title=draft.title, demand=draft.demand,
                           consumers=draft.consumers, acceptance=draft.acceptance,
                           problem=draft.problem, line=line, classification=classification,
                           target=target or target_of_demand(ledger.config, draft.demand))
    self_play = is_self_play(intake.consumers, ledger_self_names(ledger))
    if as_json:
        echo_json({"artifact": intake.artifact, "state": "idea", "line": intake.line,
                   "target": intake.target or "brain", "self_play": self_play})
    else:
        click.echo(f"{intake.artifact}  idea" + (f"  (target {intake.target})"
                                                  if intake.target else ""))
        if self_play:
            click.echo("warning: self-play: every named consumer is the factory itself", err=True)
