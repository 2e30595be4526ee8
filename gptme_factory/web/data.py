"""The board's data: plain JSON-able dicts built from the core, for the page and `/api`.

- `board_data`: lines as swimlanes, each with its stages as columns (plus `done`: the line is
  complete but the artifact not closed, and `closed`: closed, rejected or abandoned), each
  column's artifacts as cards; the running cells; the metrics report (the numbers of
  `metrics --json`). Summaries and metric facts come from the status cache's engine in one
  freshness check (statuscache.cached), so a warm board re-reads nothing that did not change.
- `artifact_data`: one artifact's page: its record (details.artifact_record), a timeline with
  each event's commit (found by the `Factory-Hash` trailer the ledger writes), the handoffs,
  the gate evidence and the cost per cell.
- `commit_data`: one commit's ledger part (message and diff), for the timeline's links.
- `change_token`: a cheap signal that moves when anything the board shows may have changed.

Cards are sorted so what needs attention comes first (a person, a problem, a running cell,
then the longest waiting); a column shows at most `limit` of them and counts the rest. Every
string goes through the Redactor (no machine paths, no secrets); times are ISO text and
durations seconds: formatting is the templates' job.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from operator import attrgetter
from pathlib import Path
from typing import Any

from ..cells.watch import Observation
from ..errors import FactoryError, UsageError
from ..ledger.gitstore import LogEntry
from ..ledger.store import Ledger
from ..views.cellboard import budget_left, observations, state_of
from ..views.factcache import cached_report, facts_kind
from ..views.present import FINAL_STATES, event_line
from ..views.status import load_line_statuses
from ..views.statuscache import SUMMARIES, Pass, config_values
from ..views.summary import ArtifactSummary
from .redact import Redactor

DEFAULT_LIMIT = 50
DONE, FINAL, OTHER = "_done", "_final", "_other"
_COMMIT_RE = re.compile(r"^[0-9a-f]{7,64}$")
_GITHUB_RE = re.compile(
    r"^(?:https?://(?:[^@/]+@)?github\.com/|git@github\.com:|ssh://git@github\.com/)"
    r"([A-Za-z0-9_.-]+)/([A-Za-z0-9_.-]+?)(?:\.git)?/?$")
SELF_PLAY_LISTED = 20
_SINCE, _LAST_AT, _STATUS = attrgetter("stage_since"), attrgetter("last_at"), attrgetter("status")  # the page lists this many self-play ids; /api/metrics has them all


def redactor_for(ledger: Ledger) -> Redactor:
    """The Redactor for pages of this ledger."""
    return Redactor(ledger.repo.root, [(ledger.repo.worktree_base(), "<worktrees>"),
                                       (ledger.repo.common_dir, "<git>")])


def _seconds(now: datetime, iso: str) -> float | None:
    if not iso:
        return None
    try:
        return max(0.0, (now - datetime.fromisoformat(iso)).total_seconds())
    except ValueError:
        return None


def github_base(ledger: Ledger) -> str | None:
    """https://github.com/OWNER/REPO when `origin` is on GitHub (credentials never kept)."""
    url = ledger.repo.remote_url("origin")
    m = _GITHUB_RE.match(url or "")
    return f"https://github.com/{m.group(1)}/{m.group(2)}" if m else None


# -- the board --------------------------------------------------------------------------


def _card(s: ArtifactSummary, now: datetime, cell: Observation | None) -> dict[str, Any]:
    running = None
    if cell is not None:
        running = {"cell": cell.cell, "elapsed_s": cell.elapsed_s, "stalled": cell.stalled,
                   "state": state_of(cell), "latest": cell.latest or None}
    return {
        "artifact": s.artifact, "title": s.title, "line": s.line, "state": s.state,
        "stage": s.stage, "status": s.status, "cell": s.cell,
        "in_stage_s": _seconds(now, s.stage_since or s.created_at),
        "attempt": s.attempt, "max_attempts": s.max_attempts,
        "cost_usd": s.cost_usd, "tokens": s.tokens, "target": s.target,
        "demand": s.demand, "consumers": list(s.consumers),
        "blocked_reason": s.blocked_reason, "needs_person": s.needs_person,
        "retry_note": s.retry_note, "problem": s.problem,
        "last_event": s.last_event, "last_at": s.last_at, "created_at": s.created_at,
        "events": s.events, "running": running,
    }


def _urgent(s: ArtifactSummary) -> int:
    """Sort rank in a column: a person or a problem first, then work in flight, then the rest."""
    if s.needs_person or s.problem:
        return 0
    return 1 if s.status in ("running", "submitted") else 2


_NO_STAGE: dict[str, Any] = {"name": None, "role": None, "gate": None, "produces": None,
                             "attempts": None, "approval": False, "hint": None}


@dataclass
class _Column:
    key: str
    title: str
    info: dict[str, Any]
    items: list[ArtifactSummary]
    ranks: tuple[list[ArtifactSummary], ...] = field(default_factory=lambda: ([], [], []))

    def ordered(self) -> list[ArtifactSummary]:
        """Most urgent first; within a rank, the longest in its stage first (closed: latest)."""
        if self.key == FINAL:
            return sorted(self.items, key=_LAST_AT, reverse=True)
        return [s for rank in self.ranks for s in sorted(rank, key=_SINCE)]


def _columns_for(stages: list[dict[str, Any]]) -> dict[str, _Column]:
    cols = {st["name"]: _Column(st["name"], st["name"], st, []) for st in stages}
    cols[DONE] = _Column(DONE, "done", {"hint": "line complete: close it (successor or terminal)"}, [])
    cols[FINAL] = _Column(FINAL, "closed", {"hint": "closed, rejected or abandoned"}, [])
    return cols


def _lanes(ledger: Ledger, summaries: list[ArtifactSummary], statuses: dict[str, Any],
           now: datetime, limit: int, cells: dict[str, Observation],
           totals: dict[str, int]) -> list[dict[str, Any]]:
    """The swimlanes; counts what needs attention into `totals` on the way."""
    cfg = ledger.config
    order = [cfg.default_line, *sorted(n for n in cfg.lines if n != cfg.default_line)]
    lanes: dict[str, dict[str, _Column]] = {}
    infos: dict[str, dict[str, Any]] = {}
    for name in order:
        line = cfg.lines[name]
        stages = [{"name": st.name, "role": st.role, "gate": st.gate, "produces": st.produces,
                   "attempts": st.attempts, "approval": st.approval} for st in line.stages]
        lanes[name] = _columns_for(stages)
        infos[name] = {"description": line.description}
    opened = needs = blocked = broken = 0
    for s in summaries:
        if s.needs_person is not None:
            needs += 1
        if s.status == "blocked":
            blocked += 1
        if s.state == "broken":
            broken += 1
            cols = lanes.setdefault("?", {"broken": _Column("broken", "broken", {}, [])})
            infos.setdefault("?", {"description": "artifacts whose ledger files fail to read: "
                                                  "run `gptme-factory verify`"})
            cols["broken"].items.append(s)
            cols["broken"].ranks[0].append(s)
            continue
        found = lanes.get(s.line)
        if found is None:  # a line no longer in factory.yaml
            found = lanes[s.line] = _columns_for([])
            infos[s.line] = {"description": "this line is not in factory.yaml any more"}
        cols = found
        if s.state in FINAL_STATES:
            key = FINAL
        else:
            opened += 1
            key = DONE if s.stage is None else s.stage if s.stage in cols else OTHER
        col = cols.get(key)
        if col is None:
            col = cols[key] = _Column(key, "other stages", {"hint": "stages not in the line"}, [])
        col.items.append(s)
        col.ranks[_urgent(s)].append(s)
    totals.update(open=opened, needs_person=needs, blocked=blocked, broken=broken)
    out = []
    for name, cols in lanes.items():
        columns = []
        for col in cols.values():
            ordered = col.ordered()
            shown = ordered if limit <= 0 else ordered[:limit]
            counts = dict(Counter(map(_STATUS, col.items)))
            columns.append({
                "key": col.key, "title": col.title, **_NO_STAGE, **col.info,
                "count": len(col.items),
                "counts": counts, "hidden": len(col.items) - len(shown),
                "cards": [_card(s, now, cells.get(s.cell or "")) for s in shown],
            })
        status = statuses.get(name)
        out.append({"line": name, **infos[name],
                    "status": status.to_json() if status else None,
                    "note": status.note() if status else None,
                    "artifacts": sum(c["count"] for c in columns), "columns": columns})
    return out


def _cell(o: Observation, titles: dict[str, str]) -> dict[str, Any]:
    def frac(used: float | None, bound: float | None) -> float | None:
        if not bound or used is None:
            return None
        return round(min(1.0, max(0.0, used / bound)), 4)

    return {
        "cell": o.cell, "artifact": o.artifact, "title": titles.get(o.artifact, ""),
        "stage": o.stage, "role": o.role, "backend": o.backend, "alive": o.alive,
        "state": state_of(o), "stalled": o.stalled, "stopping": o.stopping,
        "elapsed_s": o.elapsed_s, "timeout_s": o.timeout_s, "time_left_s": o.time_left_s,
        "time_frac": frac(o.elapsed_s, o.timeout_s),
        "tokens": o.tokens, "tokens_measured": o.tokens_measured, "max_tokens": o.max_tokens,
        "tokens_frac": frac(o.tokens, o.max_tokens),
        "cost_usd": o.cost_usd, "max_cost_usd": o.max_cost_usd,
        "cost_frac": frac(o.cost_usd, o.max_cost_usd),
        "budget_left": budget_left(o), "over_budget": o.over_budget,
        "latest": o.latest or None, "latest_source": o.latest_source or None,
        "idle_s": o.idle_s,
    }


def board_data(ledger: Ledger, *, now: datetime | None = None, limit: int = DEFAULT_LIMIT,
               redact: bool = True) -> dict[str, Any]:
    """Everything the board page shows, as plain data."""
    with Pass(ledger, [SUMMARIES, facts_kind(ledger)]) as p:  # one check serves both
        summaries = p.values(SUMMARIES)
        metrics = cached_report(ledger, p)
    now = now or datetime.now(timezone.utc)
    statuses = {x.line: x for x in load_line_statuses(ledger, summaries, now)}
    obs = observations(ledger, now)
    watched = {o.artifact for o in obs}
    titles = {s.artifact: s.title for s in summaries if s.artifact in watched}
    live = {o.cell: o for o in obs if o.alive}
    sp = metrics["self_play"]
    page_metrics = {**metrics, "self_play": {**sp, "artifacts": sp["artifacts"][:SELF_PLAY_LISTED]}}
    totals: dict[str, int] = {"artifacts": len(summaries), "running_cells": len(live),
                              "stalled_cells": sum(o.stalled for o in obs)}
    lanes = _lanes(ledger, summaries, statuses, now, limit, live, totals)
    data = {
        "meta": {"repo": ledger.repo.root.name, "ledger": ledger.rel,
                 "generated_at": now.isoformat(), "limit": limit,
                 "max_cells": config_values(ledger)["max_concurrent_cells"],
                 "github": github_base(ledger)},
        "totals": totals,
        "lanes": lanes,
        "cells": [_cell(o, titles) for o in obs],
        "metrics": page_metrics,
    }
    return redactor_for(ledger).mapping(data) if redact else data


# -- one artifact -------------------------------------------------------------------------


def _commit(entry: LogEntry | None) -> dict[str, Any] | None:
    if entry is None:
        return None
    return {"id": entry.commit, "short": entry.commit[:10], "subject": entry.subject,
            "time": entry.time, "author": entry.author.rpartition(" <")[0] or entry.author}


def artifact_data(ledger: Ledger, query: str, *, now: datetime | None = None,
                  redact: bool = True, commits: dict[str, LogEntry] | None = None
                  ) -> dict[str, Any]:
    """One artifact's page: record, timeline with commits, handoffs, evidence, cost per cell.

    `commits` (Factory-Hash -> LogEntry) may be passed by a caller that looked up many
    artifacts' commits at once; otherwise this artifact's history is read from git.
    """
    from ..views.details import artifact_record

    aid = ledger.resolve(query)
    chain = ledger.read(aid)
    record = artifact_record(ledger, aid, chain)
    if commits is None:
        commits = commits_by_hash(ledger, [aid])
    root = chain.root
    assert root is not None  # Ledger.read raises when an artifact has no intake
    timeline = [{"seq": 0, "kind": "intake", "at": record["intake"]["created_at"],
                 "by": record["intake"]["created_by"], "file": root.path,
                 "what": f"taken in: {record['intake']['title']}",
                 "commit": _commit(commits.get(root.digest))}]
    for stored, ev in zip(chain.events, record["events"], strict=True):
        timeline.append({**{k: ev[k] for k in ("seq", "kind", "at", "by", "file")},
                         "what": event_line(stored.event),
                         "commit": _commit(commits.get(stored.digest))})
    now = now or datetime.now(timezone.utc)
    cells = []
    for c in record["cells"].values():
        tokens = (c["tokens_in"] or 0) + (c["tokens_out"] or 0)
        cells.append({k: c[k] for k in ("cell", "stage", "role", "attempt", "backend", "model",
                                        "outcome", "wall_s", "tokens_in", "tokens_out",
                                        "cost_usd", "started_at", "finished_at",
                                        "last_progress", "brief")}
                     | {"tokens": tokens if c["outcome"] else None})
    for c in cells:
        for key in ("started_at", "finished_at"):
            c[key] = c[key].isoformat() if isinstance(c[key], datetime) else c[key]
    data = {
        "meta": {"repo": ledger.repo.root.name, "ledger": ledger.rel,
                 "generated_at": now.isoformat(), "github": github_base(ledger)},
        "artifact": aid, "intake": record["intake"], "state": record["state"],
        "stage": record["stage"], "status": record["status"], "cell": record["cell"],
        "attempts": record["attempts"], "retry_note": record["retry_note"],
        "blocked_reason": record["blocked_reason"], "final_reason": record["final_reason"],
        "timeline": timeline, "handoffs": record["handoffs"], "evidence": record["evidence"],
        "cells": cells, "cost": record["cost"], "published": record["published"],
        "closed": record["closed"], "problems": record["problems"],
    }
    return redactor_for(ledger).mapping(data) if redact else data


def commits_by_hash(ledger: Ledger, ids: list[str]) -> dict[str, LogEntry]:
    """Record hash (the `Factory-Hash` trailer) -> the newest commit that recorded it."""
    found: dict[str, LogEntry] = {}
    for entry in ledger.history(ids):  # oldest first: a later commit of the hash wins
        for digest in entry.trailers.get("Factory-Hash", []):
            found[digest] = entry
    return found


def shown_artifacts(board: dict[str, Any]) -> list[str]:
    """Ids of the artifacts that have a card on the board, in board order."""
    return [card["artifact"] for lane in board["lanes"] for col in lane["columns"]
            for card in col["cards"] if lane["line"] != "?"]


def artifact_pages(ledger: Ledger, ids: list[str], now: datetime) -> list[dict[str, Any]]:
    """Pages of many artifacts, their commits found with one `git log` (for the static file)."""
    commits = commits_by_hash(ledger, ids)
    pages = []
    for aid in ids:
        try:
            pages.append(artifact_data(ledger, aid, now=now, commits=commits))
        except FactoryError:
            continue  # changed under us or broken: its card says so
    return pages


# -- one commit ---------------------------------------------------------------------------


def commit_data(ledger: Ledger, commit: str, max_bytes: int = 200_000) -> dict[str, Any]:
    """A commit's message and the part of its diff inside the ledger directory."""
    if not _COMMIT_RE.match(commit):
        raise UsageError(f"{commit!r} is not a commit id (hex digits)")
    full = ledger.repo.resolve_commit(commit)
    if full is None:
        raise UsageError(f"no commit {commit} in this repo")
    meta = ledger.repo.git("show", "-s", "--format=%H%x1f%an%x1f%aI%x1f%B", full).decode(
        "utf-8", "replace").split("\x1f", 3)
    diff = ledger.repo.git("show", "--format=", "--no-color", "--no-ext-diff", full, "--",
                           f":(literal){ledger.rel}").decode("utf-8", "replace")
    truncated = len(diff) > max_bytes
    data = {"commit": meta[0], "short": meta[0][:10], "author": meta[1], "time": meta[2],
            "message": meta[3].rstrip("\n"), "diff": diff[:max_bytes], "truncated": truncated,
            "meta": {"repo": ledger.repo.root.name, "ledger": ledger.rel,
                     "github": github_base(ledger)}}
    return redactor_for(ledger).mapping(data)


# -- the change signal ----------------------------------------------------------------------


def _stat(path: Path | str) -> tuple[int, int]:
    try:
        st = os.stat(path)
        return st.st_mtime_ns, st.st_size
    except OSError:
        return 0, 0


def change_token(ledger: Ledger, cell_tick_s: float = 5.0) -> str:
    """Moves when anything the board shows may have changed (cheap: one git call, a few stats).

    HEAD (every ledger event is a commit), the index and the artifacts directory (uncommitted
    changes), factory.yaml, and the runtime records, progress notes and output of cells.
    While a cell runs it also moves every `cell_tick_s`, for its elapsed time and tokens.
    """
    runtime = ledger.runtime_dir
    parts: list[Any] = [ledger.repo.head(), _stat(ledger.repo.git_dir / "index"),
                        _stat(ledger.artifacts_dir), _stat(ledger.dir / "factory.yaml"),
                        _stat(ledger.dir / "lines")]
    cells_dir = runtime / "cells"
    for sub in ("cells", "progress", "output"):
        parts.append(_stat(runtime / sub))
    try:
        names = sorted(os.listdir(cells_dir))
    except OSError:
        names = []
    if names:
        parts.append(int(time.time() // cell_tick_s))
        out_dir = runtime / "output"
        for name in names:
            parts.append(_stat(out_dir / (name.removesuffix(".json") + ".output")))
    return hashlib.sha1(repr(parts).encode(), usedforsecurity=False).hexdigest()[:16]
