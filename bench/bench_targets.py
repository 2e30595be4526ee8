#!/usr/bin/env python
"""Target benchmark: the verify gate's own overhead, and preparing a target worktree.

    python bench/bench_targets.py [--files 500] [--reps 11]

Builds, in a temp dir, a brain (`init`ed) and a target project — the demo's sample plus
`--files` more files, so a checkout has real work — with a bare upstream, registered as a
target whose set-up makes a venv (made once, before timing). An artifact is taken to a
submitted verify handoff on a real built commit. Then, side by side, interleaved in rounds:

1. the verify gate, `engine.judge` (read the chain, resolve the commit in the target, a fresh
   detached checkout, the target's environment (reused), the checks, remove the checkout)
   against the same check command run by hand in a fresh checkout of the same commit
   (`git worktree add --detach`, `bash -c CHECK`, `git worktree remove`): the gate's own
   overhead is the median of the paired differences, round by round. Goal: <= 0.3 s. The
   check alone in an existing checkout (its own time) is shown too: on a slow file system
   the checkout itself dominates (about 0.8 ms a file on the dev machine).
2. preparing a builder's target worktree, `cells.worktrees.prepare` (branch `factory/<cell>`
   at the stage's base in the target's git dir), against a plain `git worktree add -b`.
   Goal: <= 1.5x (median of the paired ratios). Fetching the base from the upstream (`bases.refresh`, done before a stage
   starts, not part of preparing) is shown on its own.

Medians of --reps rounds, the order inside a round alternating. Nothing here is a test: the
numbers depend on the machine and what else runs on it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import ledgergen  # noqa: E402 - bench/, beside this file

from gptme_factory.cells import worktrees  # noqa: E402
from gptme_factory.demo.run import create_sample_target  # noqa: E402
from gptme_factory.demo.sample import CHECK_COMMAND, DEMAND, FIXED_SOURCE  # noqa: E402
from gptme_factory.ledger.config import TargetConfig  # noqa: E402
from gptme_factory.ledger.store import Ledger  # noqa: E402
from gptme_factory.line import engine, gates  # noqa: E402
from gptme_factory.line.intake import intake  # noqa: E402
from gptme_factory.targets import bases, registry  # noqa: E402

SETUP = 'python3 -m venv --without-pip "$FACTORY_ENV"'


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def setup(work: Path, files: int) -> tuple[Ledger, str, Path, str]:
    """Brain + target with `files` extra files; an artifact with a submitted verify handoff."""
    brain = ledgergen.init_brain(work / "brain")
    clone, upstream = work / "project", work / "upstream.git"
    create_sample_target(clone, upstream)
    for i in range(files):
        d = clone / "pkg" / f"m{i // 100:02d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:05d}.py").write_text(f"VALUE = {i}\n" + "# padding\n" * 40)
    if files:
        git(clone, "add", "pkg")
        git(clone, "commit", "-q", "-m", "a project of some size")
        git(clone, "push", "-q", "origin", "main")
    ledger, _ = Ledger.init(brain)
    registry.add(ledger, "project", TargetConfig(
        path=str(clone), remote="origin", base="main", setup=[SETUP], checks=[CHECK_COMMAND]))
    ledger = Ledger.open(brain)
    aid = intake(ledger, **DEMAND, target="project").artifact
    from tests.targets_helpers import full_report, through_build  # the tests' real builder

    head = through_build(ledger, aid, FIXED_SOURCE)
    _, view = engine.load(ledger, aid)
    planned = gates.planned_checks(view, ledger.config.stage(view.intake.line, "verify"),
                                   [CHECK_COMMAND])  # the contract fixed at the scout gate
    v = engine.start_stage(ledger, aid)
    engine.submit(ledger, v.cell, full_report(aid, head, planned))
    res = engine.judge(ledger, aid)  # makes the environment once
    assert res.outcome.passed, res.outcome.reasons
    return ledger, aid, clone, head


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=500, help="extra files in the project")
    parser.add_argument("--reps", type=int, default=11, help="interleaved rounds")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gf-bench-targets-"))
    os.environ.setdefault("GIT_AUTHOR_NAME", "bench")
    os.environ.setdefault("GIT_AUTHOR_EMAIL", "bench@factory.invalid")
    os.environ.setdefault("GIT_COMMITTER_NAME", "bench")
    os.environ.setdefault("GIT_COMMITTER_EMAIL", "bench@factory.invalid")
    os.environ["GPTME_FACTORY_ACTOR"] = "bench"
    try:
        load = os.getloadavg()[0]
        ledger, aid, clone, head = setup(work, args.files)
        target = registry.resolve(ledger, "project")
        env = {**os.environ, "FACTORY_ENV": "", "PATH": os.environ["PATH"]}
        fixed = work / "fixed-checkout"
        git(clone, "worktree", "add", "-q", "--detach", str(fixed), head)
        _, view = engine.load(ledger, aid)
        base = git(clone, "rev-parse", f"{head}^").strip()
        results: dict[str, list[float]] = {k: [] for k in (
            "gate", "by hand", "check alone", "prepare", "plain add", "refresh")}

        def by_hand() -> None:
            path = work / "by-hand"
            git(clone, "worktree", "add", "-q", "--detach", str(path), head)
            subprocess.run(["bash", "-c", CHECK_COMMAND], cwd=path, env=env,
                           capture_output=True, check=True)
            git(clone, "worktree", "remove", "--force", str(path))

        def check_alone() -> None:
            subprocess.run(["bash", "-c", CHECK_COMMAND], cwd=fixed, env=env,
                           capture_output=True, check=True)

        def gate() -> None:
            assert engine.judge(ledger, aid).outcome.passed

        for i in range(args.reps):
            # alternate which goes first, so drift in the machine's load hits both alike
            pair = [("gate", gate), ("by hand", by_hand)]
            for key, fn in pair if i % 2 == 0 else pair[::-1]:
                results[key].append(timed(fn))
            results["check alone"].append(timed(check_alone))
            cell = f"{aid}.build.b{i:03x}"
            plain = work / f"plain-{i}"
            steps: list[tuple[str, Callable[[], object]]] = [
                ("prepare", lambda c=cell: worktrees.prepare(  # type: ignore[misc]
                    target.repo, view, c, False, base)),
                ("plain add", lambda p=plain, j=i: git(  # type: ignore[misc]
                    clone, "worktree", "add", "-q", "-f", "-b", f"plain-{j}", str(p), base))]
            for key, fn in steps if i % 2 == 0 else steps[::-1]:
                results[key].append(timed(fn))
            worktrees.discard(target.repo, target.repo.worktree_base() / cell)
            git(clone, "worktree", "remove", "--force", str(plain))
            results["refresh"].append(timed(lambda: bases.refresh(target)))
        med = {k: statistics.median(v) for k, v in results.items()}
        # paired per round: the gate's own overhead over the same work done by hand
        own = statistics.median(g - h for g, h in zip(results["gate"], results["by hand"],
                                                      strict=True))
        ratio = statistics.median(p / q for p, q in zip(results["prepare"],
                                                        results["plain add"], strict=True))
        tracked = len(git(clone, "ls-files").splitlines())
        print(f"target: {tracked} tracked files; check: `{CHECK_COMMAND}`; {args.reps} rounds, "
              "medians\n")
        print("| measurement | time |\n|---|---|")
        rows = [("verify gate, `engine.judge` (checkout, env reused, check, cleanup)", "gate"),
                ("by hand: `git worktree add --detach` + the check + `git worktree remove`",
                 "by hand"),
                ("the check alone, in an existing checkout (its own time)", "check alone"),
                ("builder worktree, `worktrees.prepare` (branch at the base, in the target)",
                 "prepare"),
                ("plain `git worktree add -f -b BRANCH PATH BASE`", "plain add"),
                ("fetching the base from the upstream, `bases.refresh` (before a stage)",
                 "refresh")]
        for label, key in rows:
            print(f"| {label} | {med[key] * 1000:.0f} ms |")
        print("\n| goal | measured | met |\n|---|---|---|")
        print(f"| gate's own overhead over the check by hand in a fresh checkout <= 0.3 s | "
              f"{own * 1000:.0f} ms (gate/by hand {med['gate'] / med['by hand']:.2f}x; over "
              f"the check alone: {(med['gate'] - med['check alone']) * 1000:.0f} ms) | "
              f"{'yes' if own <= 0.3 else 'NO'} |")
        print(f"| worktree preparation <= 1.5x plain git | {ratio:.2f}x | "
              f"{'yes' if ratio <= 1.5 else 'NO'} |")
        print(f"\nMachine: {os.uname().machine}, {os.cpu_count()} cores, Python "
              f"{sys.version.split()[0]}, {git(work, '--version').strip()}; load average "
              f"{load:.1f} before, {os.getloadavg()[0]:.1f} after.")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
