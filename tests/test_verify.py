"""verify: every kind of damage is reported against the file it is in; exit 0 only when clean."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from gptme_factory.cli import main
from gptme_factory.ledger import yamlio
from gptme_factory.ledger.kinds import StoredEvent
from gptme_factory.ledger.layout import fanned
from gptme_factory.ledger.store import Ledger
from gptme_factory.ledger.stream import sha256
from gptme_factory.line.verify import Problem, verify, verify_ledger
from tests.conftest import git
from tests.ledger_helpers import abandon, append_next, new_artifact


@pytest.fixture
def three(ledger: Ledger) -> tuple[Ledger, str, list[StoredEvent]]:
    """An artifact with three legal events: started, finished (crashed), started again."""
    aid = new_artifact(ledger)
    events = [append_next(ledger, aid) for _ in range(3)]
    assert verify_ledger(ledger) == []
    return ledger, aid, events


def cli_verify(ledger: Ledger, *extra: str) -> Any:
    return CliRunner().invoke(main, ["verify", "--repo", str(ledger.repo.root), *extra])


def forge(ledger: Ledger, aid: str, seq: int, kind: str, data: dict[str, Any]) -> str:
    """Write an event file the way the ledger names it (correct hash), bypassing validation."""
    raw = yamlio.dumps(data)
    name = f"{seq:04d}-{kind}-{sha256(raw)[:12]}.yaml"
    (ledger.artifact_dir(aid) / name).write_bytes(raw)
    return f"factory/artifacts/{fanned(aid)}/{name}"


def header(ledger: Ledger, aid: str, kind: str) -> dict[str, Any]:
    chain = ledger.read(aid)
    return {"kind": kind, "schema_version": 1, "artifact": aid, "seq": len(chain.events) + 1,
            "parent": chain.tip, "at": "2026-01-02T03:04:05Z", "by": "tester"}


def only(problems: list[Problem], where: str) -> list[str]:
    return [p.message for p in problems if p.where == where]


def test_clean_ledger_exit_zero_and_json(three: tuple[Ledger, str, list[StoredEvent]]) -> None:
    ledger, _, _ = three
    new_artifact(ledger, "Another one")
    result = cli_verify(ledger, "--full")
    assert result.exit_code == 0, result.output
    assert result.output == "ledger ok: 2 artifact(s)\n"
    result = cli_verify(ledger, "--json")
    assert result.exit_code == 0
    assert json.loads(result.output) == {
        "ok": True, "artifacts": 2, "checked": 0, "since": ledger.repo.head(), "notes": [],
        "problems": []}


def test_edited_event_breaks_its_hash_and_its_childs_parent(
    three: tuple[Ledger, str, list[StoredEvent]],
) -> None:
    ledger, _, events = three
    middle = ledger.repo.root / events[1].path
    middle.write_bytes(middle.read_bytes().replace(b"wall_s: 1.0", b"wall_s: 99.0"))
    problems = verify_ledger(ledger)
    assert only(problems, events[1].path) == [
        "content does not match the hash in its name (edited after it was written)"
    ]
    assert len(only(problems, events[2].path)) == 1
    assert "is not in the chain" in only(problems, events[2].path)[0]
    result = cli_verify(ledger)
    assert result.exit_code == 9
    assert f"{events[1].path}: content does not match" in result.output
    assert "2 problem(s) in 1 artifact(s) (1 changed since the last clean verify" in result.output
    data = json.loads(cli_verify(ledger, "--json").output)
    assert data["ok"] is False and {p["where"] for p in data["problems"]} == {
        events[1].path, events[2].path}


def test_edited_and_renamed_event_still_breaks_the_parent_link(
    three: tuple[Ledger, str, list[StoredEvent]],
) -> None:
    ledger, _, events = three
    old = ledger.repo.root / events[0].path
    raw = old.read_bytes().replace(b"by: tester", b"by: mallory")
    old.unlink()
    (old.parent / f"0001-stage_started-{sha256(raw)[:12]}.yaml").write_bytes(raw)
    problems = verify_ledger(ledger)
    assert [p.where for p in problems] == [events[1].path, events[2].path, events[0].path]
    assert all("is not in the chain" in p.message for p in problems[:2])
    assert problems[2].message.startswith("deleted since it was committed")


def test_edited_intake_breaks_the_first_link(three: tuple[Ledger, str, list[StoredEvent]]) -> None:
    ledger, aid, events = three
    intake = ledger.artifact_dir(aid) / "intake.yaml"
    intake.write_bytes(intake.read_bytes().replace(b"- erik", b"- mallory"))
    problems = verify_ledger(ledger)
    assert problems and problems[0].where == events[0].path
    assert "missing parent, or an earlier record was edited" in problems[0].message


def test_missing_parent_after_deleting_a_middle_event(
    three: tuple[Ledger, str, list[StoredEvent]],
) -> None:
    ledger, _, events = three
    (ledger.repo.root / events[1].path).unlink()
    problems = verify_ledger(ledger)
    assert [p.where for p in problems] == [events[2].path, events[1].path]
    assert f"its parent {events[1].digest[:12]} is not in the chain" in problems[0].message
    assert problems[1].message.startswith("deleted since it was committed")


@pytest.mark.parametrize(
    ("kind", "change", "needle"),
    [
        ("teleported", {}, "unknown kind"),
        ("abandoned", {"reason": "x", "mood": "sad"}, "mood: unknown field"),
        ("abandoned", {}, "reason: required field is missing"),
        ("stage_started", {"stage": "scout", "role": "scout", "cell": "bad cell", "attempt": 0},
         "attempt: Input should be greater than or equal to 1"),
        ("abandoned", {"reason": "x", "parent": "not-a-hash"}, "parent: expected a 64-character"),
    ],
)
def test_schema_problems_name_the_file(
    ledger: Ledger, kind: str, change: dict[str, Any], needle: str
) -> None:
    aid = new_artifact(ledger)
    path = forge(ledger, aid, 1, kind, {**header(ledger, aid, kind), **change})
    problems = verify_ledger(ledger)
    assert any(needle in m for m in only(problems, path)), problems
    result = cli_verify(ledger)
    assert result.exit_code == 9 and path in result.output


def test_malformed_yaml_alias_and_bad_utf8_name_the_file(ledger: Ledger) -> None:
    aid = new_artifact(ledger)
    adir = ledger.artifact_dir(aid)
    bad = {
        "0001-abandoned-000000000001.yaml": (b"kind: [unclosed\n", "malformed YAML"),
        "0001-abandoned-000000000002.yaml": (b"a: &x 1\nb: *x\n", "anchors and aliases"),
        "0001-abandoned-000000000003.yaml": (b"reason: \xff\n", "not valid UTF-8"),
    }
    for name, (raw, _) in bad.items():
        (adir / name).write_bytes(raw)
    problems = verify_ledger(ledger)
    for name, (_, needle) in bad.items():
        messages = only(problems, f"factory/artifacts/{fanned(aid)}/{name}")
        assert messages and needle in messages[0]


def test_bad_intake_and_unexpected_files_and_dirs(ledger: Ledger) -> None:
    good, broken = new_artifact(ledger), new_artifact(ledger, "Broken one")
    (ledger.artifact_dir(broken) / "intake.yaml").write_bytes(b"kind: intake\ntitle: [\n")
    (ledger.artifact_dir(good) / "notes.txt").write_text("hi\n")
    (ledger.artifacts_dir / "README.md").write_text("hi\n")
    (ledger.artifacts_dir / "empty-dir-000000").mkdir()
    problems = verify_ledger(ledger)
    assert {p.where for p in problems} == {
        f"factory/artifacts/{fanned(broken)}/intake.yaml",
        f"factory/artifacts/{fanned(good)}/notes.txt",
        "factory/artifacts/README.md",
        "factory/artifacts/empty-dir-000000",
    }
    assert "malformed YAML" in only(problems, f"factory/artifacts/{fanned(broken)}/intake.yaml")[0]
    assert only(problems, "factory/artifacts/empty-dir-000000") == [
        "no intake.yaml: not an artifact (unexpected directory)"]


def test_renamed_kind_and_wrong_seq_are_reported(ledger: Ledger) -> None:
    aid = new_artifact(ledger)
    ev = abandon(ledger, aid, "stop")
    src = ledger.repo.root / ev.path
    renamed = src.with_name(src.name.replace("abandoned", "rejected"))
    src.rename(renamed)
    problems = verify_ledger(ledger)
    assert [str(p) for p in problems] == [
        f"factory/artifacts/{fanned(aid)}/{renamed.name}: file name says kind rejected, "
        "record says abandoned",
        f"{ev.path}: deleted since it was committed (records are append-only)"]
    renamed.unlink()
    git(ledger.repo.root, "rm", "-q", "--cached", ev.path)
    git(ledger.repo.root, "commit", "-q", "-m", "drop the last event")  # a revert-like removal
    path = forge(ledger, aid, 3, "abandoned", {**header(ledger, aid, "abandoned"),
                                               "seq": 3, "reason": "skip"})
    assert only(verify_ledger(ledger), path) == ["seq 3 does not follow its parent's seq 0"]


def test_broken_config_is_named(ledger: Ledger) -> None:
    (ledger.dir / "factory.yaml").write_text("kind: factory_config\nlines: 3\n")
    problems = verify_ledger(ledger)
    assert [p.where for p in problems] == ["factory/factory.yaml"]
    assert cli_verify(ledger).exit_code == 9


def test_verify_outside_a_factory(brain: Path) -> None:
    result = CliRunner().invoke(main, ["verify", "--repo", str(brain)])
    assert result.exit_code == 3
    assert "run `gptme-factory init`" in result.output


def test_copied_artifact_directory_is_reported(ledger: Ledger) -> None:
    aid = new_artifact(ledger)
    event = append_next(ledger, aid)
    shutil.copytree(ledger.artifact_dir(aid), ledger.artifact_dir("copy-000000"))
    problems = verify_ledger(ledger)
    assert [str(p) for p in problems] == [
        f"factory/artifacts/{fanned('copy-000000')}/intake.yaml: artifact is {aid!r}, "
        "but the directory is 'copy-000000'",
        f"factory/artifacts/{fanned('copy-000000')}/{Path(event.path).name}: artifact is {aid!r}, "
        "but the directory is 'copy-000000'",
    ]


def test_edits_only_git_can_see(ledger: Ledger) -> None:
    """An event-less intake, or the last event, edited: the chain is intact, git is not."""
    lone = new_artifact(ledger, "Lonely")
    intake = ledger.artifact_dir(lone) / "intake.yaml"
    intake.write_bytes(intake.read_bytes().replace(b"- erik", b"- mallory"))
    aid = new_artifact(ledger)
    last = abandon(ledger, aid, "dropped")
    (ledger.repo.root / last.path).unlink()  # deleting the tip leaves a valid shorter chain
    problems = verify_ledger(ledger)
    assert sorted(str(p) for p in problems) == sorted([
        f"{last.path}: deleted since it was committed (records are append-only)",
        f"factory/artifacts/{fanned(lone)}/intake.yaml: modified since it was committed "
        "(records are append-only)",
    ])
    root = ledger.repo.root
    git(root, "commit", "-q", "-am", "sneak the edit and the deletion in")
    sneaked = git(root, "rev-parse", "--short=12", "HEAD").strip()
    problems = verify_ledger(ledger)
    assert sorted(str(p) for p in problems) == sorted([
        f"{last.path}: deleted by commit {sneaked} after it was recorded (records are "
        f"append-only: `git show {sneaked}` shows it; `git revert` that commit to restore it)",
        f"factory/artifacts/{fanned(lone)}/intake.yaml: modified by a commit after it was "
        "recorded (records are append-only: `git log -p` shows who)"])
    git(root, "revert", "--no-edit", "HEAD")  # the tip comes back, the intake its bytes
    assert verify_ledger(ledger) == []


@pytest.mark.usefixtures("mode")
def test_incremental_verify_reports_a_committed_deletion_not_a_removed_stray(
        ledger: Ledger) -> None:
    aid = new_artifact(ledger)
    root = ledger.repo.root
    stray = ledger.artifact_dir(aid) / "notes.txt"
    stray.write_text("not a record\n")
    git(root, "add", str(stray))
    git(root, "commit", "-q", "-m", "a stray, committed")
    assert [p.message for p in verify(ledger, full=True).problems] == [
        "not a ledger record (unexpected file)"]
    git(root, "rm", "-q", str(stray))  # mending it is no deletion of a record
    git(root, "commit", "-q", "-m", "the stray goes")
    assert verify(ledger, full=True).problems == []
    last = abandon(ledger, aid, "dropped")
    assert verify(ledger).problems == []
    git(root, "rm", "-q", last.path)
    git(root, "commit", "-q", "-m", "forget it was dropped")
    gone = git(root, "rev-parse", "--short=12", "HEAD").strip()
    found = verify(ledger)
    assert found.since is not None  # incremental
    assert [(p.where, p.message.split(" after")[0]) for p in found.problems] == [
        (last.path, f"deleted by commit {gone}")]
    assert [p.where for p in verify(ledger, full=True).problems] == [last.path]
    git(root, "revert", "--no-edit", "HEAD")  # restored
    assert verify(ledger).problems == []
    kept = abandon(ledger, new_artifact(ledger, "Another"), "dropped")
    assert verify(ledger).problems == []
    added = git(root, "log", "-1", "--format=%H", "--", kept.path).strip()
    git(root, "revert", "--no-edit", added)  # a revert of the commit that added it: an undo
    assert not (root / kept.path).exists() and verify(ledger).problems == []
    assert verify(ledger, full=True).problems == []


# -- incremental verify: what changed since the last clean one ------------------------------
# Each runs twice: with the file watcher (watchman) and with the snapshot of directories.


@pytest.fixture(params=["watchman", "snapshot"])
def mode(request: pytest.FixtureRequest) -> str:
    """How an incremental verify finds what changed on disk (conftest turns watchman off)."""
    if request.param == "watchman":
        request.getfixturevalue("watching")
    return str(request.param)


@pytest.mark.usefixtures("mode")
def test_incremental_verify_reads_only_what_changed(ledger: Ledger,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.ledger_helpers import reads

    aids = [new_artifact(ledger, f"Artifact {i}") for i in range(4)]
    assert verify(ledger, full=True).problems == []
    seen = reads(monkeypatch)
    found = verify(ledger)
    assert (found.problems, found.checked, found.artifacts, seen) == ([], 0, 4, [])
    assert found.since == ledger.repo.head()
    append_next(ledger, aids[2])
    seen.clear()
    found = verify(ledger)
    assert (found.problems, found.checked, seen) == ([], 1, [aids[2]])
    seen.clear()
    assert verify(ledger).checked == 0 and seen == []  # clean again, remembered at the new HEAD


@pytest.mark.usefixtures("mode")
def test_incremental_verify_notices_a_damaged_new_event(
        three: tuple[Ledger, str, list[StoredEvent]]) -> None:
    ledger, aid, _ = three
    other = new_artifact(ledger, "Other")
    assert verify(ledger).problems == []
    new = append_next(ledger, other)
    path = ledger.repo.root / new.path
    path.write_bytes(path.read_bytes().replace(b"by: tester", b"by: mallor"))
    found = verify(ledger)
    assert found.checked == 1
    damaged = (f"{new.path}: content does not match the hash in its name (edited after it was "
               "written)")
    assert [str(p) for p in found.problems] == [damaged]
    # committed damaged: git sees no working-tree change, the chain check still does
    git(ledger.repo.root, "commit", "-q", "-am", "sneak it in")
    assert [str(p) for p in verify(ledger).problems] == [damaged]
    # and a stray file that is not even tracked
    git(ledger.repo.root, "revert", "--no-edit", "HEAD")
    assert verify(ledger).problems == []
    (ledger.artifact_dir(aid) / "notes.txt").write_text("hi\n")
    assert [str(p) for p in verify(ledger).problems] == [
        f"{ledger.artifact_rel(aid)}/notes.txt: not a ledger record (unexpected file)"]


@pytest.mark.usefixtures("mode")
def test_incremental_verify_notices_a_rewritten_history(
        three: tuple[Ledger, str, list[StoredEvent]]) -> None:
    ledger, aid, events = three
    assert verify(ledger).problems == []
    clean = ledger.repo.head()
    # rewrite the last commit so that it also edits an older record: not a descendant of
    # the clean commit any more, and a diff against it would not show the edit as new
    intake = ledger.artifact_dir(aid) / "intake.yaml"
    intake.write_bytes(intake.read_bytes().replace(b"- erik", b"- mallory"))
    git(ledger.repo.root, "commit", "-q", "--amend", "-a", "--no-edit")
    found = verify(ledger)
    assert found.since is None and found.checked == 1  # everything was checked
    assert any("no longer in HEAD's history" in n and clean is not None and clean[:12] in n
               for n in found.notes)
    assert any(p.where == events[0].path and "not in the chain" in p.message
               for p in found.problems)


@pytest.mark.usefixtures("mode")
def test_a_config_change_makes_the_next_verify_full(ledger: Ledger) -> None:
    new_artifact(ledger)
    assert verify(ledger).problems == []
    cfg = ledger.dir / "factory.yaml"
    cfg.write_text(cfg.read_text().replace("idea to measured outcome", "a new description"))
    git(ledger.repo.root, "commit", "-q", "-am", "describe the line")
    found = verify(ledger)
    assert found.since is None and found.problems == []
    assert any("config or the factory's code changed" in n for n in found.notes)
    assert verify(ledger).since == ledger.repo.head()


@pytest.mark.usefixtures("mode")
def test_incremental_verify_reads_an_untracked_record_in_an_old_folder(
        ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.ledger_helpers import reads

    old, other = new_artifact(ledger, "Old"), new_artifact(ledger, "Other")
    assert verify(ledger, full=True).problems == []
    # a record nobody committed, in a folder nothing else changed: git's stat check does not
    # look at it, the folder's entries did change
    path = forge(ledger, old, 2, "stage_started", {**header(ledger, old, "stage_started"),
                                                   "stage": "nope"})
    seen = reads(monkeypatch)
    found = verify(ledger)
    assert found.checked == 1 and set(seen) == {old} and other not in seen
    assert found.problems and {p.where for p in found.problems} == {path}


@pytest.mark.usefixtures("mode")
def test_incremental_verify_sees_an_untracked_record_edited_in_place(ledger: Ledger) -> None:
    aid = new_artifact(ledger)
    assert verify(ledger, full=True).problems == []
    new = append_next(ledger, aid)
    # the record stays on disk, untracked: the ledger's history no longer has it
    git(ledger.repo.root, "rm", "-q", "--cached", new.path)
    git(ledger.repo.root, "commit", "-q", "-m", "untrack it")
    assert verify(ledger).problems == []
    assert verify(ledger).checked == 0  # nothing moved since
    record = ledger.repo.root / new.path
    folder_stat = record.parent.stat()
    with open(record, "r+b") as fh:  # in place: the folder's entries and mtime stay as they were
        fh.seek(0, 2)
        fh.write(b"# appended\n")
    assert record.parent.stat().st_mtime_ns == folder_stat.st_mtime_ns
    found = verify(ledger)
    assert found.checked == 1
    assert [p.where for p in found.problems] == [new.path]
    assert "does not match the hash in its name" in found.problems[0].message


@pytest.mark.usefixtures("mode")
def test_incremental_verify_lists_only_changed_shelves_and_counts_every_artifact(
        ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a watcher: a shelf whose directory did not change keeps the count it had."""
    from tests.ledger_helpers import listings

    aids = [new_artifact(ledger, f"Artifact {i}") for i in range(5)]
    assert verify(ledger, full=True).problems == []
    asked = listings(monkeypatch)
    assert verify(ledger).artifacts == 5
    assert asked == [[]]  # nothing changed: no shelf listed (the top's entries only)
    late = new_artifact(ledger, "Late")
    asked.clear()
    found = verify(ledger)
    assert (found.problems, found.checked, found.artifacts) == ([], 1, 6)
    shelf = f"{late[-2:]}/{late[-3]}"
    assert len(asked) == 1 and shelf in asked[0] and len(asked[0]) <= 2  # (+ its bucket)
    added = git(ledger.repo.root, "log", "--format=%H", "--", ledger.artifact_rel(aids[0]))
    git(ledger.repo.root, "revert", "--no-edit", added.strip())  # undo its intake: one less
    found = verify(ledger)
    assert (found.problems, found.since is not None, found.artifacts) == ([], True, 5)
    assert verify(ledger).artifacts == 5 and verify(ledger, full=True).artifacts == 5


def test_incremental_verify_reports_a_new_folder_without_an_intake(ledger: Ledger) -> None:
    aid = new_artifact(ledger)
    assert verify(ledger, full=True).problems == []
    shelf_dir = ledger.artifact_dir(aid).parent
    stray = shelf_dir / f"ghost-{aid[-3:]}"
    stray.mkdir()
    (stray / "notes.txt").write_text("no intake here\n")
    found = verify(ledger)
    assert found.since is not None  # incremental
    assert any(p.where == f"factory/artifacts/{aid[-2:]}/{aid[-3]}/ghost-{aid[-3:]}"
               and "no intake.yaml" in p.message for p in found.problems), found.problems


def test_a_damaged_verify_state_means_a_full_check(ledger: Ledger) -> None:
    new_artifact(ledger)
    assert verify(ledger).problems == []
    state = ledger.runtime_dir / "verify-state.json"
    data = json.loads(state.read_text())
    data["marks"]["dirs"] = {k: 7 for k in data["marks"]["dirs"]}
    state.write_text(json.dumps(data))
    found = verify(ledger)
    assert found.since is None and found.problems == [] and found.checked == 1
    assert found.notes == ["what the last clean verify saw (factory/.runtime/verify-state.json) "
                           "is damaged: checked everything"]
    assert verify(ledger).since == ledger.repo.head()  # remembered again, whole


# -- with the file watcher: what it changes, and when it cannot be trusted ------------------


def watched(ledger: Ledger) -> bool:
    """True if the last clean verify was kept by the watcher's clock alone (a watched run)."""
    data = json.loads((ledger.runtime_dir / "verify-state.json").read_text())
    return data["watch"] is not None and data["marks"] is None


@pytest.mark.usefixtures("watching")
def test_a_watched_verify_sees_what_only_git_can_see(ledger: Ledger) -> None:
    lone, aid, staged = (new_artifact(ledger, t) for t in ("Lonely", "Dropped", "Staged"))
    last = abandon(ledger, aid, "dropped")
    assert verify(ledger, full=True).problems == []
    assert verify(ledger).problems == [] and watched(ledger)
    intake = ledger.artifact_dir(lone) / "intake.yaml"
    intake.write_bytes(intake.read_bytes().replace(b"- erik", b"- mallory"))  # in place
    (ledger.repo.root / last.path).unlink()  # the tip: the chain left is a valid one
    staged_intake = f"{ledger.artifact_rel(staged)}/intake.yaml"
    git(ledger.repo.root, "rm", "-q", "--cached", staged_intake)  # the index only, not the disk
    found = verify(ledger)
    assert found.since is not None and found.checked == 2 and found.artifacts == 3
    assert sorted(str(p) for p in found.problems) == sorted([
        f"{last.path}: deleted since it was committed (records are append-only)",
        f"{ledger.artifact_rel(lone)}/intake.yaml: modified since it was committed "
        "(records are append-only)",
        f"{staged_intake}: deleted since it was committed (records are append-only)",
    ])


@pytest.mark.usefixtures("watching")
def test_a_watched_verify_counts_every_artifact(ledger: Ledger) -> None:
    aids = [new_artifact(ledger, f"Artifact {i}") for i in range(5)]
    assert verify(ledger, full=True).problems == []
    assert verify(ledger).artifacts == 5 and watched(ledger)
    new_artifact(ledger, "Late")
    found = verify(ledger)
    assert (found.problems, found.checked, found.artifacts) == ([], 1, 6)
    added = git(ledger.repo.root, "log", "--format=%H", "--", ledger.artifact_rel(aids[0]))
    git(ledger.repo.root, "revert", "--no-edit", added.strip())  # undo its intake: one less
    found = verify(ledger)
    assert (found.problems, found.since is not None, found.artifacts) == ([], True, 5)
    assert verify(ledger, full=True).artifacts == 5


@pytest.mark.usefixtures("watching")
def test_a_watcher_that_lost_track_means_a_full_check(ledger: Ledger,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    new_artifact(ledger)
    assert verify(ledger, full=True).problems == []
    assert verify(ledger).problems == [] and watched(ledger)
    subprocess.run(["watchman", "watch-del", str(ledger.repo.root)], check=True,
                   capture_output=True)
    found = verify(ledger)
    assert (found.since, found.checked, found.problems) == (None, 1, [])
    assert found.notes == ["the file watcher (watchman) cannot say what changed since the last "
                           "clean verify (it restarted or lost track): checked everything"]
    assert verify(ledger).since == ledger.repo.head() and watched(ledger)  # watched again
    monkeypatch.setenv("GPTME_FACTORY_WATCHMAN", "0")  # the watcher is gone now
    found = verify(ledger)
    assert (found.since, found.checked, found.problems) == (None, 1, [])
    assert found.notes == ["the last clean verify relied on the file watcher (watchman), which "
                           "is not available now: checked everything"]
    assert verify(ledger).since == ledger.repo.head() and not watched(ledger)


def test_what_a_changed_path_touches_follows_its_shape() -> None:
    from gptme_factory.line.verify import _touched

    arts, lines = "factory/artifacts", "factory/lines"
    ids, reread, places = _touched([arts, lines], [
        f"{arts}/2a/f/fix-8c1f2a/intake.yaml", f"{arts}/2a/f/fix-8c1f2a/briefs/b.md",
        f"{arts}/4d/old-shallow-4d/0001-x.yaml",  # a folder from before the shelves
        f"{arts}/old-flat-77/0001-x.yaml",  # a flat folder from before the fan-out
        f"{arts}/9b",  # a bucket whose entries changed
        f"{arts}/9b/ghost-cd/notes.txt",  # a folder in the wrong bucket: a stray in 9b
        f"{arts}/3c/e",  # a shelf whose entries changed
        f"{arts}/3c/e/ghost-d3c/notes.txt",  # a folder in the wrong shelf: a stray in 3c/e
        f"{arts}/0f/f/intake.yaml",  # a 1-char id's shallow folder, or a stray in shelf f
        f"{lines}/default/0001-line_parked-abc.yaml", "factory/factory.yaml", "README.md",
    ])
    assert ids == {"fix-8c1f2a", "old-shallow-4d", "old-flat-77", "9b", "f"}
    assert reread == {"2a/f", "4d", "77", "9b", "3c/e", "0f", "0f/f"}  # shelves, or buckets
    assert places == {f"{arts}/2a/f/fix-8c1f2a", f"{arts}/4d/old-shallow-4d",
                      f"{arts}/old-flat-77", f"{arts}/9b", f"{arts}/3c/e/ghost-d3c",
                      f"{arts}/0f/f", f"{arts}/0f/f/intake.yaml", f"{lines}/default"}


@pytest.mark.usefixtures("watching")
def test_a_watcher_that_lost_track_after_a_full_check_goes_by_the_snapshot(
        ledger: Ledger) -> None:
    import subprocess

    aids = [new_artifact(ledger, f"Artifact {i}") for i in range(3)]
    assert verify(ledger, full=True).problems == []  # keeps the snapshot and the clock
    subprocess.run(["watchman", "watch-del", str(ledger.repo.root)], check=True,
                   capture_output=True)
    append_next(ledger, aids[1])
    found = verify(ledger)
    assert (found.since is not None, found.checked, found.problems) == (True, 1, [])
    assert found.notes == ["the file watcher (watchman) cannot say what changed since the last "
                           "clean verify (it restarted or lost track): looked at every file "
                           "instead"]
    assert not watched(ledger)  # the snapshot and a new clock: the next run is watched
    assert verify(ledger).notes == [] and watched(ledger)
