"""Artifact folders in shelves, the older flat and shallow ones, `migrate`, and what a commit writes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from gptme_factory.cli import main
from gptme_factory.errors import UsageError
from gptme_factory.ledger import layout
from gptme_factory.ledger.migrate import migrate
from gptme_factory.ledger.store import Ledger
from gptme_factory.line.verify import verify_ledger
from gptme_factory.plugin.doctor import check_ledger
from gptme_factory.views.status import load_summaries
from tests.conftest import git
from tests.ledger_helpers import abandon, append_next, new_artifact


def relayout(ledger: Ledger, where: str) -> None:
    """Make the ledger look like an older one: `flat` factory/artifacts/<id>/ (before the
    fan-out) or `shallow` factory/artifacts/<bucket>/<id>/ (before the shelves)."""
    root = ledger.repo.root
    for aid in ledger.artifact_ids():
        target = aid if where == "flat" else layout.shallow(aid)
        (ledger.artifacts_dir / target).parent.mkdir(parents=True, exist_ok=True)
        git(root, "mv", ledger.artifact_rel(aid), f"{ledger.rel}/artifacts/{target}")
    git(root, "commit", "-q", "-m", f"an old ledger: {where} folders")
    assert getattr(ledger.artifact_listing(), where) == ledger.artifact_ids()


def flatten(ledger: Ledger) -> None:
    relayout(ledger, "flat")


def tree_of(root: Path, rev: str) -> dict[str, str]:
    """path -> blob id of every file under factory/ at `rev`."""
    out = git(root, "ls-tree", "-r", rev, "--", "factory")
    return {line.split("\t")[1]: line.split()[2] for line in out.splitlines()}


def new_objects(root: Path) -> dict[str, tuple[str, int]]:
    """Objects the last commit added: id -> (type, size)."""
    ids = [line.split()[0] for line in
           git(root, "rev-list", "--objects", "HEAD", "^HEAD~1").splitlines()]
    checked = subprocess.run(["git", "cat-file", "--batch-check"], cwd=root, check=True,
                             input="".join(f"{oid}\n" for oid in ids), capture_output=True,
                             text=True).stdout.split()
    return {oid: (kind, int(size)) for oid, kind, size in zip(
        checked[0::3], checked[1::3], checked[2::3], strict=True)}


def test_new_artifacts_are_fanned_out_by_the_end_of_their_id(ledger: Ledger) -> None:
    aid = new_artifact(ledger)
    assert layout.bucket(aid) == aid[-2:] and layout.bucket("x") == "0x"
    assert layout.shelf(aid) == aid[-3] and layout.shelf("x") == layout.shelf("ab") == "0"
    assert layout.fanned("fix-8c1f2a") == "2a/f/fix-8c1f2a"
    assert ledger.artifact_rel(aid) == f"factory/artifacts/{aid[-2:]}/{aid[-3]}/{aid}"
    assert (ledger.repo.root / ledger.artifact_rel(aid) / "intake.yaml").is_file()
    listing = ledger.artifact_listing()
    assert listing.folders == {aid: f"{aid[-2:]}/{aid[-3]}/{aid}"}
    assert listing.flat == listing.shallow == listing.both == [] and listing.older == {}
    assert listing.owner(f"{aid[-2:]}/{aid[-3]}/{aid}/briefs/x.md") == aid
    assert listing.owner(f"{aid[-2:]}/{aid[-3]}/other-{aid}") is None
    assert ledger.resolve(aid[:8]) == aid


def test_a_one_character_id_and_its_shelf_are_told_apart(ledger: Ledger) -> None:
    base = ledger.artifacts_dir
    for rel in ("0f/f", "0f/f/abc-f0f", "0f/0/f"):  # a shallow 1-char id beside shelves
        (base / rel).mkdir(parents=True, exist_ok=True)
    (base / "0f/f/intake.yaml").write_text("x\n")
    (base / "0f/0/f/intake.yaml").write_text("x\n")
    (base / "0f/e").mkdir()  # a shelf holding a folder of another shelf's id: a stray
    (base / "0f/e/abc-f0f").mkdir()
    listing = layout.scan(base)
    assert listing.folders == {"f": "0f/0/f"} and listing.both == ["f"]
    assert listing.older == {"f": ["0f/f"]}
    assert ("0f/e/abc-f0f", "directory in the wrong shelf (its id belongs in 0f/f/)") in \
        listing.strays


def test_a_commit_writes_only_the_small_trees_on_its_path(ledger: Ledger) -> None:
    aids = [new_artifact(ledger, f"Artifact {i}") for i in range(12)]
    root = ledger.repo.root
    append_next(ledger, aids[5])
    made = new_objects(root)
    trees = sorted(size for kind, size in made.values() if kind == "tree")
    # the root, factory/, factory/artifacts/ (one entry per bucket), the bucket (one per
    # shelf), the shelf, the folder
    assert len(trees) == 6 and sum(k == "blob" for k, _ in made.values()) == 1
    buckets = {layout.bucket(a) for a in aids}
    top = git(root, "ls-tree", "HEAD:factory/artifacts").splitlines()
    assert sorted(line.split("\t")[1] for line in top) == sorted(buckets)
    b, s = layout.bucket(aids[5]), layout.shelf(aids[5])
    mine = git(root, "ls-tree", f"HEAD:factory/artifacts/{b}")
    assert {line.split("\t")[1] for line in mine.splitlines()} == {
        layout.shelf(a) for a in aids if layout.bucket(a) == b}
    shelf = git(root, "ls-tree", f"HEAD:factory/artifacts/{b}/{s}")
    assert {line.split("\t")[1] for line in shelf.splitlines()} == {
        a for a in aids if layout.fanned(a).startswith(f"{b}/{s}/")}
    # the same event in the old flat layout rewrites a tree of every artifact
    flatten(ledger)
    append_next(ledger, aids[5])
    flat_trees = [size for kind, size in new_objects(root).values() if kind == "tree"]
    assert len(flat_trees) == 4
    listed = git(root, "ls-tree", "HEAD:factory/artifacts").splitlines()
    assert len(listed) == len(aids)  # every artifact, in the one tree each commit rewrites


def test_a_commit_in_a_shelf_writes_a_bucket_of_shelves_not_of_ids(ledger: Ledger) -> None:
    # 40 ids in one bucket, as 10,000 artifacts put there: a shallow bucket lists all 40, a
    # bucket of shelves at most 16 (the entries of a tree are what a commit writes again)
    aids = [new_artifact(ledger, f"Same bucket {i}") for i in range(3)]
    b = layout.bucket(aids[0])
    root = ledger.repo.root
    base = ledger.artifacts_dir
    for i in range(40):
        sid = f"filler-{i:03d}{'0123456789abcdef'[i % 16]}{b}"
        folder = base / layout.fanned(sid)
        folder.mkdir(parents=True)
        (folder / "keep.txt").write_text(f"{i}\n")
    git(root, "add", "-A", "factory")
    git(root, "commit", "-q", "-m", "fillers")

    def bucket_tree_entries() -> int:
        append_next(ledger, aids[0])
        trees = {oid for oid, (kind, _) in new_objects(root).items() if kind == "tree"}
        assert git(root, "rev-parse", f"HEAD:factory/artifacts/{b}").strip() in trees
        return len(git(root, "ls-tree", f"HEAD:factory/artifacts/{b}").splitlines())

    assert 0 < bucket_tree_entries() <= 16
    relayout(ledger, "shallow")  # the fillers have no intake: they stay where they are
    assert bucket_tree_entries() >= 3 + 16  # the ids of the bucket, beside its shelves


def test_an_old_flat_ledger_keeps_working(ledger: Ledger) -> None:
    old = new_artifact(ledger, "Old one")
    append_next(ledger, old)
    flatten(ledger)
    ledger = Ledger.open(ledger.repo.root)
    assert ledger.artifact_rel(old) == f"factory/artifacts/{old}"
    event = append_next(ledger, old)  # its chain goes on where it is
    assert event.path.startswith(f"factory/artifacts/{old}/")
    fresh = new_artifact(ledger, "New one")  # a new one is fanned out
    assert ledger.artifact_rel(fresh) == f"factory/artifacts/{layout.fanned(fresh)}"
    assert verify_ledger(ledger) == []
    rows = {s.artifact: s for s in load_summaries(ledger)}
    assert rows[old].events == 2 and rows[fresh].events == 0
    assert [e.trailers["Factory-Event"] for e in ledger.history([old])] == [
        ["intake"], ["stage_started"], ["cell_finished"]]
    check = check_ledger(str(ledger.repo.root))
    assert not check.ok and "older layout (flat;" in check.detail and "migrate" in check.fix


def test_a_shallow_ledger_keeps_working(ledger: Ledger) -> None:
    old = new_artifact(ledger, "Old one")
    relayout(ledger, "shallow")
    ledger = Ledger.open(ledger.repo.root)
    assert ledger.artifact_rel(old) == f"factory/artifacts/{layout.shallow(old)}"
    event = append_next(ledger, old)
    assert event.path.startswith(f"factory/artifacts/{layout.shallow(old)}/")
    fresh = new_artifact(ledger, "New one")
    assert ledger.artifact_rel(fresh) == f"factory/artifacts/{layout.fanned(fresh)}"
    assert verify_ledger(ledger) == []
    rows = {s.artifact: s for s in load_summaries(ledger)}
    assert rows[old].events == 1 and rows[fresh].events == 0
    check = check_ledger(str(ledger.repo.root))
    assert not check.ok and "older layout (shallow;" in check.detail


def test_migrate_moves_every_folder_in_one_commit_and_changes_no_file(ledger: Ledger) -> None:
    aids = [new_artifact(ledger, f"Artifact {i}") for i in range(3)]
    append_next(ledger, aids[0])
    abandon(ledger, aids[1], "dropped")
    flatten(ledger)
    root = ledger.repo.root
    layout_dir = ledger.artifacts_dir / layout.bucket(aids[2])
    layout_dir.mkdir(exist_ok=True)  # one folder from the layout between: in a bucket
    git(root, "mv", f"factory/artifacts/{aids[2]}", f"factory/artifacts/{layout.shallow(aids[2])}")
    git(root, "commit", "-q", "-m", "an older layout still")
    assert ledger.artifact_listing().shallow == [aids[2]]
    before = tree_of(root, "HEAD")
    history = {a: [e.commit for e in ledger.history([a])] for a in aids}
    summaries = [s.to_json() for s in load_summaries(Ledger.open(root), use_cache=False)]
    (root / "notes.md").write_text("the user's own work\n")
    git(root, "add", "notes.md")
    result = CliRunner().invoke(main, ["migrate", "--repo", str(root)])
    assert result.exit_code == 0, result.output
    assert "moved 3 folder(s) in commit" in result.output
    ledger = Ledger.open(root)
    assert ledger.artifact_listing().older == {}
    after = tree_of(root, "HEAD")
    moved = {}
    for p, oid in before.items():
        rel = p.removeprefix("factory/artifacts/")
        folder = layout.folder_of(rel) if rel != p else None
        if folder:
            moved[f"factory/artifacts/{layout.fanned(folder.rpartition('/')[2])}"
                  f"{rel[len(folder):]}"] = oid
    assert len(moved) == 5  # three intakes, two events
    assert {p: o for p, o in after.items() if p.startswith("factory/artifacts/")} == moved
    for aid in aids:  # each folder keeps its tree id: git sees a pure move
        old = aid if aid != aids[2] else layout.shallow(aid)
        assert git(root, "rev-parse", f"HEAD~1:factory/artifacts/{old}") == \
            git(root, "rev-parse", f"HEAD:factory/artifacts/{layout.fanned(aid)}")
    assert not (ledger.artifacts_dir / aids[2]).exists()
    assert git(root, "diff", "--cached", "--name-only") == "notes.md\n"  # still staged
    assert git(root, "status", "--porcelain", "--", "factory") == ""
    assert verify_ledger(ledger) == []
    assert [s.to_json() for s in load_summaries(ledger)] == summaries
    assert {a: [e.commit for e in ledger.history([a])] for a in aids} == history
    again = CliRunner().invoke(main, ["migrate", "--repo", str(root)])
    assert again.exit_code == 0 and "nothing to move" in again.output


def test_migrate_joins_an_id_with_both_layouts_and_refuses_uncommitted_work(
        ledger: Ledger) -> None:
    aid = new_artifact(ledger)
    root = ledger.repo.root
    flatten(ledger)
    # an old clone appended in the flat folder while this one had moved it: both exist
    git(root, "checkout", "-q", "-b", "moved")
    assert migrate(Ledger.open(root)).commit
    git(root, "checkout", "-q", "master")
    append_next(Ledger.open(root), aid)
    git(root, "-c", "merge.directoryRenames=false", "merge", "-q", "--no-edit", "moved")
    both = Ledger.open(root)
    assert both.artifact_listing().both == [aid]
    assert any("run `gptme-factory migrate`" in p.message for p in verify_ledger(both))
    (both.artifacts_dir / aid / "scratch.txt").write_text("uncommitted\n")
    with pytest.raises(UsageError, match="uncommitted"):
        migrate(both)
    (both.artifacts_dir / aid / "scratch.txt").unlink()
    done = migrate(both)
    assert list(done.moves) == [aid]
    joined = Ledger.open(root)
    assert joined.artifact_listing().both == []
    assert [e.kind for e in joined.read(aid).events] == ["stage_started"]
    assert verify_ledger(joined) == []
    assert git(root, "status", "--porcelain") == ""


def test_a_paths_folder_is_known_by_its_shape_in_every_layout(ledger: Ledger) -> None:
    from gptme_factory.ledger.sync import stream_folder

    assert layout.folder_of("2a/f/fix-login-8c1f2a/0001-x.yaml") == "2a/f/fix-login-8c1f2a"
    assert layout.folder_of("2a/f/fix-login-8c1f2a/briefs/c.md") == "2a/f/fix-login-8c1f2a"
    assert layout.folder_of("0f/0/f/intake.yaml") == "0f/0/f"
    assert layout.folder_of("0f/f/intake.yaml") == "0f/f"  # a shallow 1-char id
    assert layout.folder_of("2a/e/fix-login-8c1f2a/x.yaml") == "2a"  # a stray, as in a bucket
    assert layout.folder_of("2a/fix-login-8c1f2a/0001-x.yaml") == "2a/fix-login-8c1f2a"
    assert layout.folder_of("2a/fix-login-8c1f2a/briefs/c.md") == "2a/fix-login-8c1f2a"
    assert layout.folder_of("fix-login-8c1f2a/intake.yaml") == "fix-login-8c1f2a"  # flat
    assert layout.folder_of("fix-login-8c1f2a/briefs/c.md") == "fix-login-8c1f2a"
    assert layout.folder_of("README.md") is None
    assert stream_folder(ledger, "factory/artifacts/2a/f/fix-login-8c1f2a/intake.yaml") == \
        "factory/artifacts/2a/f/fix-login-8c1f2a"
    assert stream_folder(ledger, "factory/artifacts/2a/fix-login-8c1f2a/intake.yaml") == \
        "factory/artifacts/2a/fix-login-8c1f2a"
    assert stream_folder(ledger, "factory/artifacts/fix-login-8c1f2a/intake.yaml") == \
        "factory/artifacts/fix-login-8c1f2a"
    assert stream_folder(ledger, "factory/lines/default/0001-x.yaml") == "factory/lines/default"
    assert stream_folder(ledger, "factory/factory.yaml") is None


def test_a_scan_of_some_places_reads_those_shelves_or_buckets_only(ledger: Ledger) -> None:
    base = ledger.artifacts_dir
    for sid in ("one-0e2a", "two-0f2a", "three-0f2a", "four-0e3b", "flat-0e4c"):
        folder = base / (sid if sid.startswith("flat") else layout.fanned(sid))
        folder.mkdir(parents=True)
        (folder / "intake.yaml").write_text("x\n")
    (base / "2a/e/stray.txt").write_text("x\n")
    assert list(layout.scan(base).folders) == [
        "flat-0e4c", "four-0e3b", "one-0e2a", "three-0f2a", "two-0f2a"]
    shelf = layout.scan(base, only={"2a/f"})  # one shelf: its folders, and the top's
    assert shelf.folders == {"flat-0e4c": "flat-0e4c", "three-0f2a": "2a/f/three-0f2a",
                             "two-0f2a": "2a/f/two-0f2a"} and shelf.strays == []
    whole = layout.scan(base, only={"2a"})  # a bucket: all of it, its strays too
    assert set(whole.folders) == {"flat-0e4c", "one-0e2a", "three-0f2a", "two-0f2a"}
    assert whole.strays == [("2a/e/stray.txt", "file")]
    assert layout.scan(base, only={"2a/e", "3b/9"}).folders == {
        "flat-0e4c": "flat-0e4c", "one-0e2a": "2a/e/one-0e2a"}  # (3b/9 holds nothing)
    assert layout.place_of("2a/f/two-0f2a") == "2a/f" and layout.place_of("2a/x-2a") == "2a"
    assert layout.place_of("flat-0e4c") == ""


def test_a_listing_merged_with_the_places_that_changed_is_a_full_scan(ledger: Ledger) -> None:
    base = ledger.artifacts_dir

    def make(rel: str) -> None:
        (base / rel).mkdir(parents=True)
        (base / rel / "intake.yaml").write_text("x\n")

    for rel in ("2a/e/one-0e2a", "2a/f/two-0f2a", "3b/e/four-0e3b", "flat-0e4c", "5d/old-5d"):
        make(rel)
    before = layout.Listing.from_json(layout.scan(base).to_json())  # as a state keeps it
    assert before == layout.scan(base)
    # a folder joins one shelf, one leaves another, a shallow one joins, a stray appears
    make("2a/f/six-0f2a")
    for p in (base / "3b/e/four-0e3b").iterdir():
        p.unlink()
    (base / "3b/e/four-0e3b").rmdir()
    make("5d/new-5d")
    (base / "2a/e/stray.txt").write_text("x\n")
    only = {"2a/f", "3b/e", "5d", "2a/e"}
    merged = before.merged(layout.scan(base, only), only)
    assert merged == layout.scan(base)
    assert list(merged.folders) == ["flat-0e4c", "new-5d", "old-5d", "one-0e2a",
                                    "six-0f2a", "two-0f2a"]
    assert merged.shallow == ["new-5d", "old-5d"] and merged.strays == [("2a/e/stray.txt", "file")]
    # a place not named is taken from the old listing, unread
    make("3b/e/seven-0e3b")
    assert "seven-0e3b" not in before.merged(layout.scan(base, {"2a/f"}), {"2a/f"}).folders
