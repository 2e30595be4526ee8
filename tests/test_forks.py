"""Fork resolution: keep one branch of a forked stream; nothing is lost, verify is clean.

Forks are made the way they happen: two real clones advance the same stream offline and
sync. Then `resolve` keeps one side, for artifacts and for lines alike.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from gptme_factory.cli import main
from gptme_factory.errors import ForkDetected, UsageError
from gptme_factory.ledger.records import ForkResolved
from gptme_factory.ledger.store import Ledger
from gptme_factory.ledger.sync import sync
from gptme_factory.line import engine, lifecycle
from gptme_factory.line.forks import forks, resolve
from gptme_factory.line.verify import verify_ledger
from tests.conftest import git
from tests.ledger_helpers import abandon, append_next, new_artifact
from tests.sync_helpers import Shared, shared_clones


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPTME_FACTORY_OFFLINE", "1")  # no claims: forks can happen


def forked(tmp_path: Path) -> tuple[Shared, Ledger, Ledger, str]:
    """Two clones that both started the scout stage of one artifact offline, then synced."""
    shared = shared_clones(tmp_path, 2)
    a, b = shared.ledger(0), shared.ledger(1)
    aid = new_artifact(a)
    sync(a)
    sync(b)
    engine.start_stage(a, aid)
    engine.start_stage(b, aid)  # random cell ids: two different events, one parent
    sync(a)
    sync(b)
    sync(a)
    return shared, a, b, aid


def event_files(ledger: Ledger, aid: str) -> list[str]:
    return sorted(p.name for p in ledger.artifact_dir(aid).glob("0*.yaml"))


@pytest.mark.usefixtures("offline")
def test_an_offline_fork_is_resolved_and_nothing_is_lost(tmp_path: Path) -> None:
    shared, a, b, aid = forked(tmp_path)
    assert [p.code for p in verify_ledger(a)] == ["fork"]
    with pytest.raises(ForkDetected, match=f"gptme-factory resolve {aid} --keep EVENT"):
        engine.finish(a, aid, "abandoned", "no longer needed")
    (fork,) = forks(a, aid)
    assert len(fork.branches) == 2 and fork.after is None
    keep, other = fork.branches[1].head, fork.branches[0].head  # not the one linked first
    before = {name: (a.artifact_dir(aid) / name).read_bytes() for name in event_files(a, aid)}
    stored = resolve(a, aid, keep.digest[:12], reason="a's scout is further along")
    assert isinstance(stored.event, ForkResolved)
    (choice,) = stored.event.choices
    assert (choice.kept, choice.discarded) == (keep.digest, [other.digest])
    assert stored.header.parent == keep.digest and stored.seq == 2
    notes: list[str] = []
    assert verify_ledger(a, notes) == []
    assert any("discarded" in n and other.path.rpartition("/")[2] in n for n in notes)
    # both branches' files are still there, byte for byte, and in history
    for name, raw in before.items():
        assert (a.artifact_dir(aid) / name).read_bytes() == raw
    chain = a.read(aid)
    assert [e.path for e in chain.events] == [keep.path, stored.path]
    assert [e.path for e in chain.discarded] == [other.path]
    # the chain goes on after the resolution, on every clone
    cell = engine.load(a, aid)[1].cell
    assert cell == keep.event.cell
    nxt = engine.finish(a, aid, "abandoned", "done with it")
    assert nxt.header.parent == stored.digest and nxt.seq == 3
    sync(a)
    sync(b)
    assert verify_ledger(b) == [] and b.read(aid).events[-1].digest == nxt.digest
    assert other.path in git(b.repo.root, "log", "--name-only", "--format=")


@pytest.mark.usefixtures("offline")
def test_resolving_refuses_what_is_not_a_choice(tmp_path: Path) -> None:
    shared, a, _, aid = forked(tmp_path)
    (fork,) = forks(a, aid)
    with pytest.raises(UsageError, match="is not an event of"):
        resolve(a, aid, "0123456789ab")
    with pytest.raises(UsageError, match="give an event's hash"):
        resolve(a, aid, "0")
    kept = fork.branches[0].head
    resolve(a, aid, kept.digest[:12])
    with pytest.raises(UsageError, match="nothing to resolve"):
        resolve(a, aid, kept.digest[:12])
    with pytest.raises(UsageError, match="was resolved already, keeping"):
        resolve(a, aid, fork.branches[1].head.digest[:12])
    assert verify_ledger(a) == []
    assert forks(a, aid) == []


@pytest.mark.usefixtures("offline")
def test_a_fork_further_down_a_branch_needs_an_event_below_it(tmp_path: Path) -> None:
    shared = shared_clones(tmp_path, 2)
    a, b = shared.ledger(0), shared.ledger(1)
    aid = new_artifact(a)
    append_next(a, aid)
    sync(a)
    sync(b)
    abandon(a, aid, "here")
    abandon(b, aid, "there")
    sync(a)
    sync(b)
    (fork,) = forks(b, aid)
    assert fork.after is not None and fork.after.seq == 1
    with pytest.raises(UsageError, match="forks again after"):
        resolve(b, aid, fork.after.digest[:12])  # the common event: which side?
    stored = resolve(b, aid, fork.branches[1].head.path.rpartition("/")[2])
    assert stored.seq == 3 and verify_ledger(b) == []


@pytest.mark.usefixtures("offline")
def test_a_line_fork_is_resolved_by_the_same_code(tmp_path: Path) -> None:
    shared = shared_clones(tmp_path, 2)
    a, b = shared.ledger(0), shared.ledger(1)
    lifecycle.park(a, "default", ["a customer asks"], reason="quiet")
    lifecycle.park(b, "default", ["next quarter"], reason="busy")
    sync(a)
    sync(b)
    assert [p.code for p in verify_ledger(b)] == ["fork"]
    (fork,) = forks(b, "line:default")
    keep = next(br.head for br in fork.branches if "next quarter" in br.head.event.triggers)
    stored = resolve(b, "line:default", keep.digest)
    assert verify_ledger(b) == []
    assert lifecycle.line_state(b, "default").triggers == ["next quarter"]
    lifecycle.unpark(b, "default", "the quarter began")
    assert b.read_line("default").events[-1].header.parent == stored.digest
    subject = git(b.repo.root, "log", "-2", "--format=%s").splitlines()[1]
    assert subject == f"factory(line:default): fork resolved: kept {keep.digest[:12]}"


@pytest.mark.usefixtures("offline")
def test_cli_resolve_lists_the_branches_then_keeps_one(tmp_path: Path) -> None:
    shared, a, _, aid = forked(tmp_path)
    runner = CliRunner()
    listing = runner.invoke(main, ["resolve", aid, "--repo", str(a.repo.root)])
    assert listing.exit_code == 2
    assert f"fork in {aid} after its start: 2 branches" in listing.output
    assert f"name the branch to keep: `gptme-factory resolve {aid} --keep" in listing.output
    keep = forks(a, aid)[0].branches[0].head.digest[:12]
    assert f"  {keep}  #1 stage_started by tester" in listing.output
    data = runner.invoke(main, ["resolve", aid, "--json", "--repo", str(a.repo.root)])
    assert len(json.loads(data.output)["forks"][0]["branches"]) == 2
    done = runner.invoke(main, ["resolve", aid, "--keep", keep, "--reason", "mine",
                                "--repo", str(a.repo.root)])
    assert done.exit_code == 0, done.output
    assert done.output.startswith(f"resolved: {a.artifact_rel(aid)}/0002-fork_resolved-")
    assert runner.invoke(main, ["verify", "--repo", str(a.repo.root)]).exit_code == 0


def test_a_resolution_off_the_kept_branch_does_not_count(tmp_path: Path,
                                                         offline: None) -> None:
    shared, a, _, aid = forked(tmp_path)
    (fork,) = forks(a, aid)
    one, two = (br.head for br in fork.branches)
    # A resolution written after branch `two`'s tip that claims to keep `one`: hand-made.
    chain = a.read(aid, tolerant=True)
    bogus_stream = type(chain)(chain.kind, chain.id, chain.folder, events=[two],
                               root=chain.root)
    from gptme_factory.ledger.records import ForkChoice

    with a.locked():
        a.record(bogus_stream, ForkResolved(choices=[ForkChoice(
            parent=one.header.parent, kept=one.digest, discarded=[two.digest])]))
    problems = verify_ledger(a)
    assert any(p.code == "fork" and "is not on the branch it keeps" in p.message
               for p in problems)
