"""Many machines, one ledger: real clones of a real bare remote, real concurrent processes.

- 3 clones x 8 processes append events for their own artifacts and sync: every event a
  process was told is recorded and synced is on the remote; every clone verifies clean.
- 2 clones x 4 processes race for the same stages: exactly one claim wins per stage, every
  loser gets "stage S of X was claimed by CELL on HOST at TIME", and no fork exists.
- a claim holder killed with kill -9 stops renewing; once its lease expires another clone
  takes the stage over, and the takeover is an event.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from gptme_factory.errors import ClaimLost
from gptme_factory.ledger.sync import sync
from gptme_factory.line import engine
from gptme_factory.line.verify import verify_ledger
from tests.conftest import git
from tests.ledger_helpers import new_artifact
from tests.sync_helpers import head, merges, shared_clones, start_script

APPENDER = """
import json, os, sys, time
from gptme_factory.ledger.store import Ledger
from gptme_factory.ledger.sync import sync
from tests.ledger_helpers import append_next, new_artifact
repo, name, go = sys.argv[1:4]
while not os.path.exists(go):
    time.sleep(0.01)
ledger = Ledger.open(repo)
for round in range(3):
    aid = new_artifact(ledger, f"{name} round {round}")
    acked = [f"{ledger.artifact_rel(aid)}/intake.yaml", append_next(ledger, aid).path]
    sync(ledger)  # raises if it cannot get them out
    print(json.dumps(acked), flush=True)
"""


def release(procs: list[subprocess.Popen[str]], go: Path) -> list[str]:
    """Let the waiting processes go; their outputs, once each exited 0."""
    go.touch()
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
        outs.append(out)
    return outs


@pytest.mark.slow
def test_three_clones_of_eight_writers_lose_nothing(tmp_path: Path) -> None:
    shared = shared_clones(tmp_path, 3)
    go = tmp_path / "go"
    procs = [start_script(APPENDER, str(shared.clones[c]), f"c{c}w{w}", str(go),
                          host=f"host-{c}")
             for c in range(3) for w in range(8)]
    acked = {path for out in release(procs, go) for line in out.splitlines()
             for path in json.loads(line)}
    assert len(acked) == 3 * 8 * 3 * 2
    on_remote = shared.remote_files()
    assert acked <= on_remote, sorted(acked - on_remote)[:5]
    for i in range(3):  # everyone catches up; all end on the remote's tip
        sync(shared.ledger(i))
    for i in range(3):
        ledger = shared.ledger(i)
        sync(ledger)
        assert verify_ledger(ledger) == []
        assert head(ledger.repo.root) == shared.remote_head()
        assert len(ledger.artifact_ids()) == 72
        assert merges(ledger.repo.root) == 0
        assert git(ledger.repo.root, "status", "--porcelain") == ""
    hosts = git(shared.remote, "log", "--format=%(trailers:key=Factory-Host,valueonly)",
                "master").split()
    assert {h: hosts.count(h) for h in set(hosts)} == {f"host-{c}": 48 for c in range(3)}


RACER = """
import json, os, random, sys, time
from gptme_factory.errors import ClaimLost
from gptme_factory.ledger.store import Ledger
from gptme_factory.line import engine
repo, go, *aids = sys.argv[1:]
while not os.path.exists(go):
    time.sleep(0.005)
ledger = Ledger.open(repo)
random.shuffle(aids)
for aid in aids:
    try:
        started = engine.start_stage(ledger, aid)
        print(json.dumps({"aid": aid, "won": started.cell}), flush=True)
    except ClaimLost as exc:
        print(json.dumps({"aid": aid, "lost": str(exc), "to": exc.cell}), flush=True)
"""


@pytest.mark.slow
def test_racing_claims_on_two_clones_have_one_winner_per_stage_and_no_fork(
    tmp_path: Path,
) -> None:
    shared = shared_clones(tmp_path, 2)
    first = shared.ledger(0)
    aids = [new_artifact(first, f"Artifact {i}") for i in range(3)]
    sync(first)
    sync(shared.ledger(1))
    go = tmp_path / "go"
    procs = [start_script(RACER, str(shared.clones[c]), str(go), *aids, host=f"host-{c}")
             for c in range(2) for _ in range(4)]
    results = [json.loads(line) for out in release(procs, go) for line in out.splitlines()]
    assert len(results) == 8 * 3
    for aid in aids:
        mine = [r for r in results if r["aid"] == aid]
        winners = [r["won"] for r in mine if "won" in r]
        assert len(winners) == 1, mine
        for r in mine:
            if "lost" in r:
                assert r["lost"].startswith(f"stage scout of {aid} was claimed by {winners[0]}"
                                            " on host-"), r
                assert r["to"] == winners[0]
    started = [p for p in shared.remote_files("factory/artifacts") if "stage_started" in p]
    assert len(started) == 3  # one claim per stage reached the remote, and nothing else
    for i in range(2):
        ledger = shared.ledger(i)
        sync(ledger)
        assert verify_ledger(ledger) == []
        for aid in aids:
            assert [e.kind for e in ledger.read(aid).events] == ["stage_started"]


HOLDER = """
import sys, time
from gptme_factory.cells.spawn import progress
from gptme_factory.ledger.store import Ledger
from gptme_factory.line import engine
repo, aid = sys.argv[1:3]
ledger = Ledger.open(repo)
cell = engine.start_stage(ledger, aid).cell
print(cell, flush=True)
while True:
    progress(Ledger.open(repo), cell, "working")
    time.sleep(0.3)
"""


@pytest.mark.slow
def test_a_killed_holder_loses_its_claim_once_its_lease_expires(tmp_path: Path) -> None:
    shared = shared_clones(tmp_path, 2, lease_s=4)
    a = shared.ledger(0)
    aid = new_artifact(a)
    sync(a)
    holder = start_script(HOLDER, str(shared.clones[0]), aid, host="host-0")
    assert holder.stdout is not None
    cell = holder.stdout.readline().strip()
    deadline = time.monotonic() + 60
    while not any("lease_renewed" in p for p in shared.remote_files("factory/artifacts")):
        assert time.monotonic() < deadline and holder.poll() is None, holder.communicate()
        time.sleep(0.2)
    holder.send_signal(signal.SIGKILL)  # mid-whatever: no handoff, no goodbye
    holder.communicate()
    b = shared.ledger(1)
    sync(b)
    with pytest.raises(ClaimLost, match="cannot be taken over before then"):
        engine.start_stage(b, aid, take_over=True)
    chain = b.read(aid)
    lease_until = max(e.event.until for e in chain.events  # type: ignore[union-attr]
                      if e.kind == "lease_renewed")
    while b.clock() <= lease_until:
        time.sleep(0.2)
    sync(b)
    new = engine.start_stage(b, aid, take_over=True)
    kinds = [e.kind for e in b.read(aid).events]
    assert kinds[0] == "stage_started" and set(kinds[1:-2]) == {"lease_renewed"}
    assert kinds[-2:] == ["claim_taken_over", "stage_started"]
    assert any("claim_taken_over" in p for p in shared.remote_files("factory/artifacts"))
    a = shared.ledger(0)  # the holder's clone: recovers, catches up, verifies clean
    sync(a)
    assert verify_ledger(a) == [] and verify_ledger(b) == []
    view = engine.load(a, aid)[1]
    assert view.cell == new.cell and view.cells[cell].outcome == "taken_over"
