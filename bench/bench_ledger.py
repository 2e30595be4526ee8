#!/usr/bin/env python
"""Ledger benchmark: status, commits and gptodo side by side, at two ledger sizes.

    python bench/bench_ledger.py [--artifacts 10000] [--events 8] [--out bench/results.md]

For each size (1,000 artifacts, then --artifacts) it builds a temp brain repo with a real,
verifiable ledger of ~events files per artifact plus as many gptodo task files (ledgergen.py),
then measures, in the same run and on the same repo:

- parsing every ledger file once with libyaml's CSafeLoader (the floor for a cold status);
- `gptme-factory status` cold (factory/.runtime deleted) and warm, through the CLI (a
  subprocess: Python start-up included) and through the Python API;
- `gptodo list` over the task files (a subprocess);
- a plain `git add` + `git commit` of one small file, and one ledger event committed through
  `Ledger.append`, `engine.submit` (the Python API the gptme tool uses) and
  `gptme-factory submit` (the CLI), interleaved round by round so load changes hit all alike.

Fast measurements report the median of --reps runs, slow ones of --slow-reps. Nothing here is
a test: numbers depend on the machine and on what else runs on it (the load is printed).
"""
# ruff: noqa: E402 - the bytecode settings must come before the imports

from __future__ import annotations

import os
import sys
import tempfile

# Bytecode caches, as any installed package has them (this sandbox sets
# PYTHONDONTWRITEBYTECODE=1, which would make every CLI run recompile gptme_factory from
# source). They go to a prefix in the temp dir, for this process and the CLIs it runs alike.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
os.environ["PYTHONPYCACHEPREFIX"] = os.path.join(tempfile.gettempdir(), "gptme-factory-bench-pyc")
sys.dont_write_bytecode = False
sys.pycache_prefix = os.environ["PYTHONPYCACHEPREFIX"]

import argparse
import platform
import random
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import ledgergen

from gptme_factory.ledger.store import Ledger
from gptme_factory.views.status import load_line_statuses, load_summaries

BIN = Path(sys.executable).parent
TARGETS = "warm status <= 1 s and >= 20x faster than gptodo list; cold <= 1.5x the floor; " \
          "commit via Python API <= 1.5x plain git, via CLI <= 2.5x"


def tool(name: str) -> str:
    """The console script next to this interpreter (not a pyenv shim, which adds ~50 ms)."""
    path = BIN / name
    return str(path) if path.exists() else (shutil.which(name) or name)


def clock(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def median_of(reps: int, fn: Callable[[], Any], before: Callable[[], Any] | None = None) -> float:
    times = []
    for _ in range(reps):
        if before:
            before()
        times.append(clock(fn))
    return statistics.median(times)


def run(root: Path, *args: str, stdin: bytes | None = None, check: bool = True) -> None:
    proc = subprocess.run(list(args), cwd=root, input=stdin, capture_output=True)
    if check and proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({proc.returncode}):\n"
                         f"{proc.stderr.decode(errors='replace')[-2000:]}")


def isolate_env(tmp: Path) -> None:
    """A fixed git identity and no user/system git config: plain git and ours run alike."""
    gitconfig = tmp / "gitconfig"
    gitconfig.write_text("")
    os.environ.update({
        "GIT_CONFIG_GLOBAL": str(gitconfig), "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "Bench", "GIT_AUTHOR_EMAIL": "bench@factory.invalid",
        "GIT_COMMITTER_NAME": "Bench", "GIT_COMMITTER_EMAIL": "bench@factory.invalid",
        "GPTME_FACTORY_ACTOR": "bench", "GPTME_TIKTOKEN_TIMEOUT": "0",
        # no filesystem watcher but where a bench asks for one (bench_brains' watched rows)
        "GPTME_FACTORY_WATCHMAN": "0",
    })
    for var in ("GPTME_FACTORY_REPO", "GPTME_FACTORY_DIR", "GIT_DIR", "GIT_WORK_TREE",
                "GIT_INDEX_FILE", "GPTODO_TASKS_DIR", "TASKS_REPO_ROOT"):
        os.environ.pop(var, None)


def build(root: Path, artifacts: int, events: int) -> dict[str, Any]:
    t = time.perf_counter()
    info = ledgergen.build(root, artifacts, events)
    # What a long-lived brain repo looks like: packed (git gc), index settled.
    run(root, "git", "repack", "-adq")
    run(root, "git", "prune-packed")
    run(root, "git", "config", "--unset", "gc.auto")  # measure git as users run it
    run(root, "git", "status", "-uno", "--porcelain")
    info["build_s"] = time.perf_counter() - t
    time.sleep(3.5)  # let the newest directories leave the status cache's racy window
    return info


def floor(root: Path) -> float:
    """Read every ledger file once and parse it with CSafeLoader: what any cold status costs."""
    def parse_all() -> None:
        for adir in os.scandir(root / "factory" / "artifacts"):
            for f in os.scandir(adir.path):
                with open(f.path, "rb") as fh:
                    yaml.load(fh.read(), Loader=yaml.CSafeLoader)  # noqa: S506
    return clock(parse_all)


def status_api(root: Path) -> None:
    ledger = Ledger.open(root)
    summaries = load_summaries(ledger)
    load_line_statuses(ledger, summaries, datetime.now(timezone.utc))


def running_cells(root: Path) -> list[tuple[str, str, str]]:
    """(artifact, cell, stage) of every artifact whose stage is running (it can hand off)."""
    summaries = load_summaries(Ledger.open(root))
    return [(s.artifact, s.cell, s.stage) for s in summaries
            if s.status == "running" and s.cell and s.stage]


def handoff_for(root: Path, aid: str, stage: str) -> dict[str, Any]:
    ledger = Ledger.open(root)
    cfg = ledger.config
    contract = cfg.contract_name(cfg.stage("default", stage))
    return ledgergen._handoff(contract, aid, random.Random(aid), 1)


def measure(root: Path, n: int, reps: int, slow_reps: int, verify: bool) -> dict[str, float]:
    r: dict[str, float] = {}
    fac, gptodo = tool("gptme-factory"), tool("gptodo")
    cache = root / "factory" / ".runtime"

    def drop_cache() -> None:
        shutil.rmtree(cache, ignore_errors=True)

    if verify:
        from gptme_factory.line.verify import verify_ledger
        problems = verify_ledger(Ledger.open(root))
        if problems:
            raise SystemExit(f"generated ledger does not verify: {problems[:3]}")
    # Warm-up (unmeasured): bytecode caches and page cache, for every program alike.
    run(root, gptodo, "list")
    run(root, fac, "status")
    run(root, fac, "submit", "--cell", "warm-up.scout.0000", os.devnull, check=False)
    # Slow ones in rounds, so load changes on the machine hit each alike.
    slow: dict[str, list[float]] = {"floor": [], "cold_cli": [], "cold_api": []}
    for _ in range(slow_reps):
        slow["floor"].append(floor(root))
        drop_cache()
        slow["cold_cli"].append(clock(lambda: run(root, fac, "status")))
        drop_cache()
        slow["cold_api"].append(clock(lambda: status_api(root)))
    r.update({k: statistics.median(v) for k, v in slow.items()})
    # The cache is warm now (the last cold run wrote it). gptodo runs between warm runs.
    warm: dict[str, list[float]] = {"gptodo": [], "warm_cli": [], "warm_api": []}
    per_round = -(-reps // slow_reps)
    for _ in range(slow_reps):
        warm["gptodo"].append(clock(lambda: run(root, gptodo, "list")))
        for _ in range(per_round):
            warm["warm_cli"].append(clock(lambda: run(root, fac, "status")))
            warm["warm_api"].append(clock(lambda: status_api(root)))
    r.update({k: statistics.median(v) for k, v in warm.items()})

    # Commits, interleaved: one round = plain git, Ledger.append, engine.submit, CLI submit.
    cells = running_cells(root)
    if len(cells) < 3 * reps:
        raise SystemExit(f"only {len(cells)} running cells: use more artifacts")
    random.Random(1).shuffle(cells)
    times: dict[str, list[float]] = {"git": [], "append": [], "submit_api": [], "submit_cli": []}
    (root / "notes").mkdir(exist_ok=True)
    for i in range(reps):
        for key, value in commit_round(root, fac, cells[3 * i : 3 * i + 3], i).items():
            times[key].append(value)
    r.update({k: statistics.median(v) for k, v in times.items()})
    return r


def commit_round(root: Path, fac: str, cells: list[tuple[str, str, str]], i: int) -> dict[str, float]:
    """One commit of each kind: plain git, Ledger.append, engine.submit, CLI submit."""
    from gptme_factory.line.engine import submit

    out: dict[str, float] = {}
    note = f"notes/bench-{i}.md"
    (root / note).write_text(f"# note {i}\n")

    def plain_git() -> None:
        run(root, "git", "add", note)
        run(root, "git", "commit", "-q", "-m", f"note {i}")

    out["git"] = clock(plain_git)

    aid, cell, stage = cells[0]
    handoff = handoff_for(root, aid, stage)

    def via_append() -> None:
        ledger = Ledger.open(root)
        cfg = ledger.config
        contract = cfg.contract_name(cfg.stage("default", stage))
        data = cfg.contract_model(contract).model_validate(handoff).model_dump(mode="json")
        with ledger.locked():
            chain = ledger.read(aid)
            ledger.append(chain, {"kind": "handoff_submitted", "stage": stage, "cell": cell,
                                  "contract": contract, "handoff": data}, by=cell)

    out["append"] = clock(via_append)

    aid2, cell2, stage2 = cells[1]
    handoff2 = handoff_for(root, aid2, stage2)
    out["submit_api"] = clock(lambda: submit(Ledger.open(root), cell2, handoff2))

    aid3, cell3, stage3 = cells[2]
    path = root.parent / f"handoff-{root.name}-{i}.yaml"
    path.write_bytes(yaml.safe_dump(handoff_for(root, aid3, stage3), sort_keys=False).encode())
    out["submit_cli"] = clock(lambda: run(root, fac, "submit", "--cell", cell3, str(path)))
    return out


ROWS = [
    ("files", "ledger files (artifacts x events + intake)"),
    ("build_s", "build: generate + `git add` + `git commit` + repack (setup, not a target)"),
    ("floor", "parse every ledger file once, CSafeLoader (the floor)"),
    ("cold_cli", "`gptme-factory status`, cold (no cache), CLI"),
    ("cold_api", "`status`, cold, Python API"),
    ("warm_cli", "`gptme-factory status`, warm, CLI"),
    ("warm_api", "`status`, warm, Python API"),
    ("gptodo", "`gptodo list` over as many task files, CLI"),
    ("git", "plain `git add` + `git commit` of one small file"),
    ("append", "one event: `Ledger.append` under `ledger.locked()` (Python API)"),
    ("submit_api", "one handoff: `engine.submit` (Python API, what the gptme tool calls)"),
    ("submit_cli", "one handoff: `gptme-factory submit` (CLI)"),
]


def fmt(key: str, v: float) -> str:
    if key == "files":
        return f"{int(v):,}"
    return f"{v:.2f} s" if v >= 1 else f"{v * 1000:.0f} ms"


def report(results: dict[int, dict[str, float]], argv: list[str], load: str) -> str:
    sizes = sorted(results)
    big = results[sizes[-1]]
    head = "| measurement | " + " | ".join(f"{n:,} artifacts" for n in sizes)
    head += " | growth |" if len(sizes) > 1 else " |"
    lines = [head, "|---" * (len(sizes) + 1 + (len(sizes) > 1)) + "|"]
    for key, label in ROWS:
        cells = [fmt(key, results[n][key]) for n in sizes]
        growth = f" {results[sizes[-1]][key] / results[sizes[0]][key]:.1f}x |" \
            if len(sizes) > 1 else ""
        lines.append(f"| {label} | " + " | ".join(cells) + " |" + growth)

    def ratio(a: str, b: str) -> float:
        return big[a] / big[b]

    checks = [
        ("warm status (CLI) <= 1 s", fmt("warm_cli", big["warm_cli"]), big["warm_cli"] <= 1),
        ("warm status >= 20x faster than `gptodo list`",
         f"{big['gptodo'] / big['warm_cli']:.0f}x (CLI), {big['gptodo'] / big['warm_api']:.0f}x (API)",
         big["gptodo"] / big["warm_cli"] >= 20),
        ("cold status <= 1.5x the parse floor",
         f"{ratio('cold_cli', 'floor'):.2f}x (CLI), {ratio('cold_api', 'floor'):.2f}x (API)",
         ratio("cold_cli", "floor") <= 1.5),
        ("one commit, Python API <= 1.5x plain git",
         f"{ratio('append', 'git'):.2f}x (append), {ratio('submit_api', 'git'):.2f}x (submit)",
         max(ratio("append", "git"), ratio("submit_api", "git")) <= 1.5),
        ("one commit, CLI <= 2.5x plain git", f"{ratio('submit_cli', 'git'):.2f}x",
         ratio("submit_cli", "git") <= 2.5),
    ]
    lines += ["", f"| target (at {sizes[-1]:,} artifacts) | measured | met |", "|---|---|---|"]
    lines += [f"| {name} | {value} | {'yes' if ok else 'NO'} |" for name, value, ok in checks]
    lines += [
        "",
        f"Command: `python bench/bench_ledger.py {' '.join(argv)}`".replace("  ", " "),
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {subprocess.run(['git', '--version'], capture_output=True, text=True).stdout.strip()}, "
        f"PyYAML {yaml.__version__} (libyaml {'yes' if yaml.__with_libyaml__ else 'no'}); "
        f"load average {load}.",
        "Medians, measured in interleaved rounds; cold = no status cache (the OS page cache "
        "is warm); CLI timings include Python start-up, with bytecode caches as installed "
        "packages have them.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifacts", type=int, default=10_000)
    ap.add_argument("--events", type=int, default=8, help="mean events per artifact")
    ap.add_argument("--small", type=int, default=1_000, help="the smaller size (0: skip)")
    ap.add_argument("--reps", type=int, default=7, help="repetitions of fast measurements")
    ap.add_argument("--slow-reps", type=int, default=3, help="repetitions of slow ones")
    ap.add_argument("--out", type=Path, help="also write the table to this file")
    ap.add_argument("--workdir", type=Path, help="build the repos here (kept) instead of a temp dir")
    ap.add_argument("--verify-all", action="store_true", help="also `verify` the large ledger")
    args = ap.parse_args()
    sizes = sorted({n for n in (args.small, args.artifacts) if n > 0})
    tmp = Path(tempfile.mkdtemp(prefix="factory-bench-")) if args.workdir is None else args.workdir
    tmp.mkdir(parents=True, exist_ok=True)
    isolate_env(tmp)
    load_before = os.getloadavg()
    results: dict[int, dict[str, float]] = {}
    try:
        for n in sizes:
            root = tmp / f"brain-{n}"
            if root.exists():
                shutil.rmtree(root)
            print(f"[{n:,} artifacts] building {root} ...", file=sys.stderr, flush=True)
            info = build(root, n, args.events)
            print(f"[{n:,}] {info['files']:,} files in {info['build_s']:.1f} s; measuring ...",
                  file=sys.stderr, flush=True)
            res = measure(root, n, args.reps, args.slow_reps,
                          verify=n == sizes[0] or args.verify_all)
            res.update(files=info["files"], build_s=info["build_s"])
            results[n] = res
            print(f"[{n:,}] " + ", ".join(f"{k} {fmt(k, v)}" for k, v in res.items()),
                  file=sys.stderr, flush=True)
    finally:
        if args.workdir is None:
            shutil.rmtree(tmp, ignore_errors=True)
    load_after = os.getloadavg()
    load = f"{load_before[0]:.1f} before, {load_after[0]:.1f} after"
    text = report(results, sys.argv[1:], load)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
