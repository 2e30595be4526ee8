"""Fanned-out artifact folders, the old flat ones, `migrate`, and what one commit writes."""

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


def flatten(ledger: Ledger) -> None:
    """Make the ledger look like one written before the fan-out: factory/artifacts/<id>/."""
    root = ledger.repo.root
    for aid in ledger.artifact_ids():
        git(root, "mv", ledger.artifact_rel(aid), f"{ledger.rel}/artifacts/{aid}")
    git(root, "commit", "-q", "-m", "an old ledger: flat folders")
    assert ledger.artifact_listing().flat == ledger.artifact_ids()


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
    assert ledger.artifact_rel(aid) == f"factory/artifacts/{aid[-2:]}/{aid}"
    assert (ledger.repo.root / ledger.artifact_rel(aid) / "intake.yaml").is_file()
    listing = ledger.artifact_listing()
    assert listing.folders == {aid: f"{aid[-2:]}/{aid}"} and listing.flat == []
    assert listing.owner(f"{aid[-2:]}/{aid}/briefs/x.md") == aid
    assert ledger.resolve(aid[:8]) == aid


def test_a_commit_writes_only_the_small_trees_on_its_path(ledger: Ledger) -> None:
    aids = [new_artifact(ledger, f"Artifact {i}") for i in range(12)]
    root = ledger.repo.root
    append_next(ledger, aids[5])
    made = new_objects(root)
    trees = sorted(size for kind, size in made.values() if kind == "tree")
    # the root, factory/, factory/artifacts/ (one entry per bucket), the bucket, the folder
    assert len(trees) == 5 and sum(k == "blob" for k, _ in made.values()) == 1
    buckets = {layout.bucket(a) for a in aids}
    top = git(root, "ls-tree", "HEAD:factory/artifacts").splitlines()
    assert sorted(line.split("\t")[1] for line in top) == sorted(buckets)
    mine = git(root, "ls-tree", f"HEAD:factory/artifacts/{layout.bucket(aids[5])}")
    assert {line.split("\t")[1] for line in mine.splitlines()} == {
        a for a in aids if layout.bucket(a) == layout.bucket(aids[5])}
    # the same event in the old flat layout rewrites a tree of every artifact
    flatten(ledger)
    append_next(ledger, aids[5])
    flat_trees = [size for kind, size in new_objects(root).values() if kind == "tree"]
    assert len(flat_trees) == 4
    listed = git(root, "ls-tree", "HEAD:factory/artifacts").splitlines()
    assert len(listed) == len(aids)  # every artifact, in the one tree each commit rewrites


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
    assert not check.ok and "flat layout" in check.detail and "migrate" in check.fix


def test_migrate_moves_every_folder_in_one_commit_and_changes_no_file(ledger: Ledger) -> None:
    aids = [new_artifact(ledger, f"Artifact {i}") for i in range(3)]
    append_next(ledger, aids[0])
    abandon(ledger, aids[1], "dropped")
    flatten(ledger)
    root = ledger.repo.root
    before = tree_of(root, "HEAD")
    history = {a: [e.commit for e in ledger.history([a])] for a in aids}
    summaries = [s.to_json() for s in load_summaries(Ledger.open(root), use_cache=False)]
    (root / "notes.md").write_text("the user's own work\n")
    git(root, "add", "notes.md")
    result = CliRunner().invoke(main, ["migrate", "--repo", str(root)])
    assert result.exit_code == 0, result.output
    assert "moved 3 folder(s) in commit" in result.output
    ledger = Ledger.open(root)
    assert ledger.artifact_listing().flat == []
    after = tree_of(root, "HEAD")
    moved = {f"factory/artifacts/{layout.fanned(p.split('/')[2])}/{p.split('/', 3)[3]}": oid
             for p, oid in before.items() if p.startswith("factory/artifacts/")}
    assert {p: o for p, o in after.items() if p.startswith("factory/artifacts/")} == moved
    for aid in aids:  # each folder keeps its tree id: git sees a pure move
        assert git(root, "rev-parse", f"HEAD~1:factory/artifacts/{aid}") == \
            git(root, "rev-parse", f"HEAD:factory/artifacts/{layout.fanned(aid)}")
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


def test_a_paths_folder_is_known_by_its_shape_in_either_layout(ledger: Ledger) -> None:
    from gptme_factory.ledger.sync import stream_folder

    assert layout.folder_of("2a/fix-login-8c1f2a/0001-x.yaml") == "2a/fix-login-8c1f2a"
    assert layout.folder_of("2a/fix-login-8c1f2a/briefs/c.md") == "2a/fix-login-8c1f2a"
    assert layout.folder_of("fix-login-8c1f2a/intake.yaml") == "fix-login-8c1f2a"  # flat
    assert layout.folder_of("fix-login-8c1f2a/briefs/c.md") == "fix-login-8c1f2a"
    assert layout.folder_of("README.md") is None
    assert stream_folder(ledger, "factory/artifacts/2a/fix-login-8c1f2a/intake.yaml") == \
        "factory/artifacts/2a/fix-login-8c1f2a"
    assert stream_folder(ledger, "factory/artifacts/fix-login-8c1f2a/intake.yaml") == \
        "factory/artifacts/fix-login-8c1f2a"
    assert stream_folder(ledger, "factory/lines/default/0001-x.yaml") == "factory/lines/default"
    assert stream_folder(ledger, "factory/factory.yaml") is None
