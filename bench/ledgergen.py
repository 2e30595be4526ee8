"""Build a large, valid ledger fast, for bench_ledger.py.

Every record is made the way `Ledger.create` / `Ledger.append` make them: validated by the real
pydantic models (contracts for handoffs, records for events), dumped by `yamlio.dumps`, chained by
the sha256 of the parent's bytes, named `NNNN-<kind>-<hash12>.yaml`, and folded through
`replay.apply` so every history is legal. Files are written straight to disk (in parallel, one
process per core) and committed with a single `git add` + `git commit`, next to equivalent gptodo
task files (`tasks/*.md`).
"""

from __future__ import annotations

import multiprocessing
import os
import random
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from gptme_factory.ledger import yamlio
from gptme_factory.ledger.config import default_config
from gptme_factory.ledger.kinds import ARTIFACTS
from gptme_factory.ledger.records import ARTIFACT_EVENTS, EventHeader, Intake
from gptme_factory.ledger.store import INTAKE_FILE, Ledger, slugify
from gptme_factory.ledger.stream import sha256
from gptme_factory.line.replay import ArtifactView, apply

BASE_TIME = datetime(2025, 6, 1, tzinfo=timezone.utc)
WORDS = ["login", "timeout", "cache", "parser", "export", "sync", "retry", "search", "upload",
         "billing", "webhook", "theme", "locale", "report", "queue", "token", "backup", "audit"]
VERBS = ["fix", "add", "speed up", "document", "refactor", "harden"]


def _hex(rng: random.Random, n: int) -> str:
    return f"{rng.getrandbits(4 * n):0{n}x}"


def _handoff(contract: str, aid: str, rng: random.Random, attempt: int) -> dict[str, Any]:
    w = rng.choice(WORDS)
    if contract == "scout_memo":
        return {
            "kind": contract, "artifact": aid,
            "files": [{"path": f"src/app/{w}.py", "why": f"the {w} logic lives here"},
                      {"path": f"tests/test_{w}.py", "why": "regression tests go here"}],
            "constraints": ["keep the public API stable", "no new dependencies"],
            "approach": f"Move the {w} handling behind one function and make the limit\n"
                        "configurable; cover the slow path with a test.",
            "verification_plan": [
                {"command": f"python -m pytest -q tests/test_{w}.py && ruff check src",
                 "proves": "the regression test passes and lint is clean"}],
            "risks": [f"callers that rely on the old {w} default"],
            "criteria": [{"criterion": 0, "plan": f"test_{w}_fast measures the latency"},
                         {"criterion": 1, "plan": "the existing suite keeps passing"}],
        }
    if contract == "builder_patch":
        return {
            "kind": contract, "artifact": aid, "status": "success",
            "branch": f"factory/{aid}", "base": _hex(rng, 40), "head": _hex(rng, 40),
            "summary": f"Made the {w} limit configurable (attempt {attempt}) and added a test.",
            "files_changed": [f"src/app/{w}.py", f"tests/test_{w}.py"],
            "tests_added": [f"tests/test_{w}.py::test_{w}_fast"],
            "claims": [{"criterion": 0, "claim": f"{w} now finishes in time",
                        "evidence": f"tests/test_{w}.py::test_{w}_fast"},
                       {"criterion": 1, "claim": "no behaviour change elsewhere",
                        "evidence": "python -m pytest -q"}],
            "notes_for_verifier": "Run the focused test first; it takes about a second.",
        }
    if contract == "verifier_report":
        return {
            "kind": contract, "artifact": aid, "commit": _hex(rng, 40),
            "checks": [{"command": f"python -m pytest -q tests/test_{w}.py", "exit_code": 0,
                        "duration_s": 1.7, "output_tail": "....\n4 passed in 1.21s"}],
            "verdict": "pass",
            "criteria": [{"criterion": 0, "verdict": "pass", "evidence": f"test_{w}_fast"},
                         {"criterion": 1, "verdict": "pass", "evidence": "full suite green"}],
        }
    if contract == "release_package":
        return {
            "kind": contract, "artifact": aid, "change_type": "fix", "version_bump": "patch",
            "changelog_entry": f"Fixed the {w} timeout.",
            "release_notes": f"## Fixes\n\n* The {w} limit is now configurable.\n",
            "pr_title": f"fix({w}): make the limit configurable",
            "pr_description": f"Closes the {w} timeout issue.\n\n- adds a regression test\n",
            "announcement": f"The {w} timeout is gone in the next patch release.",
        }
    return {
        "kind": contract, "artifact": aid,
        "adoption": [{"consumer": "erik", "status": "used", "evidence": "PR merged"},
                     {"consumer": "alice", "status": "unknown", "evidence": "no reply yet"}],
        "lessons": ["measure before tuning"], "terminal": "the timeout issue is closed",
    }


def _payloads(aid: str, rng: random.Random, count: int) -> list[dict[str, Any]]:
    """A legal history of `count` events on the default line."""
    cfg = default_config()
    out: list[dict[str, Any]] = []
    for st in cfg.line("default").stages:
        attempt = 1
        while True:
            cell = f"{aid}.{st.name}.{_hex(rng, 4)}"
            contract = cfg.contract_name(st)
            handoff = cfg.contract_model(contract).model_validate(
                _handoff(contract, aid, rng, attempt)).model_dump(mode="json")
            out += [
                {"kind": "stage_started", "stage": st.name, "role": st.role, "cell": cell,
                 "attempt": attempt, "base_commit": _hex(rng, 40) if st.gate == "patch" else None},
                {"kind": "cell_spawned", "cell": cell, "role": st.role, "backend": "gptodo",
                 "model": "anthropic/claude-sonnet-4",
                 "budget": {"timeout_s": 1800, "max_tokens": 2_000_000, "max_cost_usd": 5.0},
                 "brief": f"factory/briefs/{cell}.md", "brief_digest": _hex(rng, 64),
                 "session": f"gptodo_agent_{_hex(rng, 8)}", "workdir": f"/tmp/wt/{cell}"},
                {"kind": "handoff_submitted", "stage": st.name, "cell": cell, "contract": contract,
                 "handoff": handoff, "last_progress": "ran the focused tests"},
                {"kind": "cell_finished", "cell": cell, "outcome": "handoff", "exit_code": 0,
                 "wall_s": round(rng.uniform(30, 900), 1), "tokens_in": rng.randint(10**4, 10**6),
                 "tokens_out": rng.randint(10**3, 10**5), "cost_usd": round(rng.uniform(0, 2), 4),
                 "conversation": f"~/.local/share/gptme/logs/{cell}"},
            ]
            if st.gate == "package":
                out.append({"kind": "published", "target": "pr", "where": f"gh:acme/app#{_hex(rng, 3)}"})
            failed = st.gate == "evidence" and attempt == 1 and rng.random() < 0.25
            checks = [{"command": "python -m pytest -q", "exit_code": 1 if failed else 0,
                       "duration_s": 2.5, "output_tail": "...\n" + ("1 failed" if failed else "9 passed")}]
            if failed:
                out.append({"kind": "gate_failed", "stage": st.name, "cell": cell, "gate": st.gate,
                            "reasons": ["python -m pytest -q exited 1"],
                            "failure_summary": "test_timeout_fast: took 2.4 s, limit 2 s",
                            "checks": checks})
                attempt += 1
                continue
            out.append({"kind": "gate_passed", "stage": st.name, "cell": cell, "gate": st.gate,
                        "state": st.produces,
                        "commit": _hex(rng, 40) if st.gate in ("patch", "evidence") else None,
                        "checks": checks if st.gate == "evidence" else []})
            break
        if len(out) >= count:
            break
    out.append({"kind": "closed", "terminal": "done, nothing follows"})
    return out[:count]


def render_artifact(i: int, mean_events: int, seed: int = 7) -> list[tuple[str, bytes]]:
    """(path under factory/artifacts, bytes) of artifact number `i`, intake first."""
    rng = random.Random(seed * 1_000_003 + i)
    title = f"{rng.choice(VERBS)} {rng.choice(WORDS)} {rng.choice(WORDS)} {i}"
    aid = f"{slugify(title)}-{_hex(rng, 6)}"
    created = BASE_TIME + timedelta(minutes=7 * i)
    intake = Intake.model_validate({
        "artifact": aid, "title": title.capitalize(),
        "problem": f"Users hit the {title} problem weekly.\nSee the linked issue.",
        "demand": f"gh:acme/app#{i}", "consumers": ["erik", "alice"],
        "acceptance": ["the slow path finishes within 2 s", "the existing tests keep passing"],
        "line": "default", "classification": "factory_run",
        "created_at": created, "created_by": "bench",
    })
    raw = yamlio.dumps(intake.model_dump(mode="json"))
    files = [(f"{aid}/{INTAKE_FILE}", raw)]
    parent = sha256(raw)
    view = ArtifactView(intake=intake, line=default_config().line("default"))
    count = max(1, mean_events + rng.randint(-6, 6))
    for seq, payload in enumerate(_payloads(aid, rng, count), start=1):
        event = ARTIFACT_EVENTS.validate_python(payload)
        header = EventHeader(kind=event.kind, seq=seq, parent=parent,
                             at=created + timedelta(minutes=11 * seq),
                             by=payload.get("cell", "bench"))
        apply(view, event, header.at)  # raises on an illegal history
        raw = ARTIFACTS.dump(aid, header, event)  # the bytes the Ledger writes
        parent = sha256(raw)
        files.append((f"{aid}/{ARTIFACTS.file_name(seq, event.kind, parent)}", raw))
    return files


def render_task(i: int) -> tuple[str, bytes]:
    """An equivalent gptodo task file (frontmatter state/created/modified + a body)."""
    rng = random.Random(i)
    title = f"{rng.choice(VERBS)} {rng.choice(WORDS)} {rng.choice(WORDS)} {i}"
    created = (BASE_TIME + timedelta(minutes=7 * i)).isoformat()
    state = rng.choice(["backlog", "todo", "active", "waiting", "done"])
    body = yamlio.dumps({"state": state, "created": created, "modified": created,
                         "priority": rng.choice(["low", "medium", "high"]),
                         "tags": ["factory", f"@{rng.choice(WORDS)}"]}).decode()
    text = (f"---\n{body}---\n# {title.capitalize()}\n\nUsers hit the {title} problem weekly.\n\n"
            "## Subtasks\n- [x] reproduce\n- [ ] fix\n- [ ] verify\n")
    return f"{slugify(title)}-{i}.md", text.encode()


def _write_range(args: tuple[str, int, int, int]) -> tuple[int, int]:
    root, start, stop, mean_events = args
    adir, tdir = Path(root, "factory", "artifacts"), Path(root, "tasks")
    nfiles = nbytes = 0
    for i in range(start, stop):
        made: set[str] = set()
        for rel, raw in render_artifact(i, mean_events):
            d = rel.split("/", 1)[0]
            if d not in made:
                (adir / d).mkdir()
                made.add(d)
            (adir / rel).write_bytes(raw)
            nfiles, nbytes = nfiles + 1, nbytes + len(raw)
        name, raw = render_task(i)
        (tdir / name).write_bytes(raw)
    return nfiles, nbytes


def git(root: Path, *args: str) -> str:
    """Run git in `root` (raises on failure)."""
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True,
                          text=True).stdout


def build(root: Path, artifacts: int, mean_events: int, jobs: int | None = None) -> dict[str, Any]:
    """Create a brain repo at `root` holding the ledger and the task files, in one commit."""
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "master")
    git(root, "config", "gc.auto", "0")  # no background gc racing the measurements
    (root / "README.md").write_text("# bench brain\n")
    git(root, "add", "README.md")
    git(root, "commit", "-q", "-m", "init brain")
    Ledger.init(root)
    (root / "factory" / "artifacts").mkdir()
    (root / "tasks").mkdir()
    jobs = jobs or os.cpu_count() or 1
    step = max(1, min(500, artifacts // (jobs * 4) or 1))
    chunks = [(str(root), s, min(artifacts, s + step), mean_events)
              for s in range(0, artifacts, step)]
    with multiprocessing.get_context("fork").Pool(jobs) as pool:
        results = pool.map(_write_range, chunks)
    git(root, "add", "factory", "tasks")
    git(root, "commit", "-q", "-m", f"bench: {artifacts} artifacts and tasks")
    return {"files": sum(r[0] for r in results), "bytes": sum(r[1] for r in results)}


def init_brain(repo: Path) -> Path:
    """Make `repo` an empty brain repo on branch master with one commit (README)."""
    repo.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q", "-b", "master"], cwd=repo, check=True)
    (repo / "README.md").write_text("# brain\n")
    subprocess.run(["git", "add", "README.md"], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-q", "-m", "init"], cwd=repo, check=True)
    return repo
