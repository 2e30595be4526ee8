"""Many writers on one checkout: 20 processes commit into one working tree, losing nothing.

While a "user" runs `git status` in a loop (which takes index.lock to refresh stat data),
twenty writer processes record events — ten on artifacts of their own, ten on one shared
artifact. Every event a writer was told is recorded is in HEAD, the index and the working
tree; no writer sees an index.lock error; the ledger verifies clean. A writer that cannot
get the lock in time gets LedgerBusy naming the holder, and nothing is written.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gptme_factory.errors import LedgerBusy
from gptme_factory.ledger.store import Ledger
from gptme_factory.line.verify import verify_ledger
from tests.conftest import git
from tests.ledger_helpers import append_next, new_artifact
from tests.sync_helpers import PROJECT

WRITER = """
import json, os, sys, time
from gptme_factory.ledger.store import Ledger
from tests.ledger_helpers import append_next
repo, aid, go, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
ledger = Ledger.open(repo)
ledger.config
while not os.path.exists(go):
    time.sleep(0.005)
for _ in range(n):
    print(json.dumps(append_next(ledger, aid).path), flush=True)
print(json.dumps({"waits": ledger.lock_waits}), flush=True)
"""


def popen(script: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", script, *args], text=True,
                            env={**os.environ, "PYTHONPATH": str(PROJECT), **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.slow
def test_twenty_writers_and_a_busy_user_lose_nothing(ledger: Ledger, tmp_path: Path) -> None:
    root = ledger.repo.root
    own = [new_artifact(ledger, f"Own {i}") for i in range(10)]
    common = new_artifact(ledger, "Shared by ten")
    go = tmp_path / "go"
    per_writer = 4
    procs = [popen(WRITER, str(root), aid, str(go), str(per_writer))
             for aid in [*own, *[common] * 10]]
    user = subprocess.Popen(  # a user's `git status` loop, taking index.lock as it refreshes
        ["sh", "-c", f"while [ ! -e {tmp_path}/stop ]; do git status --porcelain >/dev/null "
                     "2>&1; done"], cwd=root)
    time.sleep(1.0)
    go.touch()
    acked: list[str] = []
    waits: list[float] = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=600)
            assert p.returncode == 0, err
            assert "index.lock" not in err
            for line in out.splitlines():
                item = json.loads(line)
                if isinstance(item, dict):
                    waits += item["waits"]
                else:
                    acked.append(item)
    finally:
        (tmp_path / "stop").touch()
        user.wait(timeout=30)
    assert len(acked) == 20 * per_writer == len(set(acked))
    in_head = set(git(root, "ls-tree", "-r", "--name-only", "HEAD", "factory").split())
    in_index = set(git(root, "ls-files", "factory").split())
    assert set(acked) <= in_head and set(acked) <= in_index
    assert all((root / path).is_file() for path in acked)
    reread = Ledger.open(root)
    assert [len(reread.read(aid).events) for aid in own] == [per_writer] * 10
    assert [e.seq for e in reread.read(common).events] == list(range(1, 10 * per_writer + 1))
    assert verify_ledger(reread) == []
    assert git(root, "status", "--porcelain") == ""
    assert len(waits) == 20 * per_writer and max(waits) < 120


HOLDER = """
import sys, time
from gptme_factory.ledger.gitstore import GitRepo
with GitRepo.discover(sys.argv[1]).exclusive(what="a test holding the lock"):
    print("held", flush=True)
    time.sleep(30)
"""


def test_a_writer_waits_a_bounded_time_and_is_told_who_holds_the_lock(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = ledger.repo.root
    aid = new_artifact(ledger)
    holder = popen(HOLDER, str(root))
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        before = git(root, "rev-parse", "HEAD")
        start = time.monotonic()
        monkeypatch.setenv("GPTME_FACTORY_LOCK_TIMEOUT", "0.5")
        with pytest.raises(LedgerBusy) as err:
            append_next(ledger, aid)
        monkeypatch.delenv("GPTME_FACTORY_LOCK_TIMEOUT")
        assert time.monotonic() - start < 5
        msg = str(err.value)
        assert f"pid {holder.pid}" in msg and "a test holding the lock" in msg
        assert "nothing was recorded" in msg and "GPTME_FACTORY_LOCK_TIMEOUT" in msg
        assert git(root, "rev-parse", "HEAD") == before
    finally:
        holder.kill()
        holder.communicate()
    append_next(ledger, aid)  # the lock a waiter gave up on is free again for the next one
    assert len(ledger.read(aid).events) == 1
