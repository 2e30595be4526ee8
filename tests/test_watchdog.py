"""The watchdog keeps a cell's wall-clock budget when nobody runs `run` or `collect`."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gptme_factory.cells import proctree
from gptme_factory.cells import spawn as cells
from gptme_factory.cells import state as cellstate
from gptme_factory.ledger.store import Ledger
from gptme_factory.line.intake import intake as new_intake
from gptme_factory.line.verify import verify_ledger
from tests import cells_helpers
from tests.cells_helpers import events, view

cell_env = cells_helpers.cell_env
pytestmark = pytest.mark.slow


def _wait(pred, timeout: float = 30.0) -> bool:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.2)
    return False


def test_overdue_cell_is_stopped_and_recorded_without_a_foreman(
    ledger: Ledger, cell_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GPTME_FACTORY_WATCHDOG_MARGIN", "0.5")
    aid = new_intake(ledger, title="T", demand="me", consumers=["me"], acceptance=["x"]).artifact
    rec = cells.spawn(ledger, aid, cells.SpawnOptions(
        backend="command", command="sleep 120", timeout_s=1.0))
    pid = rec.extra.get("watchdog_pid")
    assert isinstance(pid, int) and proctree.alive(pid)
    # nobody calls collect: the watchdog alone must stop the cell and record it
    assert _wait(lambda: bool(events(ledger, aid, "cell_finished")))
    [fin] = events(ledger, aid, "cell_finished")
    assert fin.outcome == "timed_out" and "watchdog" in fin.reason
    # the runtime record goes just after the commit (reaper.record): wait for it, too
    assert _wait(lambda: cellstate.load(ledger.runtime_dir, rec.cell) is None, 10)
    assert view(ledger, aid).status == "pending"
    assert _wait(lambda: not proctree.alive(pid), 10)  # the watchdog exits after its cell
    assert [str(p) for p in verify_ledger(ledger)] == []


def test_a_cell_that_ends_by_itself_is_left_to_collect(
    ledger: Ledger, cell_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GPTME_FACTORY_WATCHDOG_MARGIN", "0.5")
    aid = new_intake(ledger, title="T", demand="me", consumers=["me"], acceptance=["x"]).artifact
    rec = cells.spawn(ledger, aid, cells.SpawnOptions(backend="command", command="exit 0"))
    pid = rec.extra["watchdog_pid"]
    assert _wait(lambda: not proctree.alive(pid), 15)
    assert events(ledger, aid, "cell_finished") == []  # not the watchdog's to record
    reaped, _ = cells.collect(ledger, [aid])
    assert [r.cell for r in reaped] == [rec.cell]
