"""The one module that runs the GitHub CLI (`gh`).

The factory talks to GitHub only through `gh`, and only when it is on `PATH` and logged in
(`gh auth status` exits 0): packaging opens pull requests and releases, measurement reads
whether an issue was closed or a pull request merged, intake reads an issue. Without `gh` the
callers fall back to writing files and printing the exact command to run, so nothing here is
required for the factory to work. Tests put a fake `gh` script on `PATH`.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import FactoryError

_ISSUE_RE = re.compile(r"^(?:gh:)?([A-Za-z0-9_.-]+)/([A-Za-z0-9_.-]+)#(\d+)$")
_URL_RE = re.compile(r"https?://\S+")


class GhError(FactoryError):
    """A `gh` command failed; the message carries gh's own words and the command."""

    exit_code = 6


@dataclass(frozen=True)
class IssueRef:
    """An issue or pull request on GitHub: OWNER/REPO#N."""

    owner: str
    repo: str
    number: int

    @property
    def slug(self) -> str:
        """OWNER/REPO."""
        return f"{self.owner}/{self.repo}"

    def __str__(self) -> str:
        return f"{self.slug}#{self.number}"


def parse_issue_ref(text: str) -> IssueRef | None:
    """`OWNER/REPO#N` or `gh:OWNER/REPO#N` as an IssueRef; None for anything else."""
    m = _ISSUE_RE.match(text.strip())
    if not m:
        return None
    return IssueRef(m.group(1), m.group(2), int(m.group(3)))


def command_line(args: list[str]) -> str:
    """`gh ARGS...` quoted for a shell, to print when gh cannot be run."""
    return shlex.join(["gh", *args])


class Gh:
    """Runs `gh` in a working directory (gh finds the GitHub repo from its git remote)."""

    def __init__(self, cwd: Path, timeout_s: float = 120) -> None:
        self.cwd = cwd
        self.timeout_s = timeout_s
        self._ready: bool | None = None

    @property
    def executable(self) -> str | None:
        """Path of `gh` on PATH, if any."""
        return shutil.which("gh")

    def ready(self) -> bool:
        """True when gh is installed and authenticated (checked once per object)."""
        if self._ready is None:
            self._ready = self.executable is not None and self._run(
                ["auth", "status"], check=False
            ).returncode == 0
        return self._ready

    def why_not_ready(self) -> str:
        """A sentence saying why gh cannot be used."""
        if self.executable is None:
            return "the GitHub CLI `gh` is not on PATH (https://cli.github.com)"
        return "`gh auth status` says gh is not logged in (run `gh auth login`)"

    def _run(self, args: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ)
        env.setdefault("GH_PROMPT_DISABLED", "1")
        env.setdefault("GH_NO_UPDATE_NOTIFIER", "1")
        env.setdefault("NO_COLOR", "1")
        try:
            proc = subprocess.run(
                ["gh", *args], cwd=self.cwd, capture_output=True, text=True, env=env,
                stdin=subprocess.DEVNULL, timeout=self.timeout_s, check=False,
            )
        except subprocess.TimeoutExpired:
            raise GhError(f"`{command_line(args)}` timed out after {self.timeout_s:g} s") from None
        except OSError as exc:
            raise GhError(f"cannot run gh: {exc.strerror}") from None
        if check and proc.returncode != 0:
            said = " ".join((proc.stderr or proc.stdout).split())[-600:]
            raise GhError(
                f"`{command_line(args)}` failed (exit {proc.returncode}): {said or 'no output'}"
            )
        return proc

    def run(self, args: list[str]) -> str:
        """Run gh and return its stdout (GhError on a non-zero exit)."""
        return self._run(args).stdout

    def json(self, args: list[str]) -> Any:
        """Run a gh command that prints JSON (`--json FIELDS`) and parse it."""
        out = self.run(args)
        try:
            return json.loads(out)
        except ValueError:
            raise GhError(f"`{command_line(args)}` did not print JSON: {out[:200]!r}") from None

    def issue(self, ref: IssueRef, fields: str) -> dict[str, Any]:
        """`gh issue view N --repo OWNER/REPO --json FIELDS`."""
        data = self.json(["issue", "view", str(ref.number), "--repo", ref.slug, "--json", fields])
        if not isinstance(data, dict):
            raise GhError(f"gh issue view {ref} printed {type(data).__name__}, not an object")
        return data

    def pr(self, target: str, fields: str) -> dict[str, Any]:
        """`gh pr view TARGET --json FIELDS` (TARGET: a URL, a number or a branch)."""
        data = self.json(["pr", "view", target, "--json", fields])
        if not isinstance(data, dict):
            raise GhError(f"gh pr view {target} printed {type(data).__name__}, not an object")
        return data


def last_url(text: str) -> str | None:
    """The last URL gh printed (what `gh pr create` / `gh release create` end with)."""
    urls = _URL_RE.findall(text)
    return urls[-1] if urls else None
