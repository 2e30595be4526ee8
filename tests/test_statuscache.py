"""The status cache: faster, never wrong. Every `status` here is checked against a cold read.

The cache does not trust anything changed in the last 3 s (racy), so the test that exercises
warm hits waits that long once, then damages settled artifacts one way each.
"""

from __future__ import annotations

import marshal
import os
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from gptme_factory.cli import main
from gptme_factory.ledger.store import Ledger
from gptme_factory.views.status import load_summaries
from gptme_factory.views.statuscache import SUMMARIES, shard
from tests.ledger_helpers import abandon, append_next, new_artifact


@pytest.fixture(autouse=True, params=["stat", "watchman"])
def mode(request: pytest.FixtureRequest) -> str:
    """How the cache learns what changed: its own checks, or the file watcher's word."""
    if request.param == "watchman":
        request.getfixturevalue("watching")
    return str(request.param)


def status(ledger: Ledger) -> dict[str, dict[str, Any]]:
    """`status` through the cache, asserted equal to `status --no-cache`."""
    cached = [s.to_json() for s in load_summaries(Ledger.open(ledger.repo.root))]
    cold = [s.to_json() for s in load_summaries(Ledger.open(ledger.repo.root), use_cache=False)]
    assert cached == cold
    return {row["artifact"]: row for row in cached}


def rewrite_in_place(path: Path, old: bytes, new: bytes, keep_mtime: bool = False) -> None:
    """Edit a file without changing its inode or size (optionally restoring its mtime)."""
    assert len(old) == len(new)
    st = path.stat()
    with open(path, "r+b") as fh:
        raw = fh.read()
        assert old in raw
        fh.seek(0)
        fh.write(raw.replace(old, new))
    if keep_mtime:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.mark.slow
def test_settled_cache_hits_and_every_change_shows(ledger: Ledger) -> None:
    aids = [new_artifact(ledger, f"Artifact {i}") for i in range(7)]
    for aid in aids:
        append_next(ledger, aid)
    time.sleep(3.2)  # let every file leave the racy window
    status(ledger)
    shards = sorted((ledger.runtime_dir / SUMMARIES.file).iterdir())
    stamps = [p.stat().st_mtime_ns for p in shards]
    rows = status(ledger)
    assert [p.stat().st_mtime_ns for p in shards] == stamps  # pure hits: nothing rewritten
    assert {r["events"] for r in rows.values()} == {1}
    files = {aid: ledger.read(aid).events[0].path for aid in aids}
    root = ledger.repo.root

    # 0: a committed event edited in place, same size, mtime restored (only git's stat sees it)
    rewrite_in_place(root / files[aids[0]], b"by: tester", b"by: mallor", keep_mtime=True)
    # 1: the intake edited in place, same size
    rewrite_in_place(ledger.artifact_dir(aids[1]) / "intake.yaml", b"Artifact 1", b"Artifact X")
    # 2: a stray (malformed) event file appears
    (ledger.artifact_dir(aids[2]) / "0002-abandoned-0123456789ab.yaml").write_text("kind: [\n")
    # 3: a real new event through the ledger
    abandon(ledger, aids[3], "dropped")
    # 4: an event file deleted
    (root / files[aids[4]]).unlink()
    # 5: the event replaced by a same-size file (new inode), old mtime set back
    path = root / files[aids[5]]
    st = path.stat()
    tmp = path.with_name("x.tmp")
    tmp.write_bytes(path.read_bytes().replace(b"by: tester", b"by: mallor"))
    os.replace(tmp, path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))

    rows = status(ledger)
    assert "content does not match the hash" in (rows[aids[0]]["problem"] or "")
    assert rows[aids[1]]["title"] == "Artifact X"
    assert rows[aids[2]]["state"] == "broken" and "malformed YAML" in rows[aids[2]]["problem"]
    assert (rows[aids[3]]["state"], rows[aids[3]]["events"]) == ("abandoned", 2)
    assert (rows[aids[4]]["events"], rows[aids[4]]["status"]) == (0, "pending")
    assert "content does not match the hash" in (rows[aids[5]]["problem"] or "")
    assert (rows[aids[6]]["events"], rows[aids[6]]["problem"]) == (1, None)  # untouched


def test_fresh_changes_show_immediately(ledger: Ledger) -> None:
    aid = new_artifact(ledger, "Racy one")
    intake = ledger.artifact_dir(aid) / "intake.yaml"
    assert status(ledger)[aid]["title"] == "Racy one"
    rewrite_in_place(intake, b"Racy one", b"Racy two", keep_mtime=True)
    assert status(ledger)[aid]["title"] == "Racy two"
    append_next(ledger, aid)
    assert status(ledger)[aid]["last_event"] == "stage_started"
    other = new_artifact(ledger, "Second")
    assert set(status(ledger)) == {aid, other}


def test_removed_artifact_and_config_change(ledger: Ledger) -> None:
    a, b = new_artifact(ledger), new_artifact(ledger, "Gone soon")
    status(ledger)
    gone = ledger.artifact_dir(b)
    for p in gone.iterdir():
        p.unlink()
    gone.rmdir()
    assert set(status(ledger)) == {a}
    cfg = ledger.dir / "factory.yaml"
    cfg.write_text(cfg.read_text().replace("idea to measured outcome", "a new description"))
    assert set(status(ledger)) == {a}


@pytest.mark.parametrize(
    "garbage", [b"", b"not marshal", b"[]", b"{}", b'{"key": 1, "artifacts": 3}',
                marshal.dumps([]), marshal.dumps({"key": 1, "artifacts": 3}),
                marshal.dumps({"artifacts": {"x": [1, 2, 3, 4]}}),
                marshal.dumps({"key": "?", "groups": {}, "artifacts": {}})[:-3]]
)
def test_damaged_cache_is_ignored_and_rebuilt(ledger: Ledger, garbage: bytes) -> None:
    aids = {new_artifact(ledger, f"A {i}") for i in range(3)}
    status(ledger)
    paths = {shard(ledger, SUMMARIES, aid) for aid in aids}
    for path in paths:
        path.write_bytes(garbage)
    assert set(status(ledger)) == aids
    assert all(path.read_bytes() != garbage for path in paths)


@pytest.mark.parametrize("garbage", [
    b"", b"not marshal", b"[]", marshal.dumps([]), marshal.dumps({"version": 2}),
    marshal.dumps({"version": 2, "base": "factory/artifacts", "watch": {}}),
    marshal.dumps({"version": 2, "base": "factory/artifacts", "kinds": {}})[:-2]])
def test_a_damaged_watcher_state_is_ignored(ledger: Ledger, garbage: bytes) -> None:
    from gptme_factory.views.cachewatch import STATE_FILE

    aids = {new_artifact(ledger, f"A {i}") for i in range(3)}
    status(ledger)
    (ledger.runtime_dir / STATE_FILE).write_bytes(garbage)
    gone = new_artifact(ledger, "Made after the state was damaged")
    assert set(status(ledger)) == aids | {gone}


def test_unwritable_cache_still_gives_a_correct_status(ledger: Ledger) -> None:
    aid = new_artifact(ledger)
    runtime = ledger.runtime_dir
    if runtime.exists():
        for p in runtime.iterdir():
            p.unlink()
        runtime.rmdir()
    runtime.write_text("a file where the cache dir should be\n")
    assert set(status(ledger)) == {aid}
    result = CliRunner().invoke(main, ["status", "--repo", str(ledger.repo.root)])
    assert result.exit_code == 0 and aid in result.output


def test_cache_stays_out_of_git(ledger: Ledger) -> None:
    aid = new_artifact(ledger)
    status(ledger)
    assert shard(ledger, SUMMARIES, aid).is_file()
    assert ledger.repo.git("status", "--porcelain", "--untracked-files=all").decode() == ""


def spawn_with_brief(ledger: Ledger, aid: str) -> str:
    """Start the scout stage and record its cell's spawn, the brief committed beside it."""
    from gptme_factory.ledger.records import Budget
    from gptme_factory.line import engine

    with ledger.transaction():
        started = engine.start_stage(ledger, aid)
        engine.record_cell_spawned(
            ledger, started.cell, backend="command", budget=Budget(timeout_s=60),
            brief_path=f"{ledger.artifact_rel(aid)}/briefs/{started.cell}.md",
            brief=f"# brief of {started.cell}\n".encode())
    return started.cell


@pytest.fixture
def settled(monkeypatch: pytest.MonkeyPatch) -> None:
    """No racy window: a folder is trusted as soon as it is cached."""
    from gptme_factory.views import statuscache

    monkeypatch.setattr(statuscache, "RACY_NS", 0)


def test_an_artifact_with_a_committed_brief_is_a_hit(ledger: Ledger, settled: None,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.ledger_helpers import reads

    briefed, plain = new_artifact(ledger, "Briefed"), new_artifact(ledger, "Plain")
    cell = spawn_with_brief(ledger, briefed)
    assert (ledger.artifact_dir(briefed) / "briefs" / f"{cell}.md").is_file()
    status(ledger)
    seen = reads(monkeypatch)
    rows = status(ledger)  # (its cold half reads both: count the cached half only)
    assert seen.count(briefed) == seen.count(plain) == 1
    seen.clear()
    load_summaries(Ledger.open(ledger.repo.root))
    assert seen == []  # warm: the brief's folder matched HEAD's tree
    assert rows[briefed]["status"] == "running"
    # a brief edited in place is content of the folder: seen, and re-read
    brief = ledger.artifact_dir(briefed) / "briefs" / f"{cell}.md"
    rewrite_in_place(brief, b"# brief", b"# BRIEF")
    load_summaries(Ledger.open(ledger.repo.root))
    assert seen == [briefed]


def test_a_write_rereads_only_what_it_changed(ledger: Ledger, settled: None,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.ledger_helpers import reads

    aids = [new_artifact(ledger, f"Artifact {i}") for i in range(5)]
    spawn_with_brief(ledger, aids[0])
    load_summaries(Ledger.open(ledger.repo.root))
    append_next(ledger, aids[3])  # the ledger is not kept fresh here: status must notice
    seen = reads(monkeypatch)
    rows = status(ledger)
    assert seen.count(aids[3]) == 2 and seen.count(aids[1]) == 1  # cached half: aids[3] only
    assert rows[aids[3]]["last_event"] == "stage_started"
    seen.clear()
    load_summaries(Ledger.open(ledger.repo.root))
    assert seen == []


def test_a_writer_keeps_the_cache_warm(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    """keep_fresh: the committing process stores what it changed; status reads nothing.

    No `settled` here: a folder written a moment ago is inside the racy window, so the
    writer keeps the names in it, and the next status compares those.
    """
    from gptme_factory.views.factcache import keep_warm
    from tests.ledger_helpers import reads

    aids = [new_artifact(ledger, f"Artifact {i}") for i in range(3)]
    load_summaries(Ledger.open(ledger.repo.root))
    writer = Ledger.open(ledger.repo.root)
    keep_warm(writer)
    spawn_with_brief(writer, aids[1])
    abandon(writer, aids[2], "not needed")
    seen = reads(monkeypatch)
    rows = {s.artifact: s for s in load_summaries(Ledger.open(ledger.repo.root))}
    assert seen == []
    assert rows[aids[1]].status == "running" and rows[aids[2]].state == "abandoned"
    assert status(ledger)[aids[2]]["state"] == "abandoned"  # the same as a cold read
    # a file that joins a folder the writer just wrote is still seen (the names differ)
    seen.clear()
    (ledger.artifact_dir(aids[1]) / "0003-abandoned-0123456789ab.yaml").write_text("kind: [\n")
    rows = {s.artifact: s for s in load_summaries(Ledger.open(ledger.repo.root))}
    assert seen == [aids[1]] and rows[aids[1]].state == "broken"


def test_summaries_come_in_id_order_when_artifacts_share_a_bucket(
        ledger: Ledger, settled: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cache works bucket by bucket; what it returns is still sorted by id."""
    import secrets

    suffixes = iter(["0000aa", "0000bb", "0000aa", "0000cc"])  # a: b1, b: b2, c: b1, d: b3
    monkeypatch.setattr(secrets, "token_hex", lambda n: next(suffixes))
    aids = [new_artifact(ledger, title) for title in ("A one", "B two", "C three", "D four")]
    assert [a[-2:] for a in aids] == ["aa", "bb", "aa", "cc"]
    monkeypatch.undo()
    for _ in range(2):  # cold, then warm
        got = [s.artifact for s in load_summaries(Ledger.open(ledger.repo.root))]
        assert got == sorted(aids)
    status(ledger)


def test_a_change_in_a_shared_bucket_rereads_only_its_artifact(
        ledger: Ledger, settled: None, monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    """A bucket found whole is taken at once; one change in it sends only its artifact back."""
    import secrets

    from tests.ledger_helpers import reads

    with monkeypatch.context() as patch:  # (undo() would end `settled` too)
        patch.setattr(secrets, "token_hex", lambda n: "0000aa")
        aids = [new_artifact(ledger, title) for title in ("One", "Two", "Six")]
    assert {a[-2:] for a in aids} == {"aa"}
    load_summaries(Ledger.open(ledger.repo.root))
    seen = reads(monkeypatch)
    load_summaries(Ledger.open(ledger.repo.root))
    assert seen == []  # the whole bucket, as stored
    # an in-place edit that keeps size and mtime: only git's stat check sees it
    rewrite_in_place(ledger.artifact_dir(aids[0]) / "intake.yaml", b"One", b"Uno",
                     keep_mtime=True)
    got = {s.artifact: s for s in load_summaries(Ledger.open(ledger.repo.root))}
    assert seen == [aids[0]] and got[aids[0]].title == "Uno"
    assert got[aids[1]].title == "Two" and got[aids[2]].title == "Six"
    # a file joining another folder of the bucket: its folder's mark moved
    seen.clear()
    (ledger.artifact_dir(aids[2]) / "0001-abandoned-0123456789ab.yaml").write_text("kind: [\n")
    got = {s.artifact: s for s in load_summaries(Ledger.open(ledger.repo.root))}
    # Without the watcher the uncommitted edit is read again (HEAD has other bytes); the
    # watcher vouches that nothing of it changed since it was read.
    assert sorted(seen) == sorted([aids[0], aids[2]] if mode == "stat" else [aids[2]])
    assert got[aids[2]].state == "broken" and got[aids[1]].state == "idea"
    status(ledger)


def test_after_a_kept_warm_write_only_the_written_folder_is_looked_at(
        ledger: Ledger, settled: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer's shard is handed over: its bucket's other folders are neither read nor hashed.

    Without the watcher, nothing is hashed at all (git's index check vouches for the folders);
    with it, only the folder the watcher names as changed is, never the rest of the bucket.
    """
    import secrets

    from gptme_factory.views import statuscache
    from gptme_factory.views.factcache import keep_warm
    from tests.ledger_helpers import reads

    with monkeypatch.context() as patch:
        patch.setattr(secrets, "token_hex", lambda n: "0000aa")
        aids = [new_artifact(ledger, title) for title in ("One", "Two", "Six")]
    root = ledger.repo.root
    load_summaries(Ledger.open(root))
    load_summaries(Ledger.open(root))  # the watcher's state kept by a warm pass
    writer = Ledger.open(root)
    keep_warm(writer)
    abandon(writer, aids[0], "dropped")
    hashed: list[str] = []
    real = statuscache.dir_tree_id

    def recording(folder: str, *args: Any) -> Any:
        hashed.append(Path(folder).name)
        return real(folder, *args)

    monkeypatch.setattr(statuscache, "dir_tree_id", recording)
    seen = reads(monkeypatch)
    got = {s.artifact: s for s in load_summaries(Ledger.open(root))}
    assert seen == [] and got[aids[0]].state == "abandoned" and got[aids[1]].state == "idea"
    assert set(hashed) <= {aids[0]}
    status(ledger)


@pytest.mark.parametrize("warm", [True, False], ids=["writer-keeps-warm", "writer-commits-only"])
@pytest.mark.parametrize("when", ["before-values", "after-values"])
def test_a_write_during_a_pass_is_seen_by_the_next(ledger: Ledger, settled: None, warm: bool,
                                                    when: str) -> None:
    """Another process commits while a status pass runs, before or after the pass read the cache.

    The pass says what it saw; the state it keeps must not vouch for what it did not see (a
    shard the writer rewrote, an artifact the writer changed after the watcher's clock), so
    the next `status` shows the write.
    """
    from gptme_factory.views import statuscache
    from gptme_factory.views.factcache import keep_warm

    root = ledger.repo.root
    aids = [new_artifact(ledger, f"Artifact {i}") for i in range(3)]
    load_summaries(Ledger.open(root))  # warm, and (with the watcher) its state kept
    writer = Ledger.open(root)
    if warm:
        keep_warm(writer)
    running = statuscache.Pass(Ledger.open(root), [SUMMARIES])
    if when == "before-values":
        abandon(writer, aids[1], "dropped")
        seen = {s.artifact: s.state for s in running.values(SUMMARIES)}
    else:
        seen = {s.artifact: s.state for s in running.values(SUMMARIES)}
        abandon(writer, aids[1], "dropped")
    running.close()
    assert seen[aids[0]] == "idea"
    if when == "after-values":
        assert seen[aids[1]] == "idea"  # what it saw when it looked
    for _ in range(2):  # the next pass, and the one after it keeps its state
        rows = status(ledger)
        assert rows[aids[1]]["state"] == "abandoned" and rows[aids[2]]["state"] == "idea"


def test_shards_of_an_older_format_or_of_gone_buckets_are_removed(ledger: Ledger) -> None:
    aid = new_artifact(ledger, "A")
    status(ledger)
    folder = ledger.runtime_dir / SUMMARIES.file
    mine = shard(ledger, SUMMARIES, aid)
    assert mine.parent == folder and mine.suffix == ".marshal"
    old = folder / f"{mine.stem}.json"  # what an earlier version wrote for the same bucket
    old.write_text("{}")
    gone = folder / "zz.marshal"  # a bucket with no artifact any more
    gone.write_bytes(marshal.dumps({}))
    writing = folder / f".{mine.name}.123.tmp"  # another process's write in progress
    writing.write_bytes(b"")
    status(ledger)
    assert sorted(p.name for p in folder.iterdir()) == sorted([mine.name, writing.name])
