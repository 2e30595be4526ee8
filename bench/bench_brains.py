#!/usr/bin/env python
"""The synthetic brain next to a realistic one: status, verify, log, metrics, commits, memory.

    python bench/bench_brains.py [--sizes 1000,10000] [--reps 5] [--out bench/brains.md]

For each size it builds two brain repos and measures both in the same run, on this machine:

- **synthetic** (ledgergen.py, what bench_ledger.py measures): ~8 records per artifact written
  straight to flat `factory/artifacts/<id>/` folders and committed in ONE commit; no briefs, no
  history, no runtime state;
- **realistic** (realgen.py, pinned by tests/test_realgen.py against a real foreman run): one
  commit per decision with the real subjects and trailers, a committed brief next to every
  `cell_spawned`, packages, runtime records of running and finished cells, fanned-out folders.

Every figure is a CLI run (a subprocess, Python start-up included; bytecode caches as installed
packages have them), median of --reps, except the parse floor (in this process):

- `git status` (the floor for a warm `status`) and `gptme-factory status`, warm;
- `status` right after one `gptme-factory intake` (a write), and what that commit added to the
  object store (uncompressed bytes of its new commit, tree and blob objects);
- when watchman is installed, warm `status` and `status` after a write again with it running
  (views/cachewatch.py), in their own interleaved rounds with `git status` and `gptodo list`
  (the watched goals are ratios within those rounds);
- `gptodo list` over as many task files (a 275 B file per artifact against ~9 records plus
  briefs: an item-count comparison, not a byte-count one);
- `verify --full`, and the libyaml parse of every record file (its floor); `verify` after 100
  new events (100 intakes through the Python API, one commit each) since the last clean one,
  without a filesystem watcher and, when watchman is installed, with it (the watched rows);
- `log ARTIFACT` for the oldest artifact, and `git log` of the whole history;
- `metrics`, warm (its per-artifact fact cache filled by an earlier run);
- the peak resident memory of every command run (the largest process of its tree, wait4),
  of all of them and of the factory's own (the goal is the factory's: `gptodo list` is the
  largest process of all at 10,000 artifacts and more). Each command is started by a small
  launcher process (`LAUNCH`), which times it and reads its peak: a process started straight
  from this one would report *this* process's peak (Linux keeps the old memory's high-water
  mark across the `exec`), and this one has built and parsed the brain. The launcher's own
  size is the floor of every peak (a launched `true`'s peak, printed with the results).

Then it states each of issue 16's goals as met or not, for both brains at the largest size,
and the growth from the smallest size to the largest. Nothing here is a test: the numbers
depend on the machine and its load (printed).
"""
# ruff: noqa: E402 - bench_ledger's bytecode settings must come before the imports

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_ledger  # noqa: F401, I001 - imported first: it sets the bytecode cache prefix
import ledgergen
import realgen
import yaml

from bench_ledger import isolate_env, run, tool

KINDS = ("synthetic", "realistic")
# What an unwatched check cannot skip: git's `lstat` of every tracked ledger file against the
# index, as the status cache asks it (gitstore.start_changed_paths), and no more.
LSTAT_ALL = ("-c", "core.checkStat=default", "-c", "core.trustctime=true", "diff-index", "-z",
             "--name-only", "--no-renames", "--ignore-submodules", "HEAD", "--",
             "factory/artifacts")
WATCHMAN = "GPTME_FACTORY_WATCHMAN"  # gptme_factory.ledger.watcher.ENV: "0" turns it off


# Runs argv[1:] and prints its wall seconds, peak RSS (KB, its tree's largest process), exit
# code and CPU seconds (user + system, of its tree: the children it waited for included) as
# JSON on the last line of stdout; its stderr is passed on. Run with -S: no site.
LAUNCH = """
import json, os, subprocess, sys, time
t = time.perf_counter()
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(proc.pid, 0)
wall = time.perf_counter() - t
print(json.dumps([wall, usage.ru_maxrss, os.waitstatus_to_exitcode(status),
                  usage.ru_utime + usage.ru_stime]))
"""


def launch_floor_kb() -> int:
    """The peak RSS a launched command cannot read below: a launched `true`'s."""
    out = subprocess.run([sys.executable, "-S", "-c", LAUNCH, "true"], check=True,
                         capture_output=True).stdout
    return int(json.loads(out.decode().splitlines()[-1])[1])


class Runner:
    """Runs CLI commands in one brain, timing them and keeping the peak memory of each."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.peak_kb: dict[str, int] = {}
        self.cpu_s = 0.0  # the CPU time of the last command run

    def cli(self, *args: str, check: bool = True) -> float:
        """Run `args` in the brain (through LAUNCH); return its wall time (s), keep its peak."""
        proc = subprocess.run([sys.executable, "-S", "-c", LAUNCH, *args], cwd=self.root,
                              capture_output=True, check=False)
        lines = proc.stdout.decode(errors="replace").splitlines()
        if proc.returncode != 0 or not lines:
            raise SystemExit(f"the launcher failed for {' '.join(args)} ({proc.returncode}):\n"
                             f"{proc.stderr.decode(errors='replace')[-2000:]}")
        elapsed, peak, code, self.cpu_s = json.loads(lines[-1])
        if check and code != 0:
            raise SystemExit(f"{' '.join(args)} failed in {self.root} ({code}):\n"
                             f"{proc.stderr.decode(errors='replace')[-2000:]}")
        name = " ".join(Path(args[0]).name.split() + [a for a in args[1:2]])
        self.peak_kb[name] = max(self.peak_kb.get(name, 0), int(peak))
        return float(elapsed)

    def median(self, reps: int, *args: str) -> float:
        return statistics.median(self.cli(*args) for _ in range(reps))


def settle(root: Path) -> None:
    """What a long-lived brain looks like: packed, index settled, past the racy window."""
    run(root, "git", "repack", "-adq")
    run(root, "git", "prune-packed")
    run(root, "git", "status", "--porcelain")
    time.sleep(3.5)  # the newest files leave the status cache's racy-git window


def build(kind: str, root: Path, n: int) -> dict[str, Any]:
    t = time.perf_counter()
    if kind == "synthetic":
        info = ledgergen.build(root, n, 8)
        info["commits"] = int(run_out(root, "git", "rev-list", "--count", "HEAD"))
    else:
        info = realgen.build(root, n)
    settle(root)
    info["build_s"] = time.perf_counter() - t
    return info


def run_out(root: Path, *args: str) -> str:
    return subprocess.run(list(args), cwd=root, check=True, capture_output=True,
                          text=True).stdout


def parse_floor(root: Path) -> float:
    """Read and parse every record file once with libyaml (what checking all of them costs)."""
    t = time.perf_counter()
    for path in realgen.yaml_files(root):
        yaml.load(path.read_bytes(), Loader=yaml.CSafeLoader)  # noqa: S506 - the C safe loader
    return time.perf_counter() - t


def new_object_bytes(root: Path) -> int:
    """Uncompressed bytes of the objects HEAD added: its commit, changed trees and blobs."""
    out = run_out(root, "git", "diff-tree", "-r", "-t", "--no-commit-id", "HEAD^", "HEAD")
    ids = {line.split()[3] for line in out.splitlines() if line.startswith(":")}
    ids.discard("0" * 40)
    ids.add(run_out(root, "git", "rev-parse", "HEAD").strip())
    sizes = subprocess.run(["git", "cat-file", "--batch-check=%(objectsize)"], cwd=root,
                           input="\n".join(sorted(ids)) + "\n", capture_output=True, text=True,
                           check=True).stdout.split()
    return sum(int(s) for s in sizes)


def oldest_artifact(root: Path) -> str:
    """The artifact of the first ledger commit (any, if no commit names one: synthetic)."""
    from gptme_factory.ledger.store import Ledger

    out = run_out(root, "git", "log", "--reverse", "--grep=^Factory-Artifact: ",
                  "--format=%(trailers:key=Factory-Artifact,valueonly,separator=%x20)")
    named = out.split()
    return named[0] if named else min(Ledger.open(root).artifact_ids())


def hundred_events(root: Path, tag: str) -> None:
    """100 new events, one commit each, through the Python API (as the gptme tool writes)."""
    from gptme_factory.ledger.store import Ledger
    from gptme_factory.line.intake import intake

    ledger = Ledger.open(root)
    for i in range(100):
        intake(ledger, title=f"bench {tag} {i}", demand="bench", consumers=["bench"],
               acceptance=["it is measured"])


def watched_status(r: Runner, reps: int) -> dict[str, float]:
    """Warm `status` and `status` after one write with watchman running, and their floors.

    The first watched run has watchman crawl the brain and takes the watcher's clock (a full
    pass); the second is the first watched pass. Then rounds of `git status`, `status` and
    `gptodo list`, interleaved as the unwatched ones are, and writes each followed by `status`.
    """
    keys = ("git_status_watched", "warm_status_watched", "warm_watched_cpu", "gptodo_watched",
            "after_write_watched")
    if shutil.which("watchman") is None:
        return dict.fromkeys(keys, float("nan"))
    fac, gptodo = tool("gptme-factory"), tool("gptodo")
    os.environ[WATCHMAN] = "1"
    try:
        r.cli(fac, "status")
        r.cli(fac, "status")
        rounds: dict[str, list[float]] = {k: [] for k in keys}
        for _ in range(reps):
            rounds["git_status_watched"].append(r.cli("git", "status"))
            rounds["warm_status_watched"].append(r.cli(fac, "status"))
            rounds["warm_watched_cpu"].append(r.cpu_s)
            rounds["gptodo_watched"].append(r.cli(gptodo, "list"))
        for i in range(reps):
            r.cli(fac, "intake", f"bench watched write {i}", "--demand", "bench", "--consumer",
                  "bench", "--accept", "it is measured")
            rounds["after_write_watched"].append(r.cli(fac, "status"))
    finally:
        os.environ[WATCHMAN] = "0"
    return {k: statistics.median(v) for k, v in rounds.items()}


def measure(kind: str, root: Path, reps: int) -> dict[str, Any]:
    fac, gptodo = tool("gptme-factory"), tool("gptodo")
    r = Runner(root)
    m: dict[str, Any] = {}
    # First runs (unmeasured except as "first"): bytecode and page caches, the status cache.
    r.cli("git", "status")
    r.cli(gptodo, "list")
    m["first_status"] = r.cli(fac, "status")
    m["first_metrics"] = r.cli(fac, "metrics")
    m["verify_full"] = r.cli(fac, "verify", "--full")  # also remembers a clean verify
    m["floor"] = parse_floor(root)
    aid = oldest_artifact(root)
    r.cli(fac, "log", aid)
    # Fast ones in interleaved rounds, so load changes on the machine hit each alike.
    rounds: dict[str, list[float]] = {k: [] for k in (
        "git_status", "lstat_floor", "lstat_cpu", "warm_status", "gptodo", "git_log", "log",
        "warm_metrics")}
    for _ in range(reps):
        rounds["git_status"].append(r.cli("git", "status"))
        rounds["lstat_floor"].append(r.cli("git", *LSTAT_ALL))
        rounds["lstat_cpu"].append(r.cpu_s)
        rounds["warm_status"].append(r.cli(fac, "status"))
        rounds["gptodo"].append(r.cli(gptodo, "list"))
        rounds["git_log"].append(r.cli("git", "log"))
        rounds["log"].append(r.cli(fac, "log", aid))
        rounds["warm_metrics"].append(r.cli(fac, "metrics"))
    m.update({k: statistics.median(v) for k, v in rounds.items()})
    # One write, then status: what the write invalidated, and what it added to the store.
    after, written, write_s = [], [], []
    for i in range(reps):
        write_s.append(r.cli(fac, "intake", f"bench write {i}", "--demand", "bench",
                             "--consumer", "bench", "--accept", "it is measured"))
        written.append(new_object_bytes(root))
        after.append(r.cli(fac, "status"))
    m["after_write"], m["intake_cli"] = statistics.median(after), statistics.median(write_s)
    m["commit_bytes"] = statistics.median(written)
    m.update(watched_status(r, reps))
    m["unwatched_floor"] = unwatched_floor(m)
    # verify after 100 new events since the last clean one (each rep adds 100 more): with no
    # watcher, then with watchman (the first run of each kind is full when the last clean
    # one was kept the other way; the second settles it).
    for key, mode in (("verify_incr", "0"), ("verify_incr_watched", "1")):
        if mode == "1" and shutil.which("watchman") is None:
            m[key] = float("nan")
            continue
        os.environ[WATCHMAN] = mode
        r.cli(fac, "verify")
        r.cli(fac, "verify")
        incr = []
        for i in range(reps):
            hundred_events(root, f"{kind}-{mode}-{i}")
            incr.append(r.cli(fac, "verify"))
        m[key] = statistics.median(incr)
    os.environ[WATCHMAN] = "0"
    if shutil.which("watchman"):
        subprocess.run(["watchman", "watch-del", str(root)], capture_output=True, check=False)
    m["peak_mb"] = max(r.peak_kb.values()) / 1024
    m["peak_cmd"] = max(r.peak_kb, key=lambda k: r.peak_kb[k])
    ours = {k: v for k, v in r.peak_kb.items() if k.startswith("gptme-factory")}
    m["peak_ours_mb"] = max(ours.values()) / 1024
    m["peak_ours_cmd"] = max(ours, key=lambda k: ours[k])
    return m


ROWS = [
    ("commits", "commits in history"),
    ("files", "record files"),
    ("build_s", "build (setup, not a target)"),
    ("git_status", "`git status` (floor)"),
    ("lstat_floor", "git's `lstat` of every ledger file (`diff-index`: floor without a watcher)"),
    ("lstat_cpu", "... its CPU time (user + system, every core)"),
    ("unwatched_floor", "the least a warm `status` without a watcher can take here "
     "(`unwatched_floor`)"),
    ("first_status", "`status`, first run (cold cache)"),
    ("warm_status", "`status`, warm"),
    ("after_write", "`status` right after one intake"),
    ("warm_status_watched", "`status`, warm, watchman running"),
    ("after_write_watched", "`status` right after one intake, watchman running"),
    ("gptodo", "`gptodo list`, as many task files (by count: 275 B/task vs ~9 records + briefs)"),
    ("intake_cli", "one `intake` (a write, CLI)"),
    ("commit_bytes", "bytes of new objects of that commit"),
    ("floor", "libyaml parse of every record file (floor)"),
    ("verify_full", "`verify --full`"),
    ("verify_incr", "`verify` after 100 new events"),
    ("verify_incr_watched", "`verify` after 100 new events, watchman running"),
    ("git_log", "`git log` of the whole history"),
    ("log", "`log ARTIFACT` (the oldest)"),
    ("first_metrics", "`metrics`, first run"),
    ("warm_metrics", "`metrics`, warm"),
    ("peak_mb", "peak memory of any command (gptodo and git included)"),
    ("peak_ours_mb", "peak memory of the factory's commands"),
]
TIMED = {"git_status", "lstat_floor", "lstat_cpu", "unwatched_floor", "first_status", "warm_status", "after_write", "warm_status_watched",
         "after_write_watched", "gptodo", "intake_cli",
         "floor", "verify_full", "verify_incr", "verify_incr_watched", "git_log", "log", "first_metrics",
         "warm_metrics", "build_s"}


def fmt(key: str, v: Any) -> str:
    if v != v:  # NaN: not measured (no watchman here)
        return "n/a"
    if key in ("commits", "files"):
        return f"{int(v):,}"
    if key == "commit_bytes":
        return f"{v / 1024:,.1f} KB"
    if key in ("peak_mb", "peak_ours_mb"):
        return f"{v:.0f} MB"
    return f"{v:.2f} s" if v >= 1 else f"{v * 1000:.0f} ms"


def unwatched_floor(m: dict[str, Any]) -> float:
    """The least a warm `status` without a watcher can take on this machine (seconds).

    Without a watcher an in-place edit shows only in the file's own stat, so a sound pass
    `lstat`s every ledger file (git's `diff-index`: LSTAT_ALL) and does at least what a
    watched pass does besides (start-up, the cached summaries, the table; a watched pass's
    CPU includes the watchman client's few milliseconds). On this many cores neither can end
    before its own wall time, nor both before their CPU time shared out.
    """
    cores = os.cpu_count() or 1
    if m["warm_status_watched"] != m["warm_status_watched"]:
        return float("nan")  # no watchman here: no watched pass to go by
    return float(max(m["lstat_floor"], m["warm_status_watched"],
                     (m["lstat_cpu"] + m["warm_watched_cpu"]) / cores))


Goal = tuple[str, Callable[[dict[str, Any]], float], float, str]
GOALS: list[Goal] = [
    ("warm `status` <= 1.5x `git status`", lambda m: m["warm_status"] / m["git_status"], 1.5,
     "x"),
    ("warm `status` >= 20x faster than `gptodo list`",
     lambda m: m["gptodo"] / m["warm_status"], -20, "x"),
    ("`status` after one write <= 1.3x warm `status`",
     lambda m: m["after_write"] / m["warm_status"], 1.3, "x"),
    ("(`gptodo list` / 20) over the least an unwatched warm `status` can take here: >= 1 if "
     "20x is reachable without a watcher", lambda m: m["gptodo"] / 20 / m["unwatched_floor"],
     -1, "x"),
    ("warm `status` <= 1.5x `git status`, watchman running",
     lambda m: m["warm_status_watched"] / m["git_status_watched"], 1.5, "x"),
    ("warm `status` >= 20x faster than `gptodo list`, watchman running",
     lambda m: m["gptodo_watched"] / m["warm_status_watched"], -20, "x"),
    ("`status` after one write <= 1.3x warm `status`, watchman running",
     lambda m: m["after_write_watched"] / m["warm_status_watched"], 1.3, "x"),
    ("`verify` after 100 new events <= 1 s", lambda m: m["verify_incr"], 1.0, "s"),
    ("`verify` after 100 new events <= 1 s, watchman running",
     lambda m: m["verify_incr_watched"], 1.0, "s"),
    ("`verify --full` <= 2x the libyaml parse floor", lambda m: m["verify_full"] / m["floor"],
     2.0, "x"),
    ("`log ARTIFACT` <= 1.5x `git log` of everything", lambda m: m["log"] / m["git_log"], 1.5,
     "x"),
    ("warm `metrics` <= 2x warm `status`", lambda m: m["warm_metrics"] / m["warm_status"], 2.0,
     "x"),
    ("peak memory of every factory command <= 300 MB", lambda m: m["peak_ours_mb"], 300,
     "MB"),
]
GROWTH = ["warm_status", "after_write", "warm_status_watched", "after_write_watched",
          "intake_cli", "verify_full", "verify_incr", "verify_incr_watched",
          "log", "warm_metrics", "commit_bytes", "peak_ours_mb"]
# What one write costs must stay flat. `status` right after a write contains a warm `status`,
# which may grow with the ledger: its own share is its ratio to a warm one (RATIOS).
PER_WRITE = {"intake_cli", "verify_incr", "verify_incr_watched", "commit_bytes"}
RATIOS = [("`status` right after one intake / warm `status`", "after_write", "warm_status"),
          ("the same, watchman running", "after_write_watched", "warm_status_watched")]


def report(results: dict[int, dict[str, dict[str, Any]]], argv: list[str], load: str) -> str:
    sizes = sorted(results)
    big = sizes[-1]
    head = "| measurement | " + " | ".join(f"{n:,} {k}" for n in sizes for k in KINDS) + " |"
    lines = [head, "|---" * (1 + 2 * len(sizes)) + "|"]
    for key, label in ROWS:
        cells = [fmt(key, results[n][k][key]) for n in sizes for k in KINDS]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    # issue 16 states its goals at 10,000 artifacts: a table for each size from there up
    for at in [n for n in sizes if n >= 10_000] or [big]:
        lines += ["", f"| goal (issue 16), at {at:,} artifacts | synthetic | realistic | met "
                  "(realistic) |", "|---|---|---|---|"]
        for name, value, limit, unit in GOALS:
            got = {k: value(results[at][k]) for k in KINDS}
            ok = got["realistic"] >= -limit if limit < 0 else got["realistic"] <= limit
            shown = {k: ("n/a" if v != v else f"{v:.0f} MB" if unit == "MB"
                         else f"{v:.2f} {unit}" if unit == "s" else f"{v:.2f}x")
                     for k, v in got.items()}
            lines.append(f"| {name} | {shown['synthetic']} | {shown['realistic']} | "
                         f"{'yes' if ok else 'NO'} |")
    if len(sizes) > 1:
        small = sizes[0]
        scale = big / small
        lines += ["", f"| growth from {small:,} to {big:,} artifacts ({scale:.0f}x) | synthetic "
                  "| realistic | met (realistic) |", "|---|---|---|---|"]
        for key in GROWTH:
            label = dict(ROWS)[key]
            g = {k: results[big][k][key] / results[small][k][key] for k in KINDS}
            if any(v != v for v in g.values()):
                continue  # not measured here
            flat = key in PER_WRITE
            ok = g["realistic"] <= (1.5 if flat else scale)
            bound = "flat (<= 1.5x)" if flat else f"<= {scale:.0f}x"
            lines.append(f"| {label}: {bound} | {g['synthetic']:.2f}x | {g['realistic']:.2f}x | "
                         f"{'yes' if ok else 'NO'} |")
        for label, top, bottom in RATIOS:
            g = {k: (results[big][k][top] / results[big][k][bottom])
                 / (results[small][k][top] / results[small][k][bottom]) for k in KINDS}
            if any(v != v for v in g.values()):
                continue
            ok = g["realistic"] <= 1.5
            lines.append(f"| {label}: flat (<= 1.5x) | {g['synthetic']:.2f}x | "
                         f"{g['realistic']:.2f}x | {'yes' if ok else 'NO'} |")
    peaks = ", ".join(f"{n:,} {k}: {results[n][k]['peak_cmd']} (of the factory's: "
                      f"{results[n][k]['peak_ours_cmd']})" for n in sizes for k in KINDS)
    git_version = run_out(Path.cwd(), "git", "--version").strip()
    if shutil.which("watchman"):
        git_version += f", watchman {run_out(Path.cwd(), 'watchman', '--version').strip()}"
    lines += [
        "",
        f"Command: `python bench/bench_brains.py {' '.join(argv)}`".replace("  ", " "),
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {git_version}, PyYAML {yaml.__version__}; load average "
        f"{load}. Medians; CLI timings include Python start-up. Peaks cannot read below the "
        f"launcher's {launch_floor_kb() / 1024:.0f} MB. The largest process per brain: {peaks}.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000", help="artifact counts, comma-separated")
    ap.add_argument("--reps", type=int, default=5, help="repetitions of each measurement")
    ap.add_argument("--kinds", default=",".join(KINDS),
                    help="which brains, comma-separated (the goal tables need both)")
    ap.add_argument("--out", type=Path, help="also write the tables to this file")
    ap.add_argument("--workdir", type=Path, help="build the repos here (kept) instead of a temp dir")
    args = ap.parse_args()
    sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    tmp = Path(tempfile.mkdtemp(prefix="factory-brains-")) if args.workdir is None \
        else args.workdir
    tmp.mkdir(parents=True, exist_ok=True)
    isolate_env(tmp)
    # No gptme conversations of this machine's other work: running cells' logs are looked
    # for under HOME/XDG_DATA_HOME, which a shared machine fills with other helpers' runs.
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    os.environ.update({"HOME": str(home), "XDG_DATA_HOME": str(home / ".local" / "share"),
                       "XDG_CONFIG_HOME": str(home / ".config"),
                       "XDG_STATE_HOME": str(home / ".local" / "state")})
    os.environ.pop("GPTME_LOGS_HOME", None)
    load_before = os.getloadavg()
    results: dict[int, dict[str, dict[str, Any]]] = {}
    try:
        for n in sizes:
            results[n] = {}
            for kind in [k for k in KINDS if k in args.kinds.split(",")]:
                root = tmp / f"{kind}-{n}"
                if root.exists():
                    shutil.rmtree(root)
                print(f"[{n:,} {kind}] building {root} ...", file=sys.stderr, flush=True)
                info = build(kind, root, n)
                print(f"[{n:,} {kind}] {info['files']:,} files, {info['commits']:,} commits in "
                      f"{info['build_s']:.0f} s; measuring ...", file=sys.stderr, flush=True)
                res: dict[str, Any] = {**measure(kind, root, args.reps), **info}
                results[n][kind] = res
                print(f"[{n:,} {kind}] " + ", ".join(f"{k} {fmt(k, res[k])}" for k, _ in ROWS),
                      file=sys.stderr, flush=True)
                if args.workdir is None:
                    shutil.rmtree(root, ignore_errors=True)
    finally:
        if args.workdir is None:
            shutil.rmtree(tmp, ignore_errors=True)
    load = f"{load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after"
    if any(len(r) < len(KINDS) for r in results.values()):  # one brain only: its figures
        print(json.dumps(results, indent=1, default=str))
        return
    text = report(results, sys.argv[1:], load)
    print(text)
    if args.out:
        args.out.write_text(text)
        # every figure measured, the paired floors of the goal ratios included
        args.out.with_suffix(".json").write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
