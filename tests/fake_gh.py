"""A fake `gh` executable for tests: records its argv, answers from a table.

The GitHub CLI needs the network, which tests do not have, so it is replaced at the boundary:
a small Python script named `gh` in a directory put first on PATH. Each call appends its
arguments (JSON) to `calls.jsonl`; the answer (stdout, stderr, exit code) is looked up in
`responses.json` by the first two arguments ("auth status", "pr create", "issue view", ...).
An unknown call exits 1, so a test never passes on a call it did not expect.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

SCRIPT = """#!{python}
import json, pathlib, sys
here = pathlib.Path(__file__).resolve().parent
with open(here / "calls.jsonl", "a") as fh:
    fh.write(json.dumps(sys.argv[1:]) + "\\n")
table = json.loads((here / "responses.json").read_text())
answer = table.get(" ".join(sys.argv[1:3]), {{"stderr": "fake gh: unexpected call", "exit": 1}})
sys.stdout.write(answer.get("stdout", ""))
sys.stderr.write(answer.get("stderr", ""))
sys.exit(answer.get("exit", 0))
"""


class FakeGh:
    """Handle on the fake: set answers, read the recorded calls."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.table: dict[str, dict[str, Any]] = {}
        self.respond("auth status", stdout="Logged in to github.com as tester\n")

    def respond(self, call: str, stdout: str = "", stderr: str = "", exit: int = 0) -> None:
        """Answer `call` (its first two arguments) with this output and exit code."""
        self.table[call] = {"stdout": stdout, "stderr": stderr, "exit": exit}
        (self.bindir / "responses.json").write_text(json.dumps(self.table))

    def respond_json(self, call: str, data: Any) -> None:
        """Answer `call` with `data` as JSON."""
        self.respond(call, stdout=json.dumps(data) + "\n")

    def logged_out(self) -> None:
        """Make `gh auth status` fail, as when nobody ran `gh auth login`."""
        self.respond("auth status", stderr="You are not logged into any GitHub hosts.\n", exit=1)

    def calls(self) -> list[list[str]]:
        """Every recorded argv, in order."""
        path = self.bindir / "calls.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]


def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeGh:
    """Write the fake `gh` into tmp_path/fakebin and put it first on PATH."""
    bindir = tmp_path / "fakebin"
    bindir.mkdir(exist_ok=True)
    script = bindir / "gh"
    script.write_text(SCRIPT.format(python=sys.executable))
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return FakeGh(bindir)
