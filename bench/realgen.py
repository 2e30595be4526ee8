"""A realistic brain for the benchmarks: the ledger *and* its history, as the factory writes them.

Every artifact lives through the decisions `gptme-factory run` makes on the default line
(cells/foreman.py, cells/spawn.py, cells/reaper.py), one commit per decision:

    intake: <title>                          intake.yaml
    scout started (gptodo)                   stage_started, cell_spawned, briefs/<cell>.md
    scout handoff (scout_memo)               handoff_submitted (recorded by the cell)
    scout passed -> designed; build started  gate_passed, cell_finished, stage_started,
                                             cell_spawned, the next brief
    verify failed: ...; rework to build      gate_failed, rework, cell_finished, stage_started
                                             (attempt 2), cell_spawned, brief
    package passed -> published (note); ...  cell_finished, published, gate_passed,
                                             stage_started, cell_spawned, brief, factory/packages/*
    measure passed -> measured               gate_passed, cell_finished
    closed: terminal                         closed

An artifact may stop earlier: still an idea; or its cell is killed (`gptme-factory kill`)
and it is abandoned; the newest ones are in progress, their cells running (a runtime record
in factory/.runtime/cells/). Finished cells leave their prompt and progress files behind, as
they do until `gc`. The commits of all artifacts interleave in time order.

The bytes come from the engine's own code: payloads are the records' pydantic models, event
files are `stream.new_event`'s (header, hash chain, name), briefs `cells/brief.render_brief`'s,
commit messages `store.commit_message` over a `Transaction` described by `line/subjects` —
tests/test_realgen.py pins that against a real foreman run. What cannot be real here: the
commit ids records name (a stage's base commit, a build's head) are random hex of the right
length, and no cell ever ran.

Fast: artifacts are rendered in parallel (one process per core) and their commits streamed,
in time order, to one `git fast-import`; then the work tree is checked out.
"""

from __future__ import annotations

import heapq
import json
import multiprocessing
import os
import random
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import cache
from pathlib import Path
from typing import Any

from gptme_factory.cells.brief import BriefContext, render_brief, render_prompt
from gptme_factory.ledger.config import FactoryConfig, default_config
from gptme_factory.ledger.examples import example
from gptme_factory.ledger.kinds import ARTIFACTS
from gptme_factory.ledger.layout import fanned
from gptme_factory.ledger.records import (
    Abandoned,
    ArtifactEvent,
    Budget,
    CellFinished,
    CellSpawned,
    CheckResult,
    Closed,
    ContractCheck,
    ContractFixed,
    EventHeader,
    Evidence,
    EvidenceRow,
    GateFailed,
    GatePassed,
    HandoffSubmitted,
    Intake,
    Observation,
    Published,
    Rework,
    StageStarted,
)
from gptme_factory.ledger.schemas import contract_schema
from gptme_factory.ledger.store import LEDGER_DIR, Ledger, Transaction, commit_message, slugify
from gptme_factory.ledger.stream import new_event, sha256
from gptme_factory.line.replay import ArtifactView, apply
from gptme_factory.line.subjects import describe
from gptme_factory.outcomes.packaging import package_paths

BASE_TIME = datetime(2025, 6, 1, tzinfo=timezone.utc)
ACTOR = "Agent Brain <agent@brain.invalid>"
WORDS = ["login", "timeout", "cache", "parser", "export", "sync", "retry", "search", "upload",
         "billing", "webhook", "theme", "locale", "report", "queue", "token", "backup", "audit"]
VERBS = ["fix", "add", "speed up", "document", "refactor", "harden"]
# How far an artifact that is not in progress got: stages started (0: still an idea).
REACHED = [(0, 0.30), (1, 0.30), (2, 0.15), (3, 0.10), (4, 0.05), (5, 0.10)]
REWORK_RATE = 0.25  # a first verify fails and sends the build back


# -- what is recorded: decisions ---------------------------------------------------------


@dataclass
class Decision:
    """One commit: an artifact's events (or its intake), the files beside them, a time."""

    aid: str
    at: datetime
    events: list[tuple[ArtifactEvent, str]] = field(default_factory=list)  # (payload, by)
    intake: Intake | None = None
    files: dict[str, bytes] = field(default_factory=dict)  # briefs, packages (repo paths)
    times: list[datetime] | None = None  # each event's own time, when they differ (else `at`)


@dataclass
class Chain:
    """What the encoder knows of one artifact's chain: its tip hash and last seq."""

    tip: str
    seq: int


def encode(decision: Decision, chains: dict[str, Chain], rel: str = LEDGER_DIR,
           ) -> tuple[dict[str, bytes], str]:
    """The files and commit message the ledger writes for `decision` (updates `chains`).

    The same code paths as `Ledger.add_root` / `Ledger.record` inside one transaction:
    `kinds.ARTIFACTS` dumps the root, `stream.new_event` the events, `store.commit_message`
    the message, described by `line/subjects.describe`.
    """
    aid = decision.aid
    prefix = f"{rel}/{ARTIFACTS.folder}/{fanned(aid)}"
    tx = Transaction()
    files: dict[str, bytes] = {}
    if decision.intake is not None:
        raw = ARTIFACTS.dump_root(decision.intake)
        files[f"{prefix}/{ARTIFACTS.root_file}"] = raw
        tx.note(f"intake: {decision.intake.title}")
        tx.roots.append((ARTIFACTS.key, aid, "intake", sha256(raw)))
        chains[aid] = Chain(sha256(raw), 0)
    chain = chains[aid]
    for k, (payload, by) in enumerate(decision.events):
        at = decision.times[k] if decision.times else decision.at
        header = EventHeader(kind=payload.kind, seq=chain.seq + 1, parent=chain.tip, at=at,
                             by=by)
        stored, raw = new_event(ARTIFACTS, prefix, aid, header, payload)
        files[stored.path] = raw
        tx.events.append((ARTIFACTS.key, ARTIFACTS.name, aid, stored))
        tx.describers.setdefault(ARTIFACTS.name, describe)
        chain.tip, chain.seq = stored.digest, stored.seq
    files.update(decision.files)
    return files, commit_message(tx)


def encode_all(decisions: Sequence[Decision], rel: str = LEDGER_DIR
               ) -> list[tuple[dict[str, bytes], str]]:
    """`encode` each decision in order, as one writer recording them one after the other."""
    chains: dict[str, Chain] = {}
    return [encode(d, chains, rel) for d in decisions]


# -- what happens to one artifact ---------------------------------------------------------


def _hex(rng: random.Random, n: int) -> str:
    return f"{rng.getrandbits(4 * n):0{n}x}"


@cache
def _config() -> FactoryConfig:
    return default_config()


@cache
def _schema(contract: str) -> dict[str, Any]:
    return contract_schema(_config(), contract)


def _handoff(contract: str, aid: str, rng: random.Random, attempt: int, base: str,
             head: str, branch: str) -> dict[str, Any]:
    """The synthetic brain's handoff (ledgergen.py), with the life's own commits and branch."""
    from ledgergen import _handoff as synthetic

    data = synthetic(contract, aid, rng, attempt)
    if contract == "builder_patch":
        data.update(branch=branch, base=base, head=head)
    elif contract == "verifier_report":
        data.update(commit=head, failure_summary="")
    model = _config().contract_model(contract)
    return model.model_validate(data).model_dump(mode="json")


def _output_tail(rng: random.Random, cell: str, aid: str, rel: str) -> str:
    """What a cell's terminal shows at its end (the last lines of its gptme run)."""
    w = rng.choice(WORDS)
    lines = [f"noted: reading src/app/{w}.py",
             f"{rng.randint(1, 400)}:def handle_{w}(request, limit=None):",
             f"noted: plan ready: one function for {w}; verify with pytest",
             "```shell", f"gptme-factory submit --repo /srv/brain --cell {cell} /tmp/{cell}.yaml",
             "```",
             f"accepted: {rel}/artifacts/{fanned(aid)}/handoff.yaml",
             f"System: Ran command: `gptme-factory submit ...` · {rng.uniform(1, 9):.1f}s · 1 line"]
    lines += [f"  {rng.choice(WORDS)} {rng.choice(WORDS)}: {_hex(rng, 8)}"
              for _ in range(rng.randint(10, 30))]
    lines += ["Goodbye! (resume with: gptme --name " f"{BASE_TIME:%Y-%m-%d}-{_hex(rng, 6)})",
              "EXIT_CODE=0"]
    return "\n".join(lines)


@dataclass
class Lived:
    """An artifact's decisions, and the runtime files its cells left (repo-relative path)."""

    decisions: list[Decision]
    runtime: dict[str, bytes]
    briefs: int


class _Life:
    """Plays one artifact through the default line, as one transaction after another.

    `emit` folds an event into the replayed view at once (an illegal one raises), as
    `transitions.record` does inside a transaction; `commit` closes the decision.
    """

    def __init__(self, i: int, root: str, rel: str, seed: int) -> None:
        self.rng = rng = random.Random(seed * 1_000_003 + i)
        self.root, self.rel = root, rel
        title = f"{rng.choice(VERBS)} {rng.choice(WORDS)} {rng.choice(WORDS)} {i}"
        self.aid = aid = f"{slugify(title)}-{_hex(rng, 6)}"
        self.now = BASE_TIME + timedelta(minutes=7 * i, seconds=rng.randint(0, 300))
        self.intake = Intake.model_validate({
            "artifact": aid, "title": title.capitalize(),
            "problem": f"Users hit the {title} problem weekly.\nSee the linked issue.",
            "demand": f"gh:acme/app#{i}", "consumers": ["erik", "alice"],
            "acceptance": ["the slow path finishes within 2 s",
                           "the existing tests keep passing"],
            "line": "default", "classification": "factory_run",
            "created_at": self.now, "created_by": ACTOR,
        })
        self.line = _config().line("default")
        self.view = ArtifactView(intake=self.intake, line=self.line)
        self.decisions: list[Decision] = [Decision(aid, self.now, intake=self.intake)]
        self.pending: list[tuple[ArtifactEvent, str]] = []
        self.files: dict[str, bytes] = {}
        self.briefs = 0
        self.prompts: dict[str, bytes] = {}
        self.head = _hex(rng, 40)  # the build under consideration (a builder's last commit)
        self.base = _hex(rng, 40)  # the current stage's base commit

    def tick(self, lo: int, hi: int) -> None:
        self.now += timedelta(seconds=self.rng.randint(lo, hi))

    def emit(self, payload: ArtifactEvent, by: str = ACTOR) -> None:
        apply(self.view, payload, self.now)
        self.pending.append((payload, by))

    def commit(self) -> None:
        self.decisions.append(Decision(self.aid, self.now, self.pending, files=self.files))
        self.pending, self.files = [], {}

    @property
    def cell(self) -> str:
        return self.view.cell or ""

    def spawn(self) -> None:
        """`cells.spawn`: the current stage's start, its brief, the launch (no commit yet)."""
        rng, cfg, aid, stage = self.rng, _config(), self.aid, self.view.stage
        assert stage is not None
        attempt = self.view.attempts.get(stage.name, 0) + 1
        cell = f"{aid}.{stage.name}.{_hex(rng, 4)}"
        base = self.base = _hex(rng, 40)
        retry = self.view.retry_note
        self.emit(StageStarted(stage=stage.name, role=stage.role, cell=cell, attempt=attempt,
                               retry_note=retry, base_commit=base))
        role = cfg.role(stage.role)
        contract = cfg.contract_name(stage)
        budget = Budget(timeout_s=1800.0, max_tokens=2_000_000, max_cost_usd=5.0)
        brief_rel = f"{self.rel}/artifacts/{fanned(aid)}/briefs/{cell}.md"
        workdir = f".git/factory-worktrees/{cell}"
        branch = None if role.read_only else f"factory/{cell}"
        commit = self.head if role.read_only else None
        earlier = [(st.name, st.role, self.view.handoffs[st.name])
                   for st in self.line.stages[: self.view.stage_index]
                   if st.name in self.view.handoffs]
        ctx = BriefContext(
            cell=cell, artifact=aid, stage=stage.name, role=stage.role,
            role_description=role.description, read_only=role.read_only, attempt=attempt,
            attempts=stage.attempts, contract=contract, schema=_schema(contract),
            intake=self.intake.model_dump(mode="json"), budget=budget.model_dump(),
            brain=self.root, workdir=f"{self.root}/{workdir}", factory_cmd="gptme-factory",
            brief_path=brief_rel, retry_note=retry, earlier=earlier, base_commit=base,
            branch=branch, commit=commit, repairs=stage.repairs,
            runtime_dir=f"{self.root}/{self.rel}/.runtime",
            example=example(cfg, contract, artifact=aid, criteria=len(self.intake.acceptance),
                            consumers=self.intake.consumers, base=base,
                            branch=branch or "BRANCH", commit=commit or "COMMIT"))
        brief = render_brief(ctx).encode()
        self.briefs += 1
        self.prompts[cell] = render_prompt(ctx, f"{self.root}/{brief_rel}").encode()
        self.files[brief_rel] = brief
        self.emit(CellSpawned(cell=cell, role=stage.role, backend="gptodo",
                              model="anthropic/claude-sonnet-4-5", budget=budget,
                              brief=brief_rel, brief_digest=sha256(brief),
                              session=f"gptodo_agent_{_hex(rng, 8)}", workdir=workdir))

    def hand_off(self) -> None:
        """The cell's `gptme-factory submit`: one commit, recorded by the cell."""
        stage = self.view.stage
        assert stage is not None
        contract = _config().contract_name(stage)
        if stage.gate == "patch":
            self.head = _hex(self.rng, 40)
        attempt = self.view.attempts.get(stage.name, 1)
        data = _handoff(contract, self.aid, self.rng, attempt, _hex(self.rng, 40), self.head,
                        f"factory/{self.cell}")
        self.tick(300, 3600)
        self.emit(HandoffSubmitted(stage=stage.name, cell=self.cell, contract=contract,
                                   handoff=data, last_progress="ran the focused tests"), self.cell)
        self.commit()

    def finished(self, cell: str, outcome: str = "handoff", reason: str = "") -> CellFinished:
        rng = self.rng
        return CellFinished.build(
            cell=cell, outcome=outcome, reason=reason,
            exit_code=0 if outcome == "handoff" else None,
            wall_s=round(rng.uniform(30, 900), 3), tokens_in=rng.randint(10**4, 10**6),
            tokens_out=rng.randint(10**3, 10**5), cost_usd=round(rng.uniform(0, 2), 4),
            conversation=f"{BASE_TIME:%Y-%m-%d}-{_hex(rng, 6)}",
            output_tail=_output_tail(rng, cell, self.aid, self.rel),
            last_progress="ran the focused tests" if outcome == "handoff" else None)

    def checks(self, failed: bool) -> list[CheckResult]:
        tail = "...\n" + ("FAILED tests/test_x.py::test_fast - took 2.4 s" if failed else
                          "9 passed in 2.31s")
        return [CheckResult(command="python -m pytest -q", exit_code=1 if failed else 0,
                            duration_s=round(self.rng.uniform(1, 30), 3), output_tail=tail)]

    CONTRACT = (("plan-1", "python -m pytest -q tests/test_x.py::test_fixed", [0],
                 "the reported case works"),
                ("plan-2", "python -m pytest -q", [1], "the old tests still pass"))

    def contract(self) -> list[ContractCheck]:
        """The validation contract the scout gate fixes (the engine's plan gate)."""
        return [ContractCheck(id=i, command=c, timeout_s=600.0, source="plan", criteria=k,
                              proves=what) for i, c, k, what in self.CONTRACT]

    def observed(self, codes: list[int]) -> Observation:
        tail = "E   AssertionError: the reported case" if codes[0] else ""
        return Observation(exit_codes=codes, duration_s=round(self.rng.uniform(1, 30), 3),
                           output_tail=tail)

    def evidence(self, *, head: bool, failed: bool = False) -> Evidence:
        """The gate's evidence table: the base side, and at the build the head side too."""
        rng = self.rng
        rows = [EvidenceRow(check="plan-1", command=self.CONTRACT[0][1], source="plan",
                            criteria=[0], base=self.observed([1, 1]),
                            head=(self.observed([1]) if failed else self.observed([0, 0]))
                            if head else None,
                            verdict=("fail-to-fail" if failed else "fail-to-pass")
                            if head else "fails"),
                EvidenceRow(check="plan-2", command=self.CONTRACT[1][1], source="plan",
                            criteria=[1], base=self.observed([0]),
                            head=(self.observed([1]) if failed else self.observed([0]))
                            if head else None,
                            verdict=("pass-to-fail" if failed else "pass-to-pass")
                            if head else "passes")]
        return Evidence(mode="fail-to-pass", base_commit=self.base, base_tree=_hex(rng, 40),
                        head_commit=self.head if head else None,
                        head_tree=_hex(rng, 40) if head else None, rows=rows)

    def reap(self, fail: bool) -> None:
        """The foreman's reap: the gate's verdict, the cell's end, a publication (no commit)."""
        stage, rng, cell = self.view.stage, self.rng, self.cell
        assert stage is not None
        if fail:
            summary = "tests/test_x.py::test_fast: took 2.4 s, the limit is 2 s"
            self.emit(GateFailed(stage=stage.name, cell=self.cell, gate=stage.gate,
                                 reasons=["python -m pytest -q exited 1"], failure_summary=summary,
                                 commit=self.head, tree=_hex(rng, 40), checks=self.checks(True),
                                 evidence=self.evidence(head=True, failed=True)))
            self.emit(Rework(from_stage=stage.name, to_stage="build", retry_note=summary))
            self.emit(self.finished(cell))
            return
        if stage.gate == "package":  # the verdict waits for the publication: end, publish, pass
            self.emit(self.finished(cell))
            paths = package_paths(self.aid, "fix")
            where = f"{self.rel}/packages/{paths['release_notes']}"
            self.files.update({f"{self.rel}/packages/{p}": _package_text(self, key).encode()
                               for key, p in paths.items()})
            self.emit(Published.build(target="note", where=where, commit=self.head))
            self.emit(GatePassed(stage=stage.name, cell=cell, gate=stage.gate,
                                 state=stage.produces, commit=self.head, checks=[],
                                 notes=[f"published: {where}"]))
            return
        if stage.gate == "plan":  # the contract, fixed with the verdict, tried at the base
            self.emit(ContractFixed(stage=stage.name, cell=cell, evidence="fail-to-pass",
                                    checks=self.contract(), base_commit=self.base))
            self.emit(GatePassed(
                stage=stage.name, cell=cell, gate=stage.gate, state=stage.produces,
                commit=self.base, tree=_hex(rng, 40), checks=self.checks(True)[:1] + self.checks(False),
                notes=[f"contract fixed: 2 check(s), tried at base {self.base[:12]}",
                       f"fail-to-pass candidates: `{self.CONTRACT[0][1]}` (criteria 0) fails at "
                       f"base {self.base[:12]}"],
                evidence=self.evidence(head=False)))
            self.emit(self.finished(cell))
            return
        built = stage.gate in ("patch", "evidence")
        checks = self.checks(False) if stage.gate == "evidence" else []
        notes = (["2 file(s) changed"] if stage.gate == "patch" else
                 [f"{len(checks)} check(s) passed on tree {_hex(rng, 12)}"]
                 if stage.gate == "evidence" else ["handoff satisfies its contract"])
        self.emit(GatePassed(stage=stage.name, cell=cell, gate=stage.gate,
                             state=stage.produces, commit=self.head if built else None,
                             tree=_hex(rng, 40) if built else None, checks=checks, notes=notes,
                             evidence=self.evidence(head=True) if stage.gate == "evidence"
                             else None))
        self.emit(self.finished(cell))


def live(i: int, *, root: str, rel: str = LEDGER_DIR, seed: int = 7, active: bool = False,
         leftovers: bool = False) -> Lived:
    """Every decision of artifact number `i`, in order; `active`: it is still in progress."""
    life = _Life(i, root, rel, seed)
    rng = life.rng
    stages = len(life.line.stages)
    if active:
        reached = rng.randint(1, stages)
    else:
        reached = rng.choices([r for r, _ in REACHED], [w for _, w in REACHED])[0]
    if reached:
        life.tick(600, 7200)
        life.spawn()
        life.commit()  # "scout started (gptodo)"
    started = 1
    reworked = False
    while reached:
        if started == reached and not active and started < stages:
            life.tick(600, 5400)  # a person stops it: kill, then abandon
            life.emit(life.finished(life.cell, "killed", "killed: not worth the budget now"))
            life.commit()
            life.tick(60, 3600)
            life.emit(Abandoned(reason="dropped: the demand went away"))
            life.commit()
            break
        if started == reached and active:
            break  # its cell runs now
        life.hand_off()
        life.tick(30, 180)
        stage = life.view.stage
        assert stage is not None
        fail = stage.gate == "evidence" and not reworked and rng.random() < REWORK_RATE
        reworked = reworked or fail
        life.reap(fail)
        if life.view.stage is None:  # measured: the line is done; a person closes it
            life.commit()
            life.tick(600, 86400)
            life.emit(Closed.build(terminal="done: the demand is met, nothing follows"))
            life.commit()
            break
        life.spawn()  # the next stage (or the rework's next attempt), in the same commit
        life.commit()
        started += 0 if fail else 1
    runtime: dict[str, bytes] = {}
    cells_dir = f"{rel}/.runtime/cells"
    if leftovers or active:
        for cell, prompt in life.prompts.items():
            runtime[f"{cells_dir}/{cell}.prompt.md"] = prompt
            runtime[f"{rel}/.runtime/progress/{cell}.json"] = json.dumps(
                {"note": "ran the focused tests", "at": life.now.isoformat(), "count": 2}
            ).encode()
    if active and life.view.status == "running" and life.cell:
        cell = life.cell
        record = {"cell": cell, "artifact": life.aid,
                  "stage": life.view.stage.name if life.view.stage else "",
                  "role": life.view.cells[cell].role, "backend": "gptodo",
                  "started_at": life.now.isoformat(),
                  "workdir": f"{root}/.git/factory-worktrees/{cell}", "timeout_s": 1800.0,
                  "brain": root, "max_tokens": 2_000_000, "max_cost_usd": 5.0,
                  "session": f"gptodo_agent_{_hex(rng, 8)}",
                  "brief": f"{rel}/artifacts/{fanned(life.aid)}/briefs/{cell}.md"}
        runtime[f"{cells_dir}/{cell}.json"] = json.dumps(record, indent=1).encode()
    return Lived(life.decisions, runtime, life.briefs)


def _package_text(life: _Life, key: str) -> str:
    title = life.intake.title
    if key == "pr":
        return (f"# fix: {title}\n\n{life.intake.problem}\n\n## Acceptance\n\n"
                + "".join(f"- [x] {a}\n" for a in life.intake.acceptance)
                + f"\n**Factory ledger** for artifact `{life.aid}`\n" + "- evidence\n" * 20)
    if key == "release_notes":
        return f"# {title}\n\n## Fixes\n\n* {title}: the limit is configurable.\n" * 3
    if key == "changelog":
        return f"Fixed: {title.lower()}.\n"
    return f"{title} ships in the next patch release.\n"


# -- building the repo ----------------------------------------------------------------------


def git(root: Path, *args: str) -> str:
    """Run git in `root` (raises on failure)."""
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True,
                          text=True).stdout


def _render(args: tuple[str, int, int, int, int, int, int]) -> tuple[
        list[tuple[float, int, int, list[tuple[str, bytes]], str]], dict[str, bytes], int, int]:
    """Commits of artifacts [start, stop), keyed for the time-ordered merge."""
    root, start, stop, n, active, leftover_from, seed = args
    out: list[tuple[float, int, int, list[tuple[str, bytes]], str]] = []
    runtime: dict[str, bytes] = {}
    briefs = events = 0
    for i in range(start, stop):
        lived = live(i, root=root, seed=seed, active=i >= n - active,
                     leftovers=i >= leftover_from)
        for k, (d, (files, message)) in enumerate(zip(lived.decisions,
                                                      encode_all(lived.decisions), strict=True)):
            out.append((d.at.timestamp(), i, k, list(files.items()), message))
            events += len(d.events)
        runtime.update(lived.runtime)
        briefs += lived.briefs
    out.sort(key=lambda c: (c[0], c[1], c[2]))
    return out, runtime, briefs, events


def _fast_import(root: Path, commits: Iterator[tuple[float, int, int, list[tuple[str, bytes]], str]],
                 name: str, email: str) -> int:
    proc = subprocess.Popen(["git", "fast-import", "--quiet", "--done"], cwd=root,
                            stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None
    write = proc.stdin.write
    count = 0
    for at, _, _, files, message in commits:
        msg = message.encode()
        stamp = f"{name} <{email}> {int(at)} +0000"
        head = f"commit refs/heads/master\nauthor {stamp}\ncommitter {stamp}\n"
        parts = [head.encode(), b"data %d\n" % len(msg), msg, b"\n"]
        if count == 0:
            parts.append(b"from refs/heads/master^0\n")
        for path, data in files:
            parts += [b"M 100644 inline ", path.encode(), b"\ndata %d\n" % len(data), data,
                      b"\n"]
        write(b"".join(parts) + b"\n")
        count += 1
    write(b"done\n")
    proc.stdin.close()
    err = proc.stderr.read() if proc.stderr else b""
    if proc.wait() != 0:
        raise SystemExit(f"git fast-import failed: {err.decode(errors='replace')[-2000:]}")
    return count


def build(root: Path, artifacts: int, *, seed: int = 7, jobs: int | None = None,
          active: int | None = None, leftovers: int = 1000, tasks: bool = True) -> dict[str, Any]:
    """Create a brain repo at `root` whose ledger and history are made as the factory makes them.

    `active`: how many of the newest artifacts are in progress (default: 1 in 500, at least
    4); `leftovers`: the newest artifacts whose finished cells left runtime files (as before a
    `gc`). Returns counts: commits, files, briefs, events.
    """
    from ledgergen import render_task  # the same gptodo task files as the synthetic brain

    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "master")
    git(root, "config", "gc.auto", "0")  # no background gc racing the measurements
    name, _, email = ACTOR.rpartition(" <")
    git(root, "config", "user.name", name)
    git(root, "config", "user.email", email.rstrip(">"))
    (root / "README.md").write_text("# agent brain\n")
    git(root, "add", "README.md")
    git(root, "commit", "-q", "-m", "init brain")
    Ledger.init(root)
    if tasks:
        tdir = root / "tasks"
        tdir.mkdir()
        for i in range(artifacts):
            fname, raw = render_task(i)
            (tdir / fname).write_bytes(raw)
        git(root, "add", "tasks")
        git(root, "commit", "-q", "-m", f"tasks: {artifacts} task files")
    active = max(4, artifacts // 500) if active is None else active
    jobs = jobs or os.cpu_count() or 1
    step = max(1, min(250, artifacts // (jobs * 4) or 1))
    chunks = [(str(root), s, min(artifacts, s + step), artifacts, active,
               artifacts - leftovers, seed) for s in range(0, artifacts, step)]
    stats = {"briefs": 0, "events": 0}
    runtime: dict[str, bytes] = {}

    def ordered() -> Iterator[tuple[float, int, int, list[tuple[str, bytes]], str]]:
        # Chunks are consecutive artifacts and an artifact's life is short next to a chunk's
        # span, so commits are released in time order once the next chunk has begun.
        pending: list[tuple[float, int, int, list[tuple[str, bytes]], str]] = []
        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            for (commits, rt, briefs, events), nxt in zip(
                    pool.imap(_render, chunks), [*chunks[1:], None], strict=True):
                runtime.update(rt)
                stats["briefs"] += briefs
                stats["events"] += events
                pending = list(heapq.merge(pending, commits, key=lambda c: (c[0], c[1], c[2])))
                cut = (BASE_TIME + timedelta(minutes=7 * nxt[1])).timestamp() if nxt else None
                keep = 0 if cut is None else next(
                    (j for j, c in enumerate(pending) if c[0] >= cut), len(pending))
                if cut is None:
                    keep = len(pending)
                yield from pending[:keep]
                pending = pending[keep:]

    count = _fast_import(root, ordered(), name, email.rstrip(">"))
    git(root, "reset", "-q", "--hard")  # the work tree and index of the new HEAD
    for rel, data in runtime.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    files = sum(1 for _ in (root / LEDGER_DIR / "artifacts").rglob("*.yaml"))
    return {"commits": count, "files": files, "briefs": stats["briefs"],
            "events": stats["events"], "runtime": len(runtime)}


def yaml_files(root: Path) -> Iterator[Path]:
    """Every record file of the ledger (what a parse floor reads)."""
    return (p for p in (root / LEDGER_DIR / "artifacts").rglob("*.yaml") if p.is_file())


__all__ = ["Decision", "build", "encode", "encode_all", "live", "yaml_files"]
