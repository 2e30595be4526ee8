"""The kept listing of artifact folders: what moved is listed again, and nothing else is."""

from __future__ import annotations

import shutil
from typing import Any

import pytest

from gptme_factory.ledger import layout
from gptme_factory.ledger.store import Ledger
from gptme_factory.views import listingcache
from tests.ledger_helpers import listings, new_artifact


@pytest.fixture
def scans(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every listing made, by the places it read (None: every place)."""
    return listings(monkeypatch)


@pytest.fixture
def settled(monkeypatch: pytest.MonkeyPatch) -> None:
    """No racy window: a directory's mark counts as soon as it is taken."""
    from gptme_factory.ledger import dirmarks

    monkeypatch.setattr(dirmarks, "fs_now", lambda scratch: 2**62)


def same_as_a_scan(ledger: Ledger) -> layout.Listing:
    got = listingcache.current(Ledger.open(ledger.repo.root))
    assert got.to_json() == layout.scan(ledger.artifacts_dir).to_json()
    return got


def test_a_kept_listing_is_taken_while_no_directory_moved(ledger: Ledger, settled: None,
                                                          scans: list[Any]) -> None:
    aids = [new_artifact(ledger, f"Artifact {i}") for i in range(3)]
    same_as_a_scan(ledger)
    assert scans[0] is None  # the first: every place
    scans.clear()
    assert sorted(same_as_a_scan(ledger).folders) == sorted(aids)
    assert scans == [None]  # (only the comparison's own scan)


def test_what_joins_or_leaves_a_shelf_is_listed_again_there_alone(
        ledger: Ledger, settled: None, scans: list[Any]) -> None:
    aids = [new_artifact(ledger, f"Artifact {i}") for i in range(3)]
    same_as_a_scan(ledger)
    late = new_artifact(ledger, "Late")
    scans.clear()
    assert late in same_as_a_scan(ledger).folders
    # its shelf (and its bucket, where the shelf is new), not every place
    assert scans[0] is not None and f"{late[-2:]}/{late[-3]}" in scans[0]
    assert set(scans[0]) <= {late[-2:], f"{late[-2:]}/{late[-3]}"}
    shutil.rmtree(ledger.artifact_dir(aids[0]))
    stray = ledger.artifact_dir(aids[1]).parent / "not-an-artifact.txt"
    stray.write_text("hello\n")
    got = same_as_a_scan(ledger)
    assert aids[0] not in got.folders
    assert (f"{aids[1][-2:]}/{aids[1][-3]}/not-an-artifact.txt", "file") in got.strays


def test_a_racy_directory_is_listed_again_next_time(ledger: Ledger, scans: list[Any],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A mark taken in the filesystem's current tick is not kept (a second change within it
    would not move the mtime): that directory is listed again, until a mark holds."""
    from gptme_factory.ledger import dirmarks

    aid = new_artifact(ledger, "Fresh")
    monkeypatch.setattr(dirmarks, "fs_now", lambda scratch: 0)  # every mark is racy
    same_as_a_scan(ledger)
    scans.clear()
    same_as_a_scan(ledger)
    assert scans[0] is not None and f"{aid[-2:]}/{aid[-3]}" in scans[0]
    monkeypatch.setattr(dirmarks, "fs_now", lambda scratch: 2**62)
    same_as_a_scan(ledger)  # marks that hold now
    scans.clear()
    same_as_a_scan(ledger)
    assert scans == [None]


@pytest.mark.parametrize("garbage", [b"", b"\x00not marshal", b"\xe9\x00\x00\x00\x00"])
def test_a_damaged_kept_listing_is_no_listing(ledger: Ledger, settled: None, scans: list[Any],
                                              garbage: bytes) -> None:
    new_artifact(ledger, "One")
    same_as_a_scan(ledger)
    (ledger.runtime_dir / listingcache.FILE).write_bytes(garbage)
    scans.clear()
    same_as_a_scan(ledger)
    assert scans[0] is None  # listed whole again
