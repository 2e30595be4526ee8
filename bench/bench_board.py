#!/usr/bin/env python
"""Board benchmark: warm board data against warm `status`, and first paint in chromium.

    python bench/bench_board.py [--artifacts 10000] [--events 8] [--out bench/board-results.md]

Builds a temp brain repo with a real, verifiable ledger (ledgergen.py, as bench_ledger.py
does), fills the caches once (cold, unmeasured), then measures in the same run, round by
round so load changes hit each alike:

- warm `status` through the Python API: summaries, line statuses, running cells (what
  `gptme-factory status` computes);
- warm board data (`web.data.board_data`: summaries and metric facts from one freshness
  check, line statuses, cells, the metrics report, the cards), and the board page (data +
  HTML);
- `metrics` warm (the metric-facts cache) and `metrics --no-cache` (every artifact read);
- writing the static file (`board --html`), once;
- first paint: the served board (rendered anew: the change token moved; and unchanged: the
  server's kept page) and the static file loaded in headless chromium (Debian's, through its
  chromedriver), median first-contentful-paint of fresh navigations, reported.

The goal: warm board data <= 1.5x warm status. Nothing here is a test: numbers depend on
the machine and on what else runs on it (the load is printed).
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
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_ledger  # noqa: E402 - sets the bytecode cache settings first
from bench_ledger import clock, isolate_env  # noqa: E402

from gptme_factory.ledger.store import Ledger  # noqa: E402
from gptme_factory.views.cellboard import observations  # noqa: E402
from gptme_factory.views.factcache import metrics  # noqa: E402
from gptme_factory.views.status import load_line_statuses, load_summaries  # noqa: E402
from gptme_factory.web import data, render  # noqa: E402
from gptme_factory.web.static_file import static_html  # noqa: E402

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def status_api(root: Path) -> None:
    ledger = Ledger.open(root)
    now = datetime.now(timezone.utc)
    summaries = load_summaries(ledger)
    load_line_statuses(ledger, summaries, now)
    observations(ledger, now)


def board_api(root: Path) -> dict[str, Any]:
    return data.board_data(Ledger.open(root))


def board_page(root: Path) -> str:
    ledger = Ledger.open(root)
    return render.board_page(data.board_data(ledger), data.change_token(ledger))


def first_paints(root: Path, loads: int, tmp: Path) -> dict[str, float]:
    """Median first-contentful-paint (ms) of the served board and of the static file."""
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        print("chromium/chromedriver missing: first paint not measured", file=sys.stderr)
        return {}
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    os.environ.update(SE_OFFLINE="true", SE_AVOID_STATS="true")
    static = tmp / "board.html"
    static.write_text(static_html(Ledger.open(root)))
    server = subprocess.Popen([sys.executable, "-m", "gptme_factory", "board", "--repo",
                               str(root), "--port", "0"], stdout=subprocess.PIPE, text=True)
    url = server.stdout.readline().split()[1]  # type: ignore[union-attr]
    opts = Options()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 "--window-size=1400,1000", f"--user-data-dir={tmp / 'profile'}"):
        opts.add_argument(flag)
    drv = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    script = ("const e = performance.getEntriesByName('first-contentful-paint')[0];"
              "return e ? e.startTime : null;")

    def paint() -> float:
        for _ in range(100):  # the entry is queued just after the paint: wait for it
            got = drv.execute_script(script)
            if got is not None:
                return float(got)
            time.sleep(0.05)
        raise SystemExit("no first-contentful-paint entry after 5 s")

    out: dict[str, list[float]] = {"paint_served": [], "paint_kept": [], "paint_static": []}
    config = root / "factory" / "factory.yaml"
    try:
        for target, key in ((url, "paint_served"), (url, "paint_kept"),
                            (static.as_uri(), "paint_static")):
            drv.get(target)  # warm-up: bytecode, page cache, the browser's own start
            for _ in range(loads):
                drv.get("about:blank")
                if key == "paint_served":  # moves the change token: the page is rendered anew
                    os.utime(config)
                drv.get(target)
                out[key].append(paint())
    finally:
        drv.quit()
        server.terminate()
        server.communicate(timeout=15)
    return {k: statistics.median(v) for k, v in out.items()}


def measure(root: Path, reps: int, loads: int, tmp: Path) -> dict[str, float]:
    r: dict[str, float] = {}
    # Cold, unmeasured: fill the status cache and the metric-facts cache.
    r["cold_board"] = clock(lambda: board_api(root))
    status_api(root)
    times: dict[str, list[float]] = {"status": [], "board": [], "page": [], "metrics": []}
    for _ in range(reps):
        times["status"].append(clock(lambda: status_api(root)))
        times["board"].append(clock(lambda: board_api(root)))
        times["page"].append(clock(lambda: board_page(root)))
        times["metrics"].append(clock(lambda: metrics(Ledger.open(root))))
    r.update({k: statistics.median(v) for k, v in times.items()})
    r["metrics_no_cache"] = clock(lambda: metrics(Ledger.open(root), use_cache=False))
    r["static_file"] = clock(lambda: static_html(Ledger.open(root)))
    print(", ".join(f"{k} {fmt(v, k)}" for k, v in r.items()), file=sys.stderr, flush=True)
    r.update(first_paints(root, loads, tmp))
    return r


ROWS = [
    ("status", "warm `status` (Python API: summaries, lines, cells)"),
    ("board", "warm board data (`web.data.board_data`)"),
    ("page", "warm board page (data + HTML)"),
    ("metrics", "`metrics`, warm (metric-facts cache)"),
    ("metrics_no_cache", "`metrics --no-cache` (reads every artifact)"),
    ("cold_board", "board data, cold (fills both caches; setup)"),
    ("static_file", "`board --html` (page with the embedded artifact pages)"),
    ("paint_served", "first contentful paint, served board, rendered anew (chromium)"),
    ("paint_kept", "first contentful paint, served board, nothing changed (chromium)"),
    ("paint_static", "first contentful paint, static file (chromium)"),
]


def fmt(v: float, key: str) -> str:
    if key.startswith("paint"):
        return f"{v:.0f} ms"
    return f"{v * 1000:.0f} ms" if v < 1 else f"{v:.2f} s"


def report(n: int, files: int, r: dict[str, float], load: str) -> str:
    ratio = r["board"] / r["status"]
    lines = [f"Board benchmark: {n:,} artifacts, {files:,} ledger files (load {load})", "",
             "| measurement | time |", "|---|---|"]
    lines += [f"| {label} | {fmt(r[key], key)} |" for key, label in ROWS if key in r]
    lines += ["", "| target | measured | met |", "|---|---|---|",
              f"| warm board data <= 1.5x warm status | {ratio:.2f}x | "
              f"{'yes' if ratio <= 1.5 else 'NO'} |",
              f"| (reported) metrics warm vs --no-cache | "
              f"{r['metrics_no_cache'] / r['metrics']:.0f}x faster | - |", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifacts", type=int, default=10_000)
    ap.add_argument("--events", type=int, default=8, help="mean events per artifact")
    ap.add_argument("--reps", type=int, default=9, help="rounds of the warm measurements")
    ap.add_argument("--loads", type=int, default=5, help="page loads for first paint")
    ap.add_argument("--out", type=Path, help="also write the table to this file")
    ap.add_argument("--workdir", type=Path, help="build the repo here (kept) instead of a temp dir")
    ap.add_argument("--reuse", action="store_true",
                    help="with --workdir: measure the repo built there by an earlier run")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="factory-board-bench-")) if args.workdir is None \
        else args.workdir
    tmp.mkdir(parents=True, exist_ok=True)
    isolate_env(tmp)
    before = os.getloadavg()[0]
    try:
        root = tmp / f"brain-{args.artifacts}"
        if args.reuse and args.workdir and (root / "factory").is_dir():
            shutil.rmtree(root / "factory" / ".runtime", ignore_errors=True)
            info = {"files": sum(len(os.listdir(d.path)) for d in
                                 os.scandir(root / "factory" / "artifacts")), "build_s": 0.0}
        else:
            if root.exists():
                shutil.rmtree(root)
            print(f"building {args.artifacts:,} artifacts in {root} ...", file=sys.stderr,
                  flush=True)
            info = bench_ledger.build(root, args.artifacts, args.events)
        print(f"{info['files']:,} files in {info['build_s']:.1f} s; measuring ...",
              file=sys.stderr, flush=True)
        res = measure(root, args.reps, args.loads, tmp)
    finally:
        if args.workdir is None:
            shutil.rmtree(tmp, ignore_errors=True)
    text = report(args.artifacts, info["files"], res,
                  f"{before:.1f} before, {os.getloadavg()[0]:.1f} after")
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
