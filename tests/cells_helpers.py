"""Fixtures for cell tests: a private tmux server per test, the sample artifact, polling.

Every test that launches cells gets its own tmux server (a short `TMUX_TMPDIR`), started by
the first spawn from this process, so it inherits the test's isolated environment including
`scripted.SCRIPTED_ENV` (gptodo passes only PATH/HOME/API keys to cells itself). Teardown
kills that server and fails the test if a cell process survived.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gptme_factory.cells import proctree
from gptme_factory.cells import state as cellstate
from gptme_factory.demo import scripted
from gptme_factory.ledger import yamlio
from gptme_factory.ledger.store import Ledger
from gptme_factory.line import engine
from gptme_factory.line.replay import ArtifactView


def tmux_sessions() -> list[str]:
    """Sessions on the current TMUX_TMPDIR's server."""
    proc = subprocess.run(["tmux", "list-sessions", "-F", "#{session_name}"],
                          capture_output=True, text=True, check=False)
    return proc.stdout.split() if proc.returncode == 0 else []


def gptme_processes(marker: str, *, watchdogs: bool = False) -> list[int]:
    """Live processes whose command line mentions `marker` (a per-test path).

    Cell watchdogs (gptme_factory.cells.watchdog) are factory processes, not cells: they are left
    out unless `watchdogs` is set.
    """
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{name}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "gptme_factory.cells.watchdog" in cmd and not watchdogs:
            continue
        if marker in cmd and proctree.alive(int(name)):
            found.append(int(name))
    return found


@pytest.fixture
def cell_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private tmux server and the scripted-cell environment; cleaned up afterwards."""
    tmpdir = Path(tempfile.mkdtemp(prefix="gft-"))
    monkeypatch.setenv("TMUX_TMPDIR", str(tmpdir))
    monkeypatch.delenv("TMUX", raising=False)
    for k, v in scripted.SCRIPTED_ENV.items():
        monkeypatch.setenv(k, v)
    try:
        yield tmpdir
    finally:
        subprocess.run(["tmux", "kill-server"], capture_output=True, check=False)
        shutil.rmtree(tmpdir, ignore_errors=True)


@pytest.fixture
def sample(ledger: Ledger, cell_env: Path) -> tuple[Ledger, str]:
    """The ledger with the sample project committed and its demand taken in."""
    return ledger, scripted.prepare_sample(ledger)


def view(ledger: Ledger, aid: str) -> ArtifactView:
    """The artifact's replayed state."""
    return engine.load(ledger, aid)[1]


def events(ledger: Ledger, aid: str, kind: str) -> list[Any]:
    """The artifact's events of one kind, in order."""
    return [e.event for e in ledger.read(aid).events if e.event.kind == kind]


def wait_for(cond: Callable[[], Any], timeout: float = 60.0, every: float = 0.2) -> Any:
    """Poll until `cond()` is truthy; return it (fail the test on timeout)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = cond()
        if got:
            return got
        time.sleep(every)
    raise AssertionError(f"condition not met within {timeout} s")


def no_cells_left(ledger: Ledger) -> None:
    """Every cell reaped: no runtime record, no tmux session, no cell process."""
    assert cellstate.load_all(ledger.runtime_dir) == []
    assert tmux_sessions() == []
    assert gptme_processes(str(ledger.repo.root)) == []
    # each cell's watchdog notices within a poll that its cell was reaped, and exits
    deadline = time.monotonic() + 15
    while gptme_processes(str(ledger.repo.root), watchdogs=True) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert gptme_processes(str(ledger.repo.root), watchdogs=True) == []


def set_stage(ledger: Ledger, stage: str, **fields: Any) -> Ledger:
    """Change one stage of the default line in factory.yaml; returns a fresh Ledger."""
    path = ledger.dir / "factory.yaml"
    data = yamlio.loads(path.read_bytes(), "factory.yaml")
    for st in data["lines"]["default"]["stages"]:
        if st["name"] == stage:
            st.update(fields)
    path.write_bytes(yamlio.dumps(data))
    return Ledger.open(ledger.repo.root)


def set_config(ledger: Ledger, **fields: Any) -> Ledger:
    """Change top-level fields of factory.yaml; returns a fresh Ledger."""
    path = ledger.dir / "factory.yaml"
    data = yamlio.loads(path.read_bytes(), "factory.yaml")
    data.update(fields)
    path.write_bytes(yamlio.dumps(data))
    return Ledger.open(ledger.repo.root)
