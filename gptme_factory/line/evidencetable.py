"""The evidence table a reviewer reads: why the factory believes a patch, in one glance.

`rows(evidence)` gives one row per check a gate ran: its id, command, the acceptance
criteria it covers, what it did at the base and at the head commit (exit codes of every
run; `timed out`), the head run's duration and the row's verdict (`fail-to-pass`,
`pass-to-pass`, `flaky`, ...). `markdown(evidence)` renders it for a PR body, `text(...)` for
`show`. Both start with the commits and tree ids the checks ran on. Pure: no I/O.
"""

from __future__ import annotations

from ..ledger.records import Evidence, Observation

HEADERS = ("check", "criteria", "base", "head", "duration", "verdict")


def _side(obs: Observation | None) -> str:
    if obs is None:
        return "-"
    codes = ["timed out" if c is None else f"exit {c}" for c in obs.exit_codes]
    return " / ".join(codes)


def rows(evidence: Evidence) -> list[tuple[str, str, str, str, str, str]]:
    """One row per check: command, criteria, base, head, duration, verdict."""
    out: list[tuple[str, str, str, str, str, str]] = []
    for r in evidence.rows:
        crit = ", ".join(str(i) for i in r.criteria) or "-"
        took = r.head or r.base
        duration = f"{took.duration_s:.1f} s" if took else "-"
        out.append((f"{r.command} ({r.check})", crit, _side(r.base), _side(r.head), duration,
                    r.verdict))
    return out


def _commits(evidence: Evidence) -> str:
    def one(what: str, commit: str | None, tree: str | None) -> str:
        return f"{what} `{commit[:12]}` (tree `{(tree or '?')[:12]}`)" if commit else ""

    parts = [p for p in (one("base", evidence.base_commit, evidence.base_tree),
                         one("head", evidence.head_commit, evidence.head_tree)) if p]
    fixed = "" if evidence.contract_fixed else "; no contract was fixed before the build"
    return f"evidence: {evidence.mode}; " + ", ".join(parts) + fixed


def markdown(evidence: Evidence) -> list[str]:
    """The table as Markdown lines (a PR body)."""
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = [_commits(evidence), "", "| " + " | ".join(HEADERS) + " |",
             "|" + "---|" * len(HEADERS)]
    for row in rows(evidence):
        first, *rest = row
        lines.append(f"| `{cell(first)}` | " + " | ".join(cell(x) for x in rest) + " |")
    return lines


def text(evidence: Evidence, indent: str = "    ") -> list[str]:
    """The table as aligned plain-text lines (`show`)."""
    table = [HEADERS, *rows(evidence)]
    widths = [min(max(len(r[i]) for r in table), 60) for i in range(len(HEADERS))]
    out = [indent + _commits(evidence)]
    for r in table:
        out.append(indent + "  ".join(
            (v if len(v) <= 60 else v[:57] + "...").ljust(w) for v, w in zip(r, widths, strict=True)
        ).rstrip())
    return out
