"""Claims on a shared ledger: a stage's start holds only once its commit is on the remote.

Real clones of a real bare remote; the clock is moved by handing the Ledger another clock
(leases are wall-clock by nature), never by patching the code under test.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from gptme_factory.cells.spawn import progress
from gptme_factory.cli import main
from gptme_factory.errors import (
    ClaimLost,
    HandoffRefused,
    RemoteUnreachable,
    SyncRefused,
    UsageError,
)
from gptme_factory.ledger.records import ClaimTakenOver, LeaseRenewed, StageStarted
from gptme_factory.ledger.store import Ledger
from gptme_factory.ledger.sync import sync
from gptme_factory.line import engine
from gptme_factory.line.verify import verify_ledger
from tests.conftest import git
from tests.ledger_helpers import new_artifact
from tests.sync_helpers import Shared, head, shared_clones

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc)


@pytest.fixture
def shared(tmp_path: Path) -> Shared:
    return shared_clones(tmp_path, 2, lease_s=600)


def at(ledger: Ledger, when: datetime) -> Ledger:
    ledger.clock = lambda: when
    return ledger


def memo(aid: str) -> dict[str, object]:
    return {
        "kind": "scout_memo", "artifact": aid,
        "files": [{"path": "src/app.py", "why": "the timeout lives here"}],
        "constraints": ["no new dependencies"], "approach": "Raise the timeout.",
        "verification_plan": [{"command": "pytest -q", "proves": "it passes",
                               "criteria": [0]}],
        "risks": ["none"], "criteria": [{"criterion": 0, "plan": "pytest -q"}],
    }


def test_a_claim_is_on_the_remote_before_start_returns(shared: Shared) -> None:
    a = at(shared.ledger(0), T0)
    aid = new_artifact(a)
    started = engine.start_stage(a, aid)
    assert head(a.repo.root) == shared.remote_head()  # the intake went along with it
    event = a.read(aid).events[-1].event
    assert isinstance(event, StageStarted) and event.cell == started.cell
    assert event.host == "host-0" and event.lease_until == T0 + timedelta(seconds=600)
    trailers = git(a.repo.root, "log", "-1", "--format=%(trailers:key=Factory-Host,valueonly)")
    assert trailers.strip() == "host-0"


def test_the_second_claimant_gets_the_sentence_and_nothing_is_written(shared: Shared) -> None:
    a, b = at(shared.ledger(0), T0), at(shared.ledger(1), T0)
    aid = new_artifact(a)
    sync(a)
    sync(b)
    won = engine.start_stage(a, aid)
    before = head(b.repo.root)
    with pytest.raises(ClaimLost) as err:
        engine.start_stage(b, aid)  # b has not seen a's claim: its push loses the race
    assert str(err.value).startswith(
        f"stage scout of {aid} was claimed by {won.cell} on host-0 at {T0.isoformat()}")
    assert (err.value.cell, err.value.host) == (won.cell, "host-0")
    assert head(b.repo.root) == shared.remote_head() != before  # a's claim came in; none of b's
    assert [e.kind for e in b.read(aid).events] == ["stage_started"]
    assert verify_ledger(b) == []
    # asking again, now that b knows, gives the same answer without any push
    with pytest.raises(ClaimLost, match=f"claimed by {won.cell} on host-0"):
        engine.start_stage(b, aid)


def test_a_claim_whose_remote_moved_for_other_artifacts_is_replayed_and_wins(
    shared: Shared,
) -> None:
    a, b = shared.ledger(0), shared.ledger(1)
    aid = new_artifact(a)
    sync(a)
    sync(b)
    new_artifact(a, "Something else")
    sync(a)  # the remote moved, but not for aid
    started = engine.start_stage(b, aid)
    assert head(b.repo.root) == shared.remote_head()
    assert git(b.repo.root, "rev-list", "--merges", "HEAD") == ""
    assert b.read(aid).events[-1].event.cell == started.cell  # type: ignore[union-attr]
    assert len(b.artifact_ids()) == 2 and verify_ledger(b) == []


def test_a_lease_is_renewed_by_progress_at_most_once_per_half_lease(shared: Shared) -> None:
    a = at(shared.ledger(0), T0)
    aid = new_artifact(a)
    cell = engine.start_stage(a, aid).cell
    assert progress(at(a, T0 + timedelta(seconds=200)), cell, "read the code") is None
    until = progress(at(a, T0 + timedelta(seconds=400)), cell, "wrote a test")
    assert until == T0 + timedelta(seconds=1000)
    assert progress(at(a, T0 + timedelta(seconds=500)), cell, "ran it") is None
    kinds = [e.kind for e in a.read(aid).events]
    assert kinds == ["stage_started", "lease_renewed"]
    assert head(a.repo.root) == shared.remote_head()  # the renewal was pushed at once
    renewed = a.read(aid).events[-1].event
    assert isinstance(renewed, LeaseRenewed) and renewed.until == until


def test_an_expired_claim_is_taken_over_and_its_holder_refused(shared: Shared) -> None:
    a, b = at(shared.ledger(0), T0), at(shared.ledger(1), T0)
    aid = new_artifact(a)
    old = engine.start_stage(a, aid).cell
    sync(b)
    with pytest.raises(ClaimLost, match=r"lease until .*: it cannot be taken over before then"):
        engine.start_stage(at(b, T0 + timedelta(seconds=300)), aid, take_over=True)
    with pytest.raises(ClaimLost, match=r"its lease expired at .* --take-over"):
        engine.start_stage(at(b, T0 + timedelta(seconds=700)), aid)
    new = engine.start_stage(at(b, T0 + timedelta(seconds=700)), aid, take_over=True)
    events = b.read(aid).events
    assert [e.kind for e in events] == ["stage_started", "claim_taken_over", "stage_started"]
    taken = events[1].event
    assert isinstance(taken, ClaimTakenOver)
    assert (taken.cell, taken.host) == (old, "host-0")
    assert events[2].event.attempt == 2  # type: ignore[union-attr]
    subject = git(b.repo.root, "log", "-1", "--format=%s")
    assert "scout taken over from host-0" in subject and "scout started" in subject
    assert git(b.repo.root, "show", "--name-only", "--format=", "HEAD").count(".yaml") == 2
    assert head(b.repo.root) == shared.remote_head()
    # the old holder comes back: its renewal and its handoff are refused
    with pytest.raises(ClaimLost, match=f"the claim of {old} .* was taken over by {new.cell}"):
        progress(at(a, T0 + timedelta(seconds=800)), old, "still here")
    with pytest.raises(HandoffRefused, match="is finished"):
        engine.submit(a, old, memo(aid))
    assert verify_ledger(a) == [] and verify_ledger(b) == []


def test_take_over_needs_a_shared_ledger(ledger: Ledger) -> None:
    aid = new_artifact(ledger)
    with pytest.raises(UsageError, match="--take-over is for a shared ledger"):
        engine.start_stage(ledger, aid, take_over=True)


def test_offline_claims_stay_local_and_carry_no_lease(
    shared: Shared, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GPTME_FACTORY_OFFLINE", "1")
    a = shared.ledger(0)
    aid = new_artifact(a)
    remote = shared.remote_head()
    engine.start_stage(a, aid)
    assert shared.remote_head() == remote
    event = a.read(aid).events[-1].event
    assert isinstance(event, StageStarted) and event.host is None and event.lease_until is None


def test_an_unreachable_remote_fails_the_claim_and_records_nothing(shared: Shared) -> None:
    a = shared.ledger(0)
    aid = new_artifact(a)
    git(a.repo.root, "remote", "set-url", "origin", str(shared.remote) + "-gone")
    before = head(a.repo.root)
    with pytest.raises(RemoteUnreachable, match="could not push to origin"):
        engine.start_stage(a, aid)
    assert head(a.repo.root) == before
    assert a.read(aid).events == []
    assert git(a.repo.root, "status", "--porcelain") == ""


def test_a_claim_never_pushes_the_users_own_commits(shared: Shared) -> None:
    a = shared.ledger(0)
    aid = new_artifact(a)
    sync(a)
    (a.repo.root / "journal.md").write_text("today\n")
    git(a.repo.root, "add", "journal.md")
    git(a.repo.root, "commit", "-q", "-m", "journal: today")
    before, remote = head(a.repo.root), shared.remote_head()
    with pytest.raises(SyncRefused, match="of your own"):
        engine.start_stage(a, aid)
    assert (head(a.repo.root), shared.remote_head()) == (before, remote)
    assert a.read(aid).events == []


def test_a_handoff_is_pushed_as_it_is_submitted(shared: Shared) -> None:
    a, b = shared.ledger(0), shared.ledger(1)
    aid = new_artifact(a)
    cell = engine.start_stage(a, aid).cell
    stored = engine.submit(a, cell, memo(aid))
    assert stored is not None and a.notes == []
    assert stored.path in shared.remote_files()
    sync(b)
    assert engine.advance(b, aid).passed  # another clone judges it
    assert verify_ledger(b) == []


def test_cli_start_reports_the_claim_sentence(shared: Shared) -> None:
    a = shared.ledger(0)
    aid = new_artifact(a)
    sync(a)
    runner = CliRunner()
    first = runner.invoke(main, ["start", aid, "--repo", str(shared.clones[1])],
                          env={"GPTME_FACTORY_HOST": "laptop"})
    assert first.exit_code == 0, first.output
    second = runner.invoke(main, ["start", aid, "--repo", str(shared.clones[0])])
    assert second.exit_code == 5
    assert f"stage scout of {aid} was claimed by {aid}.scout." in second.output
    assert "on laptop at" in second.output



def test_a_foreman_leaves_another_machines_running_cell_alone(shared: Shared) -> None:
    from gptme_factory.cells.foreman import WAITING, Foreman

    a, b = shared.ledger(0), shared.ledger(1)
    aid = new_artifact(a)
    cell = engine.start_stage(a, aid).cell  # claimed on host-0; no process known on host-1
    sync(b)
    foreman = Foreman(b, [aid])
    foreman.tick()
    stopped = foreman.stopped[aid]
    assert stopped.kind == WAITING
    assert stopped.reason.startswith(f"stage scout of {aid} was claimed by {cell} on host-0")
    assert [e.kind for e in b.read(aid).events] == ["stage_started"]  # no "crashed" recorded


def test_pending_decisions_are_pushed_or_noted(shared: Shared) -> None:
    from gptme_factory.line.claims import push_pending
    from tests.ledger_helpers import abandon

    a = shared.ledger(0)
    aid = new_artifact(a)
    abandon(a, aid, "not needed")
    push_pending(a)
    assert head(a.repo.root) == shared.remote_head() and a.notes == []
    abandon(a, new_artifact(a, "Second"), "neither")
    git(a.repo.root, "remote", "set-url", "origin", str(shared.remote) + "-gone")
    push_pending(a, "the verdict")  # recorded here, not pushed: said, not raised
    assert len(a.notes) == 1
    assert a.notes[0].startswith("the verdict is recorded here but not pushed to origin/master")


@pytest.mark.slow
def test_a_build_made_on_one_clone_is_verified_on_another(tmp_path: Path) -> None:
    from gptme_factory.demo.sample import FIXED_SOURCE
    from tests.flow_helpers import sample_artifact
    from tests.test_engine import build, report, scout_memo

    shared = shared_clones(tmp_path, 3)
    a, b = shared.ledger(0), shared.ledger(1)
    aid = sample_artifact(a)
    git(a.repo.root, "push", "-q", "origin", "master")  # the project itself, by hand
    s = engine.start_stage(a, aid)
    engine.submit(a, s.cell, scout_memo(aid))
    assert engine.advance(a, aid).passed
    started = engine.start_stage(a, aid)
    stored = engine.submit(a, started.cell, build(a, started, FIXED_SOURCE))
    assert stored is not None and a.notes == []
    branch = f"factory/{started.cell}"
    on_remote = git(shared.remote, "rev-parse", branch).strip()  # pushed with the handoff
    result = engine.advance(a, aid)
    assert result.passed and result.outcome is not None
    assert result.outcome.commit == on_remote
    sync(a)
    # clone b verifies it: the exact commit came with the builder's branch
    sync(b)
    engine.refresh_base(b, aid)
    v = engine.start_stage(b, aid)
    engine.submit(b, v.cell, report(aid, on_remote, 0, "pass"))
    verdict = engine.advance(b, aid)  # runs the checks itself, on that commit, on clone b
    assert verdict.passed, verdict.reasons
    # clone c never fetched the builders' branches: starting the next stage fetches the build
    c = shared.ledger(2)
    git(c.repo.root, "pull", "-q", "--ff-only", "origin", "master")
    assert c.repo.resolve_commit(on_remote) is None
    engine.refresh_base(c, aid)
    assert c.repo.resolve_commit(on_remote) == on_remote
    assert verify_ledger(b) == [] and verify_ledger(c) == []
