"""`gptme-factory measure`: record adoption per consumer and lessons as the outcome report."""

from __future__ import annotations

import click

from ._common import echo_json, json_option, open_ledger, repo_option


@click.command("measure")
@click.argument("artifact")
@click.option("--adoption", "adoption", multiple=True, metavar="CONSUMER=STATUS[:EVIDENCE]",
              help="A consumer's adoption: used, not_used or unknown, with evidence (repeat).")
@click.option("--lesson", "lessons", multiple=True, help="A lesson learned (repeat).")
@click.option("--successor", default=None, help="The artifact that continues this work.")
@click.option("--terminal", default=None, help="Why nothing follows.")
@click.option("--cell", default=None, help="Submit as this analyst cell (from its brief).")
@click.option("--no-gh", is_flag=True, help="Do not ask gh about the issue and the PR.")
@click.option("--close", is_flag=True, help="Also close the artifact (successor or terminal).")
@click.option("--dry-run", is_flag=True, help="Print the report; record nothing.")
@repo_option
@json_option
def command(artifact: str, adoption: tuple[str, ...], lessons: tuple[str, ...],
            successor: str | None, terminal: str | None, cell: str | None, no_gh: bool,
            close: bool, dry_run: bool, repo: str, as_json: bool) -> None:
    """Record ARTIFACT's outcome report: adoption per consumer, lessons, what follows.

    Adoption per named consumer is what --adoption states, else read from gh (the demand issue
    closed, the PR merged). The report goes through the measure stage; the artifact's measured
    cost is printed.
    """
    from ..outcomes.measure import measure, parse_adoption

    ledger = open_ledger(repo)
    res = measure(ledger, ledger.resolve(artifact), adoption=[parse_adoption(a) for a in adoption],
                  lessons=lessons, successor=successor, terminal=terminal, cell=cell,
                  use_gh=not no_gh, close=close, dry_run=dry_run)
    if as_json:
        echo_json(res.to_json())
        return
    click.echo(f"{res.artifact}: {'measured' if res.recorded else 'not recorded (dry run)'}"
               f" -> {res.state}" + (" (closed)" if res.closed else ""))
    for a in res.report["adoption"]:
        click.echo(f"  {a['consumer']}: {a['status']}  ({a['evidence']})")
    for lesson in res.report.get("lessons", []):
        click.echo(f"  lesson: {lesson}")
    t = res.cost.total
    click.echo(f"  cost: {t.cells} cell(s), {t.tokens_in} tokens in / {t.tokens_out} out, "
               f"${t.usd:.4f}, {t.wall_s:.0f} s wall" +
               (f" ({t.unmeasured} cell(s) unmeasured)" if t.unmeasured else ""))
