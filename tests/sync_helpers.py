"""Helpers for the shared-ledger tests: real clones of a real bare remote, real processes.

`shared_clones` makes a brain repo whose factory.yaml shares the ledger (`sync.remote:
origin`), pushes it to a bare remote, and clones it; each clone is opened as its own Ledger.
`run_script` runs Python in a separate process against one clone, with its own host name.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from gptme_factory.ledger.store import Ledger
from tests.conftest import git, init_brain

PROJECT = Path(__file__).resolve().parents[1]


@dataclass
class Shared:
    """A bare remote and the clones sharing a ledger through it."""

    remote: Path
    clones: list[Path]

    def ledger(self, i: int) -> Ledger:
        """A fresh Ledger of clone `i` (named host-i in claims and commits)."""
        ledger = Ledger.open(self.clones[i])
        ledger.__dict__["host"] = f"host-{i}"
        return ledger

    def remote_files(self, prefix: str = "factory") -> set[str]:
        """Every file on the remote's master under `prefix`."""
        out = git(self.remote, "ls-tree", "-r", "--name-only", "master", "--", prefix)
        return set(out.split())

    def remote_head(self) -> str:
        return git(self.remote, "rev-parse", "master").strip()


def sync_section(lease_s: float | None = None, extra: str = "") -> str:
    """The factory.yaml text that shares the ledger through `origin`."""
    text = "sync:\n  remote: origin\n"
    if lease_s is not None:
        text += f"  lease_s: {lease_s}\n"
    return text + extra


def shared_clones(tmp_path: Path, n: int = 2, *, lease_s: float | None = None,
                  extra: str = "") -> Shared:
    """A shared brain pushed to a bare remote, and `n` clones of it (the first is the origin)."""
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "master", str(remote))
    first = init_brain(tmp_path / "clone-0")
    Ledger.init(first)
    config = first / "factory" / "factory.yaml"
    config.write_text(config.read_text() + sync_section(lease_s, extra))
    git(first, "add", "factory/factory.yaml")
    git(first, "commit", "-q", "-m", "share the ledger through origin")
    git(first, "remote", "add", "origin", str(remote))
    git(first, "push", "-q", "-u", "origin", "master")
    clones = [first]
    for i in range(1, n):
        dest = tmp_path / f"clone-{i}"
        git(tmp_path, "clone", "-q", str(remote), str(dest))
        clones.append(dest)
    return Shared(remote, clones)


def run_script(script: str, *args: str, host: str, env: dict[str, str] | None = None,
               timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run `script` (Python) in a new process, as machine `host`."""
    full = {**os.environ, "PYTHONPATH": str(PROJECT), "GPTME_FACTORY_HOST": host, **(env or {})}
    return subprocess.run([sys.executable, "-c", script, *args], env=full, capture_output=True,
                          text=True, timeout=timeout)


def start_script(script: str, *args: str, host: str,
                 env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start `script` (Python) in a new process, as machine `host`."""
    full = {**os.environ, "PYTHONPATH": str(PROJECT), "GPTME_FACTORY_HOST": host, **(env or {})}
    return subprocess.Popen([sys.executable, "-c", script, *args], env=full, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def head(repo: Path) -> str:
    return git(repo, "rev-parse", "HEAD").strip()


def merges(repo: Path) -> int:
    """How many merge commits HEAD's history has."""
    return len(git(repo, "rev-list", "--merges", "HEAD").split())
