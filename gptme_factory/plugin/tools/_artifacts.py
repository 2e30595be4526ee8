"""Tool functions for artifacts: intake, reading the board, doing and gating a stage, endings.

Thin adapters over ledger.py, engine.py, board.py and details.py; see `_functions` for the
full list the `factory` tool exposes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...views.present import log_lines, verdict_lines
from ._base import adapter, as_list, open_ledger, summary_of
from ._render import Reply, board, next_step

if TYPE_CHECKING:
    from ...ledger.store import Ledger

# -- intake and reading ---------------------------------------------------------------


@adapter
def factory_intake(
    title: str,
    demand: str,
    consumers: list[str] | str,
    acceptance: list[str] | str,
    problem: str = "",
    line: str | None = None,
    target: str | None = None,
) -> str:
    """Record a new artifact from real demand (a demand source, named consumers, acceptance criteria); returns its id.

    demand: where the demand comes from (gh:owner/repo#N, a task file, a person).
    consumers: who will use the result (one name or a list). acceptance: criteria (str or list).
    target: the project repository it changes (a name from `gptme-factory target list`);
    default: the target of the demand's GitHub repo, the line's, else the brain itself.
    """
    from ...line.intake import intake as record_intake
    from ...outcomes.demand import target_of_demand

    ledger = open_ledger()
    intake = record_intake(ledger, title=title, demand=demand, consumers=as_list(consumers),
                           acceptance=as_list(acceptance), problem=problem, line=line,
                           target=target or target_of_demand(ledger.config, demand))
    on = f", target {intake.target}" if intake.target else ""
    return Reply(f"{intake.artifact}  idea (line {intake.line}{on}). "
                 f"Next: {next_step(summary_of(ledger, intake.artifact))}",
                 value=intake.artifact, artifact=intake.artifact)


@adapter
def factory_status(include_final: bool = False) -> str:
    """The board: every active artifact with its state, stage and next step, and every running cell with its elapsed time, budget left and latest progress."""
    from ...views.status import load_summaries

    ledger = open_ledger()
    text = board(load_summaries(ledger), include_final=include_final)
    cells = _running_cells(ledger)
    return f"{text}\n{cells}" if cells else text


def _running_cells(ledger: Ledger) -> str:
    from ...cells import spawn as cells

    recs = cells.live(ledger)
    if not recs:
        return ""
    lines = [f"running cells ({len(recs)}):"]
    for rec in recs:
        o = cells.observation(ledger, rec)
        used = []
        if o.tokens is not None:
            used.append(f"{o.tokens:,} tokens")
        if o.cost_usd is not None:
            used.append(f"${o.cost_usd:.4f}")
        flags = " STALLED" if o.stalled else ""
        flags += f" stopping ({o.stopping})" if o.stopping else ""
        flags += "" if o.alive else " ended (collect it)"
        lines.append(f"- {o.cell} ({o.role}) {o.elapsed_s:.0f}s elapsed, {o.time_left_s:.0f}s "
                     f"left{', ' + ', '.join(used) if used else ''}{flags}")
        if o.latest:
            lines.append(f"    latest: {o.latest[:120]}")
    return "\n".join(lines)


@adapter
def factory_show(artifact: str) -> str:
    """Everything the ledger says about one artifact: intake, events, handoffs, cells, cost."""
    from ...views.details import artifact_record, render_artifact

    ledger = open_ledger()
    aid = ledger.resolve(artifact)
    text = render_artifact(artifact_record(ledger, aid))
    return f"{text}\n  next: {next_step(summary_of(ledger, aid))}"


@adapter
def factory_schema(role: str, example: bool = False) -> str:
    """The JSON Schema of the handoff a role (scout, builder, verifier, packager, analyst) must submit; example=True gives a filled-in example instead."""
    from ...ledger.schemas import example_for, schema_for

    repo = os.environ.get("GPTME_FACTORY_REPO") or "."
    if example:
        from ...ledger import yamlio

        return yamlio.dumps(example_for(role, repo)).decode()
    return json.dumps(schema_for(role, repo), indent=1)


@adapter
def factory_log(artifact: str) -> str:
    """The artifact's audit trail from git history: one commit per decision, its events listed."""
    ledger = open_ledger()
    aid = ledger.resolve(artifact)
    entries = ledger.history([aid])
    if not entries:
        return f"{aid}: no commits yet"
    return "\n".join(log_lines(entries))


@adapter
def factory_verify() -> str:
    """Check the ledger's integrity (hash chain, forks, schemas) since its last clean check; lists every problem."""
    from ...line.verify import verify

    ledger = open_ledger()
    found = verify(ledger)
    problems = found.problems
    if not problems:
        return f"ledger ok: {found.artifacts} artifact(s), no problems"
    return "\n".join([f"{len(problems)} problem(s):", *(f"- {p}" for p in problems)])


# -- doing a stage -----------------------------------------------------------------


@adapter
def factory_start(artifact: str, take_over: bool = False) -> str:
    """Start the artifact's current stage yourself (no spawned cell): returns the cell id to submit with.

    take_over: on a shared ledger, take over a claim whose lease expired with no handoff.
    """
    from ...line.claims import find_artifact
    from ...line.engine import refresh_base, start_stage

    ledger = open_ledger()
    aid = find_artifact(ledger, artifact)
    refresh_base(ledger, aid)  # a target's base, fetched from its remote
    st = start_stage(ledger, aid, take_over=take_over)
    note = f" Retry note: {st.retry_note}" if st.retry_note else ""
    base = (f" Build on base commit {st.base_commit} (branch from it; hand it over as `base`)."
            if st.role == "builder" and st.base_commit else "")
    return Reply(f"started stage {st.stage} of {st.artifact} (role {st.role}, attempt "
                 f"{st.attempt}); cell {st.cell}.{base} Do the work, then "
                 f"factory_submit({st.cell!r}, handoff) with a {st.role} handoff "
                 f"(factory_schema({st.role!r}, example=True) shows one).{note}",
                 value=st.cell, artifact=st.artifact, cell=st.cell)


def _read_handoff(handoff: str | Mapping[str, Any]) -> str | Mapping[str, Any]:
    """A handoff given as a mapping, YAML/JSON text, or the path of a YAML/JSON file."""
    if isinstance(handoff, str) and "\n" not in handoff and handoff.strip().endswith(
        (".yaml", ".yml", ".json")
    ):
        path = Path(handoff.strip())
        if path.is_file():
            return path.read_text(encoding="utf-8")
    return handoff


@adapter
def factory_submit(cell: str, handoff: str | dict[str, Any]) -> str:
    """Submit a cell's typed handoff (a dict, YAML/JSON text, or a .yaml/.json file path) for validation and recording."""
    from ...ledger.records import parse_cell_id
    from ...line.engine import submit

    ledger = open_ledger()
    stored = submit(ledger, cell, _read_handoff(handoff))
    assert stored is not None  # only a check-only submit records nothing
    artifact = parse_cell_id(cell)[0]
    notes = "".join(f" Note: {n}" for n in ledger.notes)
    return Reply(f"accepted: {stored.path}. Next: {next_step(summary_of(ledger, artifact))}"
                 f"{notes}", artifact=artifact, cell=cell, path=stored.path)


@adapter
def factory_advance(artifact: str) -> str:
    """Run the current stage's gate on its handoff (the factory runs the checks itself) and record the verdict."""
    from ...line.engine import advance

    ledger = open_ledger()
    aid = ledger.resolve(artifact)
    res = advance(ledger, aid)
    return "\n".join([*verdict_lines(res), f"next: {next_step(summary_of(ledger, aid))}"])


# -- people and endings ---------------------------------------------------------------


@adapter
def factory_review(artifact: str, decision: str, reviewer: str, comments: str = "") -> str:
    """Record a person's review of a stage awaiting approval: decision is approve, request_changes or reject."""
    from ...line.engine import review

    ledger = open_ledger()
    aid = ledger.resolve(artifact)
    stored = review(ledger, aid, reviewer, decision, comments)
    return f"recorded: {stored.path}. Next: {next_step(summary_of(ledger, aid))}"


@adapter
def factory_close(artifact: str, successor: str | None = None, terminal: str | None = None) -> str:
    """Close an artifact whose line is complete: name its successor artifact, or declare it terminal with a reason."""
    from ...line.engine import close

    ledger = open_ledger()
    aid = ledger.resolve(artifact)
    close(ledger, aid, successor=successor, terminal=terminal)
    then = f"successor {successor}" if successor else f"terminal: {terminal}"
    return f"{aid} closed ({then})"


def _finish(artifact: str, kind: str, reason: str) -> str:
    from ...line.engine import finish

    ledger = open_ledger()
    aid = ledger.resolve(artifact)
    finish(ledger, aid, kind, reason)
    return f"{aid} {kind}: {reason}"


@adapter
def factory_reject(artifact: str, reason: str) -> str:
    """Reject an artifact (it should not be built), with the reason."""
    return _finish(artifact, "rejected", reason)


@adapter
def factory_abandon(artifact: str, reason: str) -> str:
    """Abandon an artifact (work stops), with the reason."""
    return _finish(artifact, "abandoned", reason)
