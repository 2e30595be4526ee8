#!/usr/bin/env python
"""envcheck benchmark: what the pre-flights and classifiers cost, side by side in one run.

    python bench/bench_envcheck.py [--reps 5]

Each measurement runs in a fresh interpreter that has already imported what the factory CLI
imports anyway (pydantic, PyYAML, GitPython, tomlkit, gptme_factory.envcheck), so a first
call pays exactly its own lazy imports. Reported: the median of --reps runs, in ms, and the
ratios that justify the design:

- `preflight_model("mock/echo")`: reads nothing, imports nothing;
- `preflight_model("anthropic/...")` first call (imports gptme's registry) and a second call;
- the alternative not taken: reading the same tables by parsing gptme's source with `ast`;
- `unresolved_commands` of two typical verify commands (one `python -m` probe included);
- `classify_cell_exit` and `classify_check` on a recorded output.

Nothing here is a test: the numbers depend on the machine and what else runs on it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "gptme-exits" / "nomodel.out"

PRELUDE = """
import time, json, sys, os
import pydantic, yaml, git, tomlkit
from gptme_factory.envcheck import preflight_model, unresolved_commands, classify_cell_exit, classify_check
from pathlib import Path
env = {"HOME": HOME, "XDG_CONFIG_HOME": HOME + "/.config", "PATH": os.environ["PATH"]}
def ms(f):
    t = time.perf_counter(); f(); return (time.perf_counter() - t) * 1000
"""

AST = "alternative: gptme's tables by ast"
CASES = {
    "preflight mock/echo": "r = ms(lambda: preflight_model('mock/echo', env))",
    "preflight anthropic, first call": (
        "r = ms(lambda: preflight_model('anthropic/claude-sonnet-4-5', {**env, 'ANTHROPIC_API_KEY': 'k'}))"),
    "preflight anthropic, second call": (
        "preflight_model('anthropic/claude-sonnet-4-5', env)\n"
        "r = ms(lambda: preflight_model('anthropic/claude-sonnet-4-5', {**env, 'ANTHROPIC_API_KEY': 'k'}))"),
    "preflight, no model and no key": "r = ms(lambda: preflight_model(None, env))",
    AST: (
        "import ast, importlib.util\n"
        "def parse():\n"
        "    base = Path(importlib.util.find_spec('gptme').origin).parent\n"
        "    for rel in ('llm/__init__.py', 'llm/models/types.py', 'llm/models/data.py',\n"
        "                'llm/models/recommended.py'):\n"
        "        ast.parse((base / rel).read_text())\n"
        "r = ms(parse)"),
    "unresolved_commands, 2 commands": (
        "r = ms(lambda: unresolved_commands([sys.executable + ' -m pytest -q', 'ruff check . && git diff'],"
        " Path(HOME), env))"),
    "classify_cell_exit, recorded output": (
        "text = Path(FIXTURE).read_text()\nr = ms(lambda: classify_cell_exit(1, text))"),
    "classify_check, one line": (
        "r = ms(lambda: classify_check('pytest -q', 127, 'bash: line 1: pytest: command not found\\n'))"),
}


def run(case: str, home: str) -> float:
    code = f"HOME = {home!r}\nFIXTURE = {str(FIXTURE)!r}\n{PRELUDE}\n{CASES[case]}\nprint(json.dumps(r))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "GPTME_TIKTOKEN_TIMEOUT": "0"})
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        (Path(home) / ".config" / "gptme").mkdir(parents=True)
        samples: dict[str, list[float]] = {case: [] for case in CASES}
        for _ in range(args.reps):  # interleaved round by round, so load changes hit all alike
            for case in CASES:
                samples[case].append(run(case, home))
        results = {case: statistics.median(v) for case, v in samples.items()}
    print(f"load average: {os.getloadavg()[0]:.2f}; median of {args.reps} fresh interpreters\n")
    for case, value in results.items():
        print(f"{case:40s} {value:9.3f} ms")
    first = results["preflight anthropic, first call"]
    print()
    print(f"first registry call / ast parse of gptme's tables: {first / results[AST]:.1f}x")
    print(f"first registry call / second call:                 "
          f"{first / results['preflight anthropic, second call']:.0f}x")


if __name__ == "__main__":
    main()
