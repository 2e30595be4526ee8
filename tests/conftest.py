"""Shared fixtures: real git repos in tmp_path with a fixed identity, isolated config and dates.

Every test runs with HOME and XDG_* pointing into its own temp dir (gptme and git write
there), a fixed git identity, and GIT_*_DATE pinned so commit ids are reproducible.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

FIXED_DATE = "2026-01-02T03:04:05+00:00"


@pytest.fixture(autouse=True)
def isolated_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Isolate HOME/XDG and git config; pin the git identity and dates."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    for var, sub in (("XDG_CONFIG_HOME", ".config"), ("XDG_DATA_HOME", ".local/share"),
                     ("XDG_STATE_HOME", ".local/state"), ("XDG_CACHE_HOME", ".cache")):
        (home / sub).mkdir(parents=True, exist_ok=True)
        monkeypatch.setenv(var, str(home / sub))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / ".gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Factory Test")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "test@factory.invalid")
    monkeypatch.setenv("GIT_COMMITTER_NAME", "Factory Test")
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", "test@factory.invalid")
    monkeypatch.setenv("GIT_AUTHOR_DATE", FIXED_DATE)
    monkeypatch.setenv("GIT_COMMITTER_DATE", FIXED_DATE)
    monkeypatch.setenv("GPTME_FACTORY_ACTOR", "tester")
    monkeypatch.setenv("GPTME_TIKTOKEN_TIMEOUT", "0")
    # No filesystem watcher unless a test asks for one (tests/test_watcher.py, test_verify.py):
    # the watchman daemon is shared by everything on the machine.
    monkeypatch.setenv("GPTME_FACTORY_WATCHMAN", "0")
    for var in ("GPTME_FACTORY_REPO", "GPTME_FACTORY_DIR", "GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE",
                "GPTME_FACTORY_OFFLINE", "GPTME_FACTORY_HOST", "GPTME_FACTORY_LOCK_TIMEOUT"):
        monkeypatch.delenv(var, raising=False)
    yield home


def unwatch_under(base: Path) -> None:
    """Drop watchman's watches of the trees under `base` (a test's), leaving every other."""
    out = subprocess.run(["watchman", "watch-list"], capture_output=True, text=True,
                         check=False).stdout
    try:
        roots = json.loads(out).get("roots", [])
    except ValueError:
        return
    for root in roots:
        if Path(root).is_relative_to(base):
            subprocess.run(["watchman", "watch-del", root], capture_output=True, check=False)


def git(repo: Path, *args: str) -> str:
    """Run git in `repo` and return stdout (raises on failure)."""
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout


def init_brain(repo: Path) -> Path:
    """Make `repo` an empty brain repo on branch master with one commit (README)."""
    repo.mkdir(parents=True, exist_ok=True)
    git(repo, "init", "-q", "-b", "master")
    (repo / "README.md").write_text("# brain\n")
    git(repo, "add", "README.md")
    git(repo, "commit", "-q", "-m", "init brain")
    return repo


@pytest.fixture
def brain(tmp_path: Path) -> Path:
    """An empty brain repo on branch master with one commit (README)."""
    return init_brain(tmp_path / "brain")


@pytest.fixture
def factory_repo(brain: Path) -> Path:
    """A brain repo after `gptme-factory init` (through the Python API)."""
    from gptme_factory.ledger.store import Ledger

    Ledger.init(brain)
    return brain


@pytest.fixture
def ledger(factory_repo: Path):  # type: ignore[no-untyped-def]
    """The opened ledger of `factory_repo`."""
    from gptme_factory.ledger.store import Ledger

    return Ledger.open(factory_repo)


def env_without_pytest() -> dict[str, str]:
    """The current (isolated) environment, for subprocesses."""
    return dict(os.environ)


@pytest.fixture
def watching(monkeypatch: pytest.MonkeyPatch,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Run with the file watcher (watchman), which conftest turns off for every other test.

    This session's trees are unwatched after the test: the daemon is the machine's.
    """
    if shutil.which("watchman") is None:
        pytest.fail("watchman is not installed: `apt-get install -y watchman` (.ci/run does)")
    monkeypatch.setenv("GPTME_FACTORY_WATCHMAN", "1")
    yield
    unwatch_under(tmp_path_factory.getbasetemp())
