"""Tool functions for the end of the line: packaging, measuring, metrics, parking lines.

Thin adapters over packaging.py, measure.py, metrics.py and lines.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._base import adapter, as_list, open_ledger, summary_of
from ._render import next_step

# -- packaging, measuring, lines -------------------------------------------------------


@adapter
def factory_package(artifact: str, target: str = "note", where: str | None = None,
                    tag: str | None = None) -> str:
    """Render the release package to files and publish it (target note, pr or release); the package gate needs this.

    where: record a publication made by hand (a PR URL, a tag, a path) instead of publishing.
    """
    from ...outcomes.packaging import publish

    ledger = open_ledger()
    aid = ledger.resolve(artifact)
    res = publish(ledger, aid, target=target, where=where, tag=tag)
    lines = [f"{aid}: {res.package.change_type}, suggested bump {res.package.version_bump}"]
    lines += [f"  wrote {f}" for f in res.written]
    if res.published:
        lines.append(f"published ({res.target}): {res.where}. Next: factory_advance({aid!r})")
    else:
        lines.append(f"not published: {res.reason}")
        lines += [f"  {c}" for c in res.commands]
        lines.append(f"then record it: factory_package({aid!r}, {target!r}, where=URL)")
    return "\n".join(lines)


def _adoption(value: Any) -> list[tuple[str, str, str]]:
    """Adoption from "CONSUMER=STATUS[:EVIDENCE]" strings, a dict or consumer/status dicts."""
    from ...outcomes.measure import parse_adoption

    if isinstance(value, Mapping):
        items: list[Any] = [f"{k}={v}" for k, v in value.items()]
    elif isinstance(value, str):
        items = [value]
    else:
        items = list(value or [])
    out = []
    for item in items:
        if isinstance(item, Mapping):
            out.append((str(item.get("consumer", "")), str(item.get("status", "")),
                        str(item.get("evidence", ""))))
        else:
            out.append(parse_adoption(str(item)))
    return out


@adapter
def factory_measure(artifact: str, adoption: list[str] | dict[str, str] | None = None,
                    lessons: list[str] | str | None = None, successor: str | None = None,
                    terminal: str | None = None, close: bool = False) -> str:
    """Record the outcome: adoption per named consumer ("erik=used:said so"), lessons, and a successor or terminal reason.

    Consumers whose adoption is not stated are looked up with gh (demand issue closed, PR
    merged) when it is available. close=True also closes the artifact.
    """
    from ...outcomes.measure import measure

    ledger = open_ledger()
    aid = ledger.resolve(artifact)
    res = measure(ledger, aid, adoption=_adoption(adoption or []), lessons=as_list(lessons),
                  successor=successor, terminal=terminal, close=close)
    lines = [f"{aid}: measured -> {res.state}" + (" (closed)" if res.closed else "")]
    lines += [f"  {a['consumer']}: {a['status']} ({a['evidence']})" for a in res.report["adoption"]]
    t = res.cost.total
    lines.append(f"  cost: {t.cells} cell(s), {t.tokens_in}+{t.tokens_out} tokens, ${t.usd:.4f}")
    if not res.closed:
        lines.append(f"next: {next_step(summary_of(ledger, aid))}")
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


@adapter
def factory_metrics(line: str | None = None) -> str:
    """Is the line worth running: throughput, lead time, first-pass yield, rework, cost per published artifact, adoption."""
    from ...views.factcache import metrics

    m = metrics(open_ledger(), line=line)
    lead = m["lead_time_s"]["end_to_end"]
    median = lead.get("median") if isinstance(lead, dict) else None
    cost = m["cost"]
    return "\n".join([
        f"{m['artifacts']} artifact(s); published {m['throughput']['published']}, "
        f"measured {m['throughput']['measured']}",
        f"first-pass yield {_pct(m['first_pass_yield']['rate'])}, rework rate "
        f"{_pct(m['rework']['rate'])}, contract violations {_pct(m['contract_violations']['rate'])}",
        "lead time end to end (median): " + (f"{median / 3600:.1f} h" if median is not None else "-"),
        "cost per published artifact: " + (f"${cost['per_published_usd']:.4f}"
                                           if cost["per_published_usd"] is not None else "-"),
        f"adoption {_pct(m['adoption']['rate'])}, self-play {_pct(m['self_play']['rate'])}",
        "(`gptme-factory metrics` has the full tables)",
    ])


@adapter
def factory_park(line: str, triggers: list[str] | str, reason: str = "") -> str:
    """Park a production line: it refuses intake until one of its restart triggers fires."""
    from ...line.lifecycle import park

    park(open_ledger(), line, as_list(triggers), reason=reason)
    return f"line {line} parked until: " + "; ".join(as_list(triggers))


@adapter
def factory_unpark(line: str, because: str) -> str:
    """Resume a parked line, saying which restart trigger fired."""
    from ...line.lifecycle import unpark

    unpark(open_ledger(), line, because)
    return f"line {line} active again ({because})"
