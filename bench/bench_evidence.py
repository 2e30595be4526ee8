#!/usr/bin/env python
"""Evidence benchmark: the verify gate's total time against running its checks by hand.

    python bench/bench_evidence.py [--fix iterate-stopiteration] [--reps 5]

On a clone of the vendored more-itertools history (tests/data/upstream/) registered as a
target, one artifact is taken through the scout gate (which fixes the contract: the fix's
regression check, tied to a criterion, and the project's full suite) and the build gate (the
fix release's tree on top of the base release), and its verifier report is submitted. Then,
interleaved round by round, it measures:

- "by hand": each contract command run once, in a checkout of the built commit made
  beforehand (no checkout cost: the strictest baseline);
- "gate, base cached": `engine.judge` (the verify gate, nothing recorded) while the base
  side is in the cache of factory/.runtime/evidence — rework, or a base the scout gate
  already observed; the head side is always observed fresh (its earlier runs are removed);
- "gate, uncached": the same with the whole cache removed, so the base side runs too.

The gate makes a clean checkout per side, runs a fail-to-pass candidate twice at each side
(a flakiness check), and the suite once per side. Goals: cached <= 1.3x by hand, uncached
<= 2.3x. Nothing here is a test: the numbers depend on the machine and its load (printed).
"""
# ruff: noqa: E402 - the bytecode settings must come before the imports

from __future__ import annotations

import os
import sys
import tempfile

os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
os.environ["PYTHONPYCACHEPREFIX"] = os.path.join(tempfile.gettempdir(), "gptme-factory-bench-pyc")
sys.dont_write_bytecode = False
sys.pycache_prefix = os.environ["PYTHONPYCACHEPREFIX"]

import argparse
import platform
import shutil
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import ledgergen  # bench/, beside this file
import yaml

from gptme_factory.ledger.config import TargetConfig
from gptme_factory.ledger.store import Ledger
from gptme_factory.line import engine, transitions
from gptme_factory.line.intake import intake
from gptme_factory.line.observe import cache_root
from gptme_factory.targets import registry

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "upstream"
SUITE = "python3 -m unittest -q"


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout


def setup(work: Path, fix: dict[str, Any]) -> tuple[Ledger, str, str, list[str]]:
    """A brain and the target; an artifact built, its verifier report submitted."""
    brain = ledgergen.init_brain(work / "brain")
    clone = work / "more-itertools"
    git(work, "clone", "-q", str(DATA / "more-itertools.bundle"), str(clone))
    git(clone, "remote", "remove", "origin")
    git(clone, "checkout", "-q", "-b", "base", fix["base_commit"])
    ledger, _ = Ledger.init(brain)
    registry.add(ledger, "mi", TargetConfig(path=str(clone), base="base", checks=[SUITE]))
    ledger = Ledger.open(brain)
    aid = intake(ledger, title=fix["subject"], demand="gh:more-itertools/more-itertools#1",
                 consumers=[fix["issue"]["reporter"]], target="mi",
                 acceptance=["the bug is gone", "the suite passes"]).artifact
    s = engine.start_stage(ledger, aid)
    engine.submit(ledger, s.cell, {
        "kind": "scout_memo", "artifact": aid,
        "files": [{"path": fix["fixed_in"][0], "why": "the fix"}], "approach": "fix it",
        "verification_plan": [{"command": fix["check"], "proves": "fixed", "criteria": [0]}],
        "criteria": [{"criterion": 0, "plan": "regression test"},
                     {"criterion": 1, "plan": "suite"}]})
    assert engine.advance(ledger, aid).passed
    b = engine.start_stage(ledger, aid)
    tree = git(clone, "rev-parse", f"{fix['fix_commit']}^{{tree}}").strip()
    head = git(clone, "commit-tree", tree, "-p", str(b.base_commit), "-m", "fix").strip()
    files = git(clone, "diff", "--name-only", str(b.base_commit), head).split()
    engine.submit(ledger, b.cell, {
        "kind": "builder_patch", "artifact": aid, "status": "success", "branch": "fix",
        "base": b.base_commit, "head": head, "summary": "the fix", "files_changed": files,
        "claims": [{"criterion": 0, "claim": "fixed", "evidence": "test"},
                   {"criterion": 1, "claim": "kept", "evidence": "suite"}]})
    assert engine.advance(ledger, aid).passed
    _, view = transitions.load(ledger, aid)
    assert view.contract is not None
    commands = [c.command for c in view.contract.checks]
    v = engine.start_stage(ledger, aid)
    engine.submit(ledger, v.cell, {
        "kind": "verifier_report", "artifact": aid, "commit": head,
        "checks": [{"command": c, "exit_code": 0} for c in commands], "verdict": "pass",
        "criteria": [{"criterion": 0, "verdict": "pass", "evidence": "test"},
                     {"criterion": 1, "verdict": "pass", "evidence": "suite"}]})
    return ledger, aid, head, commands


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fix", default="iterate-stopiteration",
                        help="a fix id of tests/data/upstream/more-itertools.yaml")
    parser.add_argument("--reps", type=int, default=5, help="interleaved rounds")
    args = parser.parse_args()
    manifest = yaml.safe_load((DATA / "more-itertools.yaml").read_text(encoding="utf-8"))
    fix = next(f for f in manifest["fixes"] if f["id"] == args.fix)
    work = Path(tempfile.mkdtemp(prefix="gf-bench-evidence-"))
    os.environ.setdefault("GIT_AUTHOR_NAME", "bench")
    os.environ.setdefault("GIT_AUTHOR_EMAIL", "bench@factory.invalid")
    os.environ.setdefault("GIT_COMMITTER_NAME", "bench")
    os.environ.setdefault("GIT_COMMITTER_EMAIL", "bench@factory.invalid")
    os.environ["GPTME_FACTORY_ACTOR"] = "bench"
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    try:
        load = os.getloadavg()[0]
        ledger, aid, head, commands = setup(work, fix)
        clone = work / "more-itertools"
        by_hand = work / "by-hand"
        git(clone, "worktree", "add", "-q", "--detach", str(by_hand), head)
        cache = cache_root(ledger)
        head_cache = cache / "mi" / head

        def hand() -> None:
            for cmd in commands:
                subprocess.run(cmd, shell=True, cwd=by_hand, capture_output=True, check=False)

        def gate(cached: bool) -> None:
            shutil.rmtree(head_cache if cached else cache, ignore_errors=True)
            outcome = engine.judge(ledger, aid).outcome
            assert outcome.passed, outcome.reasons

        gate(cached=False)  # warm: the base side is in the cache from here on
        results: dict[str, list[float]] = {"by hand": [], "gate, base cached": [],
                                           "gate, uncached": []}
        for _ in range(args.reps):
            for name, fn in (("by hand", hand),
                             ("gate, base cached", lambda: gate(cached=True)),
                             ("gate, uncached", lambda: gate(cached=False))):
                start = time.perf_counter()
                fn()
                results[name].append(time.perf_counter() - start)
        med = {k: statistics.median(v) for k, v in results.items()}
        print(f"evidence bench: fix {fix['id']} ({fix['base_release']} -> {fix['fix_release']})"
              f", {len(commands)} contract checks, {args.reps} interleaved rounds; python "
              f"{platform.python_version()}, {os.cpu_count()} cpus, load {load:.2f}")
        for cmd in commands:
            print(f"  contract: {cmd}")
        print(f"{'what':<22}{'median s':>10}{'min s':>9}{'x by hand':>11}  goal")
        goals = {"gate, base cached": 1.3, "gate, uncached": 2.3}
        for name, times in results.items():
            ratio = med[name] / med["by hand"]
            goal = goals.get(name)
            verdict = "" if goal is None else (f"<= {goal}x " + ("met" if ratio <= goal
                                                                 else "MISSED"))
            print(f"{name:<22}{med[name]:>10.2f}{min(times):>9.2f}{ratio:>10.2f}x  {verdict}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
