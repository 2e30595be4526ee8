"""The factory tool functions the agent calls through gptme's `ipython` tool.

Each is a thin adapter over the core API (ledger, engine, board, details, runtime, cells,
packaging): it opens the ledger of the brain repo gptme runs in, calls one core function,
and returns a short text (a `Reply`). An expected failure (`FactoryError`) comes back as a
sentence starting with "error:" that says what to do; only bugs raise. The first paragraph
of each docstring is what the model sees in the tool's function list.

The repo is the current directory (gptme's workspace) unless `GPTME_FACTORY_REPO` names
another; the ledger directory comes from `[plugin.gptme_factory] ledger_dir`.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ._render import Reply, board, next_step

if TYPE_CHECKING:
    from ..ledger import Ledger

F = TypeVar("F", bound=Callable[..., str])


def _adapter(func: F) -> F:
    """Turn FactoryError into an actionable sentence; wrap every answer in a Reply."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> str:
        from ..errors import FactoryError

        try:
            result = func(*args, **kwargs)
        except FactoryError as exc:
            return Reply(f"error: {exc}", ok=False)
        return result if isinstance(result, Reply) else Reply(result)

    return wrapper  # type: ignore[return-value]


def brain_path(start: str | Path) -> tuple[Path, bool]:
    """The brain repo for a working directory, and whether it is a cell's worktree.

    Cells work in linked worktrees inside the brain repo's git directory; their checkout holds
    a stale copy of the ledger on the cell's branch, so the ledger is always the main one.
    """
    from ..gitstore import GitRepo

    repo = GitRepo.discover(start)
    if repo.git_dir != repo.common_dir and repo.root.is_relative_to(repo.common_dir):
        return repo.common_dir.parent, True
    return repo.root, False


def _ledger() -> Ledger:
    from ..ledger import Ledger
    from ..plugin import settings

    root, _ = brain_path(os.environ.get("GPTME_FACTORY_REPO") or ".")
    return Ledger.open(root, settings.ledger_dir)


def _as_list(value: str | list[str] | tuple[str, ...] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def _summary_of(ledger: Ledger, artifact: str) -> Any:
    from ..board import summarize_artifact

    return summarize_artifact(ledger, artifact)


def _optional(module: str, attr: str, what: str) -> Any:
    """A core function from a module another part of the factory provides (or a clear error)."""
    from ..errors import FactoryError

    try:
        return getattr(importlib.import_module(f"gptme_factory.{module}"), attr)
    except (ImportError, AttributeError):
        raise FactoryError(
            f"{what} is not available in this gptme-factory installation "
            f"(gptme_factory.{module}.{attr} is missing): upgrade gptme-factory"
        ) from None


# -- intake and reading ---------------------------------------------------------------


@_adapter
def factory_intake(
    title: str,
    demand: str,
    consumers: list[str] | str,
    acceptance: list[str] | str,
    problem: str = "",
    line: str | None = None,
) -> str:
    """Record a new artifact from real demand (a demand source, named consumers, acceptance criteria); returns its id.

    demand: where the demand comes from (gh:owner/repo#N, a task file, a person).
    consumers: who will use the result (one name or a list). acceptance: criteria (str or list).
    """
    ledger = _ledger()
    intake = ledger.create(title=title, demand=demand, consumers=_as_list(consumers),
                           acceptance=_as_list(acceptance), problem=problem, line=line)
    return Reply(f"{intake.artifact}  idea (line {intake.line}). "
                 f"Next: {next_step(_summary_of(ledger, intake.artifact))}",
                 artifact=intake.artifact)


@_adapter
def factory_status(include_final: bool = False) -> str:
    """The board: every active artifact with its state, stage and next step, and every running cell with its elapsed time, budget left and latest progress."""
    from ..board import load_summaries

    ledger = _ledger()
    text = board(load_summaries(ledger), include_final=include_final)
    cells = _running_cells(ledger)
    return f"{text}\n{cells}" if cells else text


def _running_cells(ledger: Ledger) -> str:
    try:
        cells = importlib.import_module("gptme_factory.cells")
    except ImportError:
        return ""
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


@_adapter
def factory_show(artifact: str) -> str:
    """Everything the ledger says about one artifact: intake, events, handoffs, cells, cost."""
    from ..details import artifact_record, render_artifact

    ledger = _ledger()
    aid = ledger.resolve(artifact)
    text = render_artifact(artifact_record(ledger, aid))
    return f"{text}\n  next: {next_step(_summary_of(ledger, aid))}"


@_adapter
def factory_schema(role: str) -> str:
    """The JSON Schema of the handoff a role (scout, builder, verifier, packager, analyst) must submit."""
    from ..schemas import schema_for

    repo = os.environ.get("GPTME_FACTORY_REPO") or "."
    return json.dumps(schema_for(role, repo), indent=1)


@_adapter
def factory_log(artifact: str) -> str:
    """The artifact's audit trail from git history: one commit per ledger event."""
    ledger = _ledger()
    aid = ledger.resolve(artifact)
    entries = ledger.repo.log(f"{ledger.rel}/artifacts/{aid}")
    if not entries:
        return f"{aid}: no commits yet"
    return "\n".join(f"{e.commit[:10]} {e.time}  {e.subject}" for e in entries)


@_adapter
def factory_verify() -> str:
    """Check the whole ledger's integrity (hash chain, forks, schemas); lists every problem."""
    from ..verify import verify_ledger

    ledger = _ledger()
    problems = verify_ledger(ledger)
    if not problems:
        return f"ledger ok: {len(ledger.artifact_ids())} artifact(s), no problems"
    return "\n".join([f"{len(problems)} problem(s):", *(f"- {p}" for p in problems)])


# -- stages and cells -----------------------------------------------------------------


@_adapter
def factory_start(artifact: str) -> str:
    """Start the artifact's current stage yourself (no spawned cell): returns the cell id to submit with."""
    from ..engine import start_stage

    ledger = _ledger()
    st = start_stage(ledger, ledger.resolve(artifact))
    note = f" Retry note: {st.retry_note}" if st.retry_note else ""
    return Reply(f"started stage {st.stage} of {st.artifact} (role {st.role}, attempt "
                 f"{st.attempt}); cell {st.cell}. Do the work, then factory_submit({st.cell!r}, "
                 f"handoff) with a {st.role} handoff (factory_schema({st.role!r}) shows its "
                 f"fields).{note}", artifact=st.artifact, cell=st.cell)


@_adapter
def factory_progress(cell: str, note: str) -> str:
    """Report a cell's latest useful progress (shown on the board; not a commit)."""
    try:
        from ..cells import progress
    except ImportError:  # the cells engine is optional for this: fall back to the runtime
        progress = _record_progress
    progress(_ledger(), cell, note)
    return f"progress noted for {cell}"


def _record_progress(ledger: Ledger, cell: str, note: str) -> None:
    from ..errors import UsageError
    from ..records import parse_cell_id
    from ..runtime import record_progress

    try:
        artifact, _ = parse_cell_id(cell)
    except ValueError as exc:
        raise UsageError(f"{exc}; use the cell id from your brief") from None
    ledger.resolve(artifact)
    record_progress(ledger, cell, note)


def _read_handoff(handoff: str | Mapping[str, Any]) -> str | Mapping[str, Any]:
    """A handoff given as a mapping, YAML/JSON text, or the path of a YAML/JSON file."""
    if isinstance(handoff, str) and "\n" not in handoff and handoff.strip().endswith(
        (".yaml", ".yml", ".json")
    ):
        path = Path(handoff.strip())
        if path.is_file():
            return path.read_text(encoding="utf-8")
    return handoff


@_adapter
def factory_submit(cell: str, handoff: str | dict[str, Any]) -> str:
    """Submit a cell's typed handoff (a dict, YAML/JSON text, or a .yaml/.json file path) for validation and recording."""
    from ..engine import submit

    ledger = _ledger()
    stored = submit(ledger, cell, _read_handoff(handoff))
    artifact = stored.record.artifact
    return Reply(f"accepted: {stored.path}. Next: {next_step(_summary_of(ledger, artifact))}",
                 artifact=artifact, cell=cell, path=stored.path)


def _advance_text(res: Any) -> str:
    verdict = "passed" if res.passed else "FAILED"
    lines = [f"{res.artifact}: gate {res.stage} {verdict} -> state {res.state}"]
    checks = res.outcome.checks if res.outcome else []
    for c in checks:
        code = "timeout" if c.timed_out else c.exit_code
        lines.append(f"  $ {c.command}  exit {code}  {c.duration_s:.1f}s")
    lines += [f"  - {r}" for r in res.reasons]
    return "\n".join(lines)


@_adapter
def factory_advance(artifact: str) -> str:
    """Run the current stage's gate on its handoff (the factory runs the checks itself) and record the verdict."""
    from ..engine import advance

    ledger = _ledger()
    aid = ledger.resolve(artifact)
    res = advance(ledger, aid)
    return f"{_advance_text(res)}\nnext: {next_step(_summary_of(ledger, aid))}"


def _cells() -> Any:
    """The cells engine (cells.py), or a clear error when this installation lacks it."""
    from ..errors import FactoryError

    try:
        return importlib.import_module("gptme_factory.cells")
    except ImportError as exc:
        raise FactoryError(f"spawning cells is not available here ({exc}): upgrade "
                           "gptme-factory") from None


@_adapter
def factory_spawn(artifact: str, model: str | None = None, timeout_s: float | None = None) -> str:
    """Spawn a bounded cell (gptodo + tmux + gptme) for the artifact's current stage; returns the cell id.

    model: the cell's model (default: [plugin.gptme_factory] model, then gptme's default).
    timeout_s: wall-clock budget (default: the stage's budget in factory.yaml).
    """
    from ..plugin import settings

    cells = _cells()
    ledger = _ledger()
    aid = ledger.resolve(artifact)
    opts = cells.SpawnOptions(model=model or settings.model,
                              timeout_s=timeout_s if timeout_s is not None else settings.timeout_s,
                              max_tokens=settings.max_tokens, max_cost_usd=settings.max_cost_usd)
    rec = cells.spawn(ledger, aid, opts)
    where = f", tmux session {rec.session}" if rec.session else ""
    limits = [f"{rec.timeout_s:.0f} s"]
    if rec.max_tokens:
        limits.append(f"{rec.max_tokens:,} tokens")
    if rec.max_cost_usd is not None:
        limits.append(f"${rec.max_cost_usd:g}")
    return Reply(f"spawned cell {rec.cell}: {rec.role} for stage {rec.stage} ({rec.backend}"
                 f"{where}); budget {', '.join(limits)}. Watch with factory_status(); "
                 f"when it ends, factory_collect({aid!r}) records it and runs the gate.",
                 artifact=aid, cell=rec.cell)


def _reaped_text(r: Any) -> list[str]:
    cost = f", ${r.cost_usd:.4f}" if r.cost_usd is not None else ""
    tokens = f", {r.tokens:,} tokens" if r.tokens is not None else ""
    lines = [f"{r.cell}: {r.outcome} after {r.wall_s:.0f} s{tokens}{cost}"
             + (f" ({r.reason})" if r.reason else "")]
    if r.advanced is not None:
        lines += ["  " + ln for ln in _advance_text(r.advanced).splitlines()]
    if r.gate_note:
        lines.append(f"  gate: {r.gate_note}")
    return lines


@_adapter
def factory_collect(artifact: str | None = None) -> str:
    """Collect finished cells: enforce budgets, record each ended cell (a cell without a handoff fails its attempt) and run its gate."""
    cells = _cells()
    ledger = _ledger()
    aid = ledger.resolve(artifact) if artifact else None
    reaped, said = cells.collect(ledger, [aid] if aid else None)
    lines = list(said)
    for r in reaped:
        lines += _reaped_text(r)
    still = [rec.cell for rec in cells.live(ledger) if aid is None or rec.artifact == aid]
    if still:
        lines.append(f"{len(still)} cell(s) still running: {', '.join(still)}")
    elif not reaped:
        lines.append("no cells to collect")
    if aid:
        lines.append(f"next: {next_step(_summary_of(ledger, aid))}")
    return "\n".join(lines)


@_adapter
def factory_kill(cell: str, reason: str = "") -> str:
    """Stop a running cell now and record it as killed (its attempt fails)."""
    cells = _cells()
    res = cells.kill(_ledger(), cell, reason)
    return f"{cell}: killed" + (f" ({res.reason})" if res is not None and res.reason else "")


def _run_window(max_wait_s: float | None) -> float:
    """How long factory_run may block: under gptme's ipython cell timeout, which kills the cell."""
    raw = os.environ.get("GPTME_IPYTHON_TIMEOUT", "600")
    try:
        cell_timeout = float(raw)
    except ValueError:
        cell_timeout = 600.0
    limit = max(30.0, cell_timeout - 60) if cell_timeout > 0 else float("inf")
    return min(max_wait_s, limit) if max_wait_s is not None else min(540.0, limit)


@_adapter
def factory_run(artifact: str, model: str | None = None, until: str | None = None,
                publish: str | None = None, max_wait_s: float | None = None) -> str:
    """Drive the artifact through its remaining stages with bounded cells (spawn, collect, gate, next stage); resumable.

    Returns when the artifact is done, blocked or waits for a person, or after max_wait_s
    (default 540 s, under gptme's ipython timeout): cells keep running; call it again to go
    on. until: stop once that stage passed. publish: note|pr|release to publish the release
    package when the package gate needs it (default: stop and let a person decide).
    """
    import time

    from ..plugin import settings

    cells = _cells()
    foreman = _optional("foreman", "Foreman", "running the line")
    ledger = _ledger()
    aid = ledger.resolve(artifact)
    opts = cells.SpawnOptions(model=model or settings.model, timeout_s=settings.timeout_s,
                              max_tokens=settings.max_tokens, max_cost_usd=settings.max_cost_usd)
    events: list[str] = []
    deadline = time.monotonic() + _run_window(max_wait_s)
    run = foreman(ledger, [aid], until=until, opts=opts, publish=publish,
                  on_event=events.append, should_stop=lambda: time.monotonic() > deadline)
    stopped = run.run()
    lines = events[-40:]
    if not stopped:
        lines.append(f"still running after {_run_window(max_wait_s):.0f} s; the cells keep "
                     f"working: factory_status() to watch, factory_run({aid!r}) to go on")
    lines.append(f"next: {next_step(_summary_of(ledger, aid))}")
    return Reply("\n".join(lines), artifact=aid, done=bool(stopped))


# -- packaging, measuring, lines -------------------------------------------------------


@_adapter
def factory_package(artifact: str, target: str = "note", where: str | None = None,
                    tag: str | None = None) -> str:
    """Render the release package to files and publish it (target note, pr or release); the package gate needs this.

    where: record a publication made by hand (a PR URL, a tag, a path) instead of publishing.
    """
    from ..packaging import publish

    ledger = _ledger()
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
    from ..measure import parse_adoption

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


@_adapter
def factory_measure(artifact: str, adoption: list[str] | dict[str, str] | None = None,
                    lessons: list[str] | str | None = None, successor: str | None = None,
                    terminal: str | None = None, close: bool = False) -> str:
    """Record the outcome: adoption per named consumer ("erik=used:said so"), lessons, and a successor or terminal reason.

    Consumers whose adoption is not stated are looked up with gh (demand issue closed, PR
    merged) when it is available. close=True also closes the artifact.
    """
    from ..measure import measure

    ledger = _ledger()
    aid = ledger.resolve(artifact)
    res = measure(ledger, aid, adoption=_adoption(adoption or []), lessons=_as_list(lessons),
                  successor=successor, terminal=terminal, close=close)
    lines = [f"{aid}: measured -> {res.state}" + (" (closed)" if res.closed else "")]
    lines += [f"  {a['consumer']}: {a['status']} ({a['evidence']})" for a in res.report["adoption"]]
    t = res.cost.total
    lines.append(f"  cost: {t.cells} cell(s), {t.tokens_in}+{t.tokens_out} tokens, ${t.usd:.4f}")
    if not res.closed:
        lines.append(f"next: {next_step(_summary_of(ledger, aid))}")
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


@_adapter
def factory_metrics(line: str | None = None) -> str:
    """Is the line worth running: throughput, lead time, first-pass yield, rework, cost per published artifact, adoption."""
    from ..metrics import metrics

    m = metrics(_ledger(), line=line)
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


@_adapter
def factory_park(line: str, triggers: list[str] | str, reason: str = "") -> str:
    """Park a production line: it refuses intake until one of its restart triggers fires."""
    from ..lines import park

    park(_ledger(), line, _as_list(triggers), reason=reason)
    return f"line {line} parked until: " + "; ".join(_as_list(triggers))


@_adapter
def factory_unpark(line: str, because: str) -> str:
    """Resume a parked line, saying which restart trigger fired."""
    from ..lines import unpark

    unpark(_ledger(), line, because)
    return f"line {line} active again ({because})"


# -- people and endings ---------------------------------------------------------------


@_adapter
def factory_review(artifact: str, decision: str, reviewer: str, comments: str = "") -> str:
    """Record a person's review of a stage awaiting approval: decision is approve, request_changes or reject."""
    from ..engine import review

    ledger = _ledger()
    aid = ledger.resolve(artifact)
    stored = review(ledger, aid, reviewer, decision, comments)
    return f"recorded: {stored.path}. Next: {next_step(_summary_of(ledger, aid))}"


@_adapter
def factory_close(artifact: str, successor: str | None = None, terminal: str | None = None) -> str:
    """Close an artifact whose line is complete: name its successor artifact, or declare it terminal with a reason."""
    from ..engine import close

    ledger = _ledger()
    aid = ledger.resolve(artifact)
    close(ledger, aid, successor=successor, terminal=terminal)
    then = f"successor {successor}" if successor else f"terminal: {terminal}"
    return f"{aid} closed ({then})"


@_adapter
def factory_reject(artifact: str, reason: str) -> str:
    """Reject an artifact (it should not be built), with the reason."""
    from ..engine import finish

    ledger = _ledger()
    aid = ledger.resolve(artifact)
    finish(ledger, aid, "rejected", reason)
    return f"{aid} rejected: {reason}"


@_adapter
def factory_abandon(artifact: str, reason: str) -> str:
    """Abandon an artifact (work stops), with the reason."""
    from ..engine import finish

    ledger = _ledger()
    aid = ledger.resolve(artifact)
    finish(ledger, aid, "abandoned", reason)
    return f"{aid} abandoned: {reason}"


FUNCTIONS: list[Callable[..., str]] = [
    factory_intake,
    factory_status,
    factory_show,
    factory_schema,
    factory_start,
    factory_spawn,
    factory_progress,
    factory_submit,
    factory_advance,
    factory_collect,
    factory_kill,
    factory_run,
    factory_package,
    factory_measure,
    factory_metrics,
    factory_park,
    factory_unpark,
    factory_review,
    factory_close,
    factory_reject,
    factory_abandon,
    factory_log,
    factory_verify,
]
