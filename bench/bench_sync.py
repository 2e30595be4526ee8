#!/usr/bin/env python
"""Shared-ledger benchmark: sync, claims and many writers, side by side with plain git.

    python bench/bench_sync.py [--artifacts 10000] [--events 8] [--reps 3] [--out FILE]

It builds a brain of --artifacts artifacts (~--events events each, ledgergen.py), shares it
through a bare remote, clones it, and measures in one run:

1. `sync` of 100 new events between two clones, against plain `git fetch` + `git merge` +
   `git push` of the same commits on an identical copy (same repo, same remote state):
   - "in": the other clone pushed 100 events, this one has none of its own;
   - "both": the other clone pushed 100 events and this one has 100 unpushed ones
     (`sync` replays them on the remote's tip; plain git makes a merge commit).
   Copies (hard links) are made before each round, so every round starts from one state.
2. A claim round trip (`start_stage` through the Python API, and `gptme-factory start`
   through the CLI: commit, compare-and-swap push, land) against one plain `git push` of a
   commit made beforehand, interleaved round by round on the same clone and remote.
3. 20 concurrent writer processes in one checkout (a fresh brain, the big clone, and the big
   clone with git's split index, `git update-index --split-index`, which makes each index
   write cost what changed), each recording --writer-events events: events acknowledged per
   second, lock wait p50/p95/max, each event's latency, lost writes (acknowledged but not in
   HEAD), and index.lock errors seen by any writer.

Nothing here is a test: the numbers depend on the machine and its load (printed).
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
import json
import platform
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import ledgergen

from gptme_factory.ledger.store import Ledger
from gptme_factory.ledger.sync import sync
from gptme_factory.line import engine
from gptme_factory.line.intake import intake

BIN = Path(sys.executable).parent
DEMAND: dict[str, Any] = {"demand": "gh:acme/app#1", "consumers": ["erik"],
                          "acceptance": ["it works"]}


def run(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(list(args), cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed in {cwd} ({proc.returncode}):\n"
                         f"{proc.stderr[-2000:]}")
    return proc.stdout


def clock(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def isolate_env(tmp: Path) -> None:
    gitconfig = tmp / "gitconfig"
    gitconfig.write_text("")
    os.environ.update({
        "GIT_CONFIG_GLOBAL": str(gitconfig), "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "Bench", "GIT_AUTHOR_EMAIL": "bench@factory.invalid",
        "GIT_COMMITTER_NAME": "Bench", "GIT_COMMITTER_EMAIL": "bench@factory.invalid",
        "GPTME_FACTORY_ACTOR": "bench", "GPTME_TIKTOKEN_TIMEOUT": "0",
        "GPTME_FACTORY_NO_WATCHDOG": "1",
    })
    for var in ("GPTME_FACTORY_REPO", "GPTME_FACTORY_DIR", "GIT_DIR", "GIT_WORK_TREE",
                "GIT_INDEX_FILE", "GPTME_FACTORY_OFFLINE"):
        os.environ.pop(var, None)


def share(root: Path) -> None:
    cfg = root / "factory" / "factory.yaml"
    cfg.write_text(cfg.read_text() + "sync:\n  remote: origin\n")
    run(root, "git", "add", "factory/factory.yaml")
    run(root, "git", "commit", "-q", "-m", "share the ledger through origin")


def build(tmp: Path, artifacts: int, events: int) -> tuple[Path, Path]:
    """(bare remote, its first clone) of a big shared brain."""
    root = tmp / "brain"
    ledgergen.build(root, artifacts, events)
    share(root)
    run(root, "git", "repack", "-adq")
    remote = tmp / "remote.git"
    run(tmp, "git", "clone", "-q", "--bare", str(root), str(remote))
    shutil.rmtree(root)
    return remote, clone(remote, tmp / "seed")


def clone(remote: Path, dest: Path) -> Path:
    run(dest.parent, "git", "clone", "-q", str(remote), str(dest))
    run(dest, "git", "config", "gc.auto", "0")  # no background gc racing the measurements
    return dest


def add_events(repo: Path, n: int, tag: str, *, start: bool = True) -> list[str]:
    """`n` new events in `n` commits (intakes, each followed by its stage's start unless not
    `start`), not pushed."""
    os.environ["GPTME_FACTORY_OFFLINE"] = "1"
    try:
        ledger = Ledger.open(repo)
        aids = []
        for i in range(n // 2 if start else n):
            aid = intake(ledger, title=f"{tag} {i}", **DEMAND).artifact
            if start:
                engine.start_stage(ledger, aid)
            aids.append(aid)
        return aids
    finally:
        del os.environ["GPTME_FACTORY_OFFLINE"]


def copy(src: Path, dest: Path, remote: Path | None = None) -> Path:
    """A copy of a repo that git can change freely: hard links (`cp -al`), because git never
    writes a file in place (objects are immutable; the index, refs and checked-out files are
    replaced by a rename), so the copies share nothing they write."""
    if dest.exists():
        shutil.rmtree(dest)
    run(src.parent, "cp", "-al", str(src), str(dest))
    for name in (".git/factory.lock", ".git/FETCH_HEAD"):  # the two files written in place
        (dest / name).unlink(missing_ok=True)
    if remote is not None:
        run(dest, "git", "remote", "set-url", "origin", str(remote))
    return dest


def plain_sync(repo: Path) -> None:
    run(repo, "git", "fetch", "-q", "origin")
    run(repo, "git", "merge", "-q", "--no-edit", "origin/master")
    run(repo, "git", "push", "-q", "origin", "HEAD:master")


def cli_sync(repo: Path) -> None:
    run(repo, str(BIN / "gptme-factory"), "sync")


def api_sync(repo: Path) -> None:
    sync(Ledger.open(repo))


def measure_sync(tmp: Path, remote: Path, seed: Path, reps: int) -> dict[str, list[float]]:
    """Rounds of the two sync scenarios, each on fresh identical copies."""
    other = clone(remote, tmp / "other")
    mine_in = copy(seed, tmp / "mine-in")  # nothing of its own
    add_events(other, 100, "theirs")
    run(other, "git", "push", "-q", "origin", "HEAD:master")
    mine_both = copy(seed, tmp / "mine-both")
    add_events(mine_both, 100, "ours")
    out: dict[str, list[float]] = {k: [] for k in (
        "in_plain", "in_cli", "in_api", "both_plain", "both_cli", "both_api")}
    for rep in range(reps):
        for scenario, base in (("in", mine_in), ("both", mine_both)):
            ways: list[tuple[str, Callable[[Path], None]]] = [
                ("plain", plain_sync), ("cli", cli_sync), ("api", api_sync)]
            if rep % 2:
                ways.reverse()
            for way, fn in ways:
                r = copy(remote, tmp / f"r-{way}")
                repo = copy(base, tmp / f"w-{way}", remote=r)
                out[f"{scenario}_{way}"].append(clock(lambda fn=fn, repo=repo: fn(repo)))
                if way != "plain":
                    check_synced(repo, r)
        print(f"  sync round {rep + 1}: " + ", ".join(
            f"{k} {v[-1]:.2f}s" for k, v in out.items()), file=sys.stderr, flush=True)
    return out


def check_synced(repo: Path, remote: Path) -> None:
    """The synced clone equals its remote, has no merge commit, and verifies clean."""
    head = run(repo, "git", "rev-parse", "HEAD").strip()
    assert head == run(remote, "git", "rev-parse", "master").strip(), repo
    assert run(repo, "git", "status", "--porcelain", "-uno") == "", repo


def measure_claims(tmp: Path, remote: Path, seed: Path, reps: int) -> dict[str, list[float]]:
    """Claim round trips (API, CLI) interleaved with plain pushes, on one clone and remote."""
    r = copy(remote, tmp / "r-claims")
    repo = copy(seed, tmp / "claims", remote=r)
    run(repo, "git", "pull", "-q", "--ff-only", "origin", "master")
    pending = add_events(repo, 2 * reps, "claim", start=False)
    run(repo, "git", "push", "-q", "origin", "HEAD:master")
    ledger = Ledger.open(repo)
    out: dict[str, list[float]] = {"push": [], "commit_push": [], "claim_api": [],
                                   "claim_cli": []}
    notes = repo / "factory" / "bench"
    notes.mkdir(exist_ok=True)
    for i in range(reps):
        # plain: a commit made beforehand (not timed), then one `git push` of it
        (notes / f"note-{i}.txt").write_text(f"{i}\n")
        run(repo, "git", "add", str(notes / f"note-{i}.txt"))
        run(repo, "git", "commit", "-q", "-m", f"bench note {i}")
        out["push"].append(clock(lambda: run(repo, "git", "push", "-q", "origin",
                                             "HEAD:master")))

        def by_hand(i: int = i) -> None:  # what a claim is, done with plain git
            (notes / f"hand-{i}.txt").write_text(f"{i}\n")
            run(repo, "git", "add", str(notes / f"hand-{i}.txt"))
            run(repo, "git", "commit", "-q", "-m", f"bench by hand {i}")
            run(repo, "git", "push", "-q", "origin", "HEAD:master")

        out["commit_push"].append(clock(by_hand))
        aid = pending.pop()
        out["claim_api"].append(clock(lambda aid=aid: engine.start_stage(ledger, aid)))
        aid = pending.pop()
        out["claim_cli"].append(clock(lambda aid=aid: run(
            repo, str(BIN / "gptme-factory"), "start", aid)))
    return out


WRITER = """
import json, os, sys, time
from gptme_factory.ledger.store import Ledger
from gptme_factory.line.intake import intake
repo, go, name, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
ledger = Ledger.open(repo)
ledger.config
while not os.path.exists(go):
    time.sleep(0.002)
latencies = []
for i in range(n):
    t = time.perf_counter()
    made = intake(ledger, title=f"{name} {i}", demand="gh:acme/app#1", consumers=["erik"],
                  acceptance=["it works"])
    latencies.append(time.perf_counter() - t)
    print(json.dumps(made.artifact), flush=True)
print(json.dumps({"waits": ledger.lock_waits, "latencies": latencies}), flush=True)
"""


def measure_writers(repo: Path, writers: int, per_writer: int) -> dict[str, float]:
    """`writers` processes recording `per_writer` events each into one checkout."""
    go = repo.parent / f"go-{repo.name}"
    go.unlink(missing_ok=True)
    env = {**os.environ, "GPTME_FACTORY_OFFLINE": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(repo), str(go), f"w{w}",
                               str(per_writer)], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for w in range(writers)]
    time.sleep(3)  # every writer started and waiting
    start = time.perf_counter()
    go.touch()
    acked: list[str] = []
    waits: list[float] = []
    latencies: list[float] = []
    errors = index_lock = 0
    for p in procs:
        out, err = p.communicate(timeout=1800)
        errors += p.returncode != 0
        index_lock += err.count("index.lock")
        for line in out.splitlines():
            item = json.loads(line)
            if isinstance(item, dict):
                waits += item["waits"]
                latencies += item["latencies"]
            else:
                acked.append(item)
    wall = time.perf_counter() - start
    folders = run(repo, "git", "ls-tree", "-r", "-d", "--name-only", "HEAD",
                  "factory/artifacts/").split()
    present = {f.rpartition("/")[2] for f in folders}  # ids, in either layout
    lost = sum(1 for aid in acked if aid not in present)
    waits.sort()
    latencies.sort()
    return {"events": len(acked), "wall": wall, "per_s": len(acked) / wall,
            "p50": statistics.median(waits), "p95": waits[int(0.95 * (len(waits) - 1))],
            "max": waits[-1], "ack_p50": statistics.median(latencies),
            "ack_p95": latencies[int(0.95 * (len(latencies) - 1))],
            "lost": lost, "errors": errors, "index_lock": index_lock}


def fmt(v: float) -> str:
    return f"{v:.2f} s" if v >= 1 else f"{v * 1000:.0f} ms"


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def report(sync_t: dict[str, list[float]], claims: dict[str, list[float]],
           writers: dict[str, dict[str, float]], args: argparse.Namespace, load: str) -> str:
    lines = [f"### Sync of 100 new events between two clones ({args.artifacts:,} artifacts)",
             "", "| scenario | plain fetch+merge+push | `sync` CLI | `sync` API | CLI ratio | "
             "API ratio |", "|---|---|---|---|---|---|"]
    for key, label in (("in", "100 events in, none out"), ("both", "100 in, 100 out")):
        p, c, a = med(sync_t[f"{key}_plain"]), med(sync_t[f"{key}_cli"]), med(sync_t[f"{key}_api"])
        lines.append(f"| {label} | {fmt(p)} | {fmt(c)} | {fmt(a)} | {c / p:.2f}x | {a / p:.2f}x |")
    push, by_hand = med(claims["push"]), med(claims["commit_push"])
    api, cli = med(claims["claim_api"]), med(claims["claim_cli"])
    lines += ["", "### A claim round trip against one plain `git push`", "",
              "| | time | claim (API) / it | claim (CLI) / it |", "|---|---|---|---|",
              f"| plain `git push` of a commit made beforehand | {fmt(push)} | {api / push:.2f}x "
              f"| {cli / push:.2f}x |",
              f"| plain `git add` + `git commit` + `git push` | {fmt(by_hand)} | "
              f"{api / by_hand:.2f}x | {cli / by_hand:.2f}x |",
              f"| claim, Python API (`start_stage`) | {fmt(api)} | | |",
              f"| claim, CLI (`gptme-factory start`) | {fmt(cli)} | | |"]
    lines += ["", f"### {args.writers} concurrent writers in one checkout", "",
              "| brain | events | events/s | lock wait p50 | p95 | max | event latency p50 | "
              "p95 | lost | failed writers | index.lock errors |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, w in writers.items():
        lines.append(f"| {name} | {int(w['events'])} | {w['per_s']:.1f} | {fmt(w['p50'])} | "
                     f"{fmt(w['p95'])} | {fmt(w['max'])} | {fmt(w['ack_p50'])} | "
                     f"{fmt(w['ack_p95'])} | {int(w['lost'])} | "
                     f"{int(w['errors'])} | {int(w['index_lock'])} |")
    both = med(sync_t["both_cli"]) / med(sync_t["both_plain"])
    ins = med(sync_t["in_cli"]) / med(sync_t["in_plain"])
    claim = med(claims["claim_api"]) / push
    checks = [
        ("sync <= 1.5x plain git (CLI, both scenarios)", f"{ins:.2f}x, {both:.2f}x",
         max(ins, both) <= 1.5),
        ("claim round trip <= 1.5x one plain push (Python API)", f"{claim:.2f}x", claim <= 1.5),
    ]
    checks += [(f"{args.writers} writers, {name}: zero lost, p95 lock wait < 2 s",
                f"{int(w['lost'])} lost, p95 {fmt(w['p95'])}", w["lost"] == 0 and w["p95"] < 2)
               for name, w in writers.items()]
    lines += ["", "| target | measured | met |", "|---|---|---|"]
    lines += [f"| {n} | {v} | {'yes' if ok else 'NO'} |" for n, v, ok in checks]
    git_v = subprocess.run(["git", "--version"], capture_output=True, text=True).stdout.strip()
    lines += ["", f"Command: `python bench/bench_sync.py {' '.join(sys.argv[1:])}`".rstrip(),
              f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
              f"{platform.python_version()}, {git_v}; load average {load}. Medians of "
              f"{args.reps} rounds; the remote is a bare repository on the same disk (no "
              "network latency: against GitHub every push and fetch costs a round trip more, "
              "which shrinks the ratios)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifacts", type=int, default=10_000)
    ap.add_argument("--events", type=int, default=8)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--writers", type=int, default=20)
    ap.add_argument("--writer-events", type=int, default=5)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--workdir", type=Path)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="factory-sync-bench-")) if args.workdir is None \
        else args.workdir
    tmp.mkdir(parents=True, exist_ok=True)
    isolate_env(tmp)
    load_before = os.getloadavg()
    try:
        t = time.perf_counter()
        remote, seed = build(tmp, args.artifacts, args.events)
        print(f"built and cloned {args.artifacts:,} artifacts in {time.perf_counter() - t:.0f} s",
              file=sys.stderr, flush=True)
        sync_t = measure_sync(tmp, remote, seed, args.reps)
        claims = measure_claims(tmp, remote, seed, max(args.reps, 5))
        print("  claims: " + ", ".join(f"{k} {med(v):.3f}s" for k, v in claims.items()),
              file=sys.stderr, flush=True)
        small = tmp / "small"
        small.mkdir()
        run(small, "git", "init", "-q", "-b", "master")
        run(small, "git", "commit", "-q", "--allow-empty", "-m", "init")
        Ledger.init(small)
        writers = {"fresh brain": measure_writers(small, args.writers, args.writer_events)}
        big = copy(seed, tmp / "writers-big")
        writers[f"{args.artifacts:,} artifacts"] = measure_writers(big, args.writers,
                                                                   args.writer_events)
        split = copy(seed, tmp / "writers-split")
        run(split, "git", "update-index", "--split-index")  # the user's choice to make
        writers[f"{args.artifacts:,} artifacts, split index"] = measure_writers(
            split, args.writers, args.writer_events)
        for name, w in writers.items():
            print(f"  writers ({name}): " + ", ".join(f"{k} {v:.3f}" for k, v in w.items()),
                  file=sys.stderr, flush=True)
    finally:
        if args.workdir is None:
            shutil.rmtree(tmp, ignore_errors=True)
    load_after = os.getloadavg()
    text = report(sync_t, claims, writers, args,
                  f"{load_before[0]:.1f} before, {load_after[0]:.1f} after")
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
