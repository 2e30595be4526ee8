"""`gptme-factory metrics`: throughput, lead time, yield, cost, adoption — rich tables or JSON."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import click

from ..views.present import lead_time, pct
from ._common import echo_json, json_option, open_ledger, repo_option


@click.command("metrics")
@click.option("--line", default=None, help="Only artifacts on this line.")
@click.option("--since", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="Only artifacts taken in on or after DATE (YYYY-MM-DD, UTC).")
@click.option("--artifacts", "per_artifact", is_flag=True,
              help="Also list each artifact's numbers (JSON: per_artifact).")
@click.option("--no-cache", is_flag=True,
              help="Ignore the metric-facts cache (slower, same numbers).")
@repo_option
@json_option
def command(line: str | None, since: datetime | None, per_artifact: bool, no_cache: bool,
            repo: str, as_json: bool) -> None:
    """Show throughput, lead time, yield, cost, adoption and queues, from the ledger.

    Lead time per stage and end to end (median, p90), first-pass yield, rework and
    contract-violation rates, cost per published artifact, adoption rate, self-play share,
    queue depth per stage and output classification (definitions: docs/metrics.md).
    """
    from ..views.factcache import metrics

    ledger = open_ledger(repo)
    report = metrics(ledger, line=line, since=since.date() if since else None,
                     per_artifact=per_artifact, use_cache=not no_cache)
    if as_json:
        echo_json(report)
    else:
        render(report)


def render(m: dict[str, Any]) -> None:
    """Print the report as rich tables."""
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    scope = ", ".join(f"{k} {v}" for k, v in m["filters"].items() if v) or "all lines"
    console.print(f"[bold]Factory metrics[/bold] ({scope}): {m['artifacts']} artifact(s)"
                  + (f", {len(m['broken'])} broken (skipped)" if m["broken"] else ""))

    t = Table(title="Outcomes")
    t.add_column("metric")
    t.add_column("value", justify="right")
    t.add_column("detail")
    fpy, rw, cv = m["first_pass_yield"], m["rework"], m["contract_violations"]
    ad, sp, cost = m["adoption"], m["self_play"], m["cost"]
    tp = m["throughput"]
    t.add_row("published", str(tp["published"]), f"measured {tp['measured']}")
    t.add_row("first-pass yield", pct(fpy["rate"]), f"{fpy['first_pass']}/{fpy['verified']} verified")
    t.add_row("rework rate", pct(rw["rate"]),
              f"{rw['artifacts']}/{rw['started']} started, {rw['events']} rework(s)")
    t.add_row("contract-violation rate", pct(cv["rate"]),
              f"{cv['violations']} violation(s), {cv['handoffs']} handoff(s)")
    per = cost["per_published_usd"]
    t.add_row("cost per published", "-" if per is None else f"${per:.4f}",
              f"total ${cost['total']['usd']:.4f}, {cost['total']['tokens']} tokens, "
              f"{lead_time(cost['total']['wall_s'])} wall")
    t.add_row("adoption rate", pct(ad["rate"]), f"{ad['adopted']}/{ad['published']} published")
    t.add_row("self-play share", pct(sp["rate"]), ", ".join(sp["artifacts"][:5]))
    console.print(t)

    if tp["per_week"]:
        w = Table(title="Throughput per week")
        for col in ("week", "published", "measured"):
            w.add_column(col, justify="right" if col != "week" else "left")
        for row in tp["per_week"]:
            w.add_row(row["week"], str(row["published"]), str(row["measured"]))
        console.print(w)

    lt = m["lead_time_s"]
    lead = Table(title="Lead time (pass to pass, waiting included)")
    for col in ("stage", "n", "median", "p90"):
        lead.add_column(col, justify="left" if col == "stage" else "right")
    rows = [*lt["stages"].items(), ("to published", lt["to_published"]),
            ("end to end", lt["end_to_end"])]
    for name, d in rows:
        lead.add_row(name, str(d["n"]), lead_time(d["median"]), lead_time(d["p90"]))
    console.print(lead)

    q = Table(title="Queue (open artifacts by current stage)")
    statuses = ["pending", "running", "submitted", "awaiting_approval", "blocked"]
    q.add_column("stage")
    for s in [*statuses, "total"]:
        q.add_column(s, justify="right")
    for stage, counts in m["queue"]["stages"].items():
        q.add_row(stage, *(str(counts.get(s, 0)) for s in [*statuses, "total"]))
    console.print(q)
    if m["queue"]["unclosed"]:
        console.print(f"{m['queue']['unclosed']} artifact(s) finished the line but are not "
                      "closed (`gptme-factory close`)")

    c = Table(title="Output classification and cost per line")
    c.add_column("classification")
    c.add_column("artifacts", justify="right")
    c.add_column("published", justify="right")
    for name, counts in m["classification"].items():
        c.add_row(name, str(counts["artifacts"]), str(counts["published"]))
    console.print(c)
    pl = Table()
    for col in ("line", "cells", "tokens in", "tokens out", "USD", "wall"):
        pl.add_column(col, justify="left" if col == "line" else "right")
    for name, lc in cost["per_line"].items():
        pl.add_row(name, str(lc["cells"]), str(lc["tokens_in"]), str(lc["tokens_out"]),
                   f"{lc['usd']:.4f}", lead_time(lc["wall_s"]))
    console.print(pl)
    for a in m.get("per_artifact", []):
        console.print(f"  {a['artifact']}: {a['state']} ({a['classification']}"
                      + (", self-play" if a["self_play"] else "")
                      + f"), ${a['cost']['usd']:.4f}, end to end {lead_time(a['end_to_end_s'])}")
