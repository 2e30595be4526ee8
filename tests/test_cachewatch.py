"""The watcher's state for the status cache: what a writer may hand over to the next pass."""

from __future__ import annotations

import marshal
from typing import Any

import pytest

from gptme_factory.ledger.layout import Listing
from gptme_factory.ledger.store import Ledger
from gptme_factory.ledger.watcher import Watch
from gptme_factory.views import cachewatch
from gptme_factory.views.cachewatch import STATE_FILE, KindState, State, hand_over, snapshot

LOADED, WRITTEN, OTHER = [1, 10, 100], [2, 20, 200], [3, 30, 300]


def keep(ledger: Ledger, clock: str, shards: dict[str, list[int]]) -> None:
    """Store a state as a pass keeps it: a clock, a listing, the summaries' shards."""
    state = State(Watch(str(ledger.repo.root), "", clock), Listing(),
                  {"status-cache": KindState(dict(shards), {"aa0001"})}, "factory/artifacts")
    ledger.runtime_dir.mkdir(parents=True, exist_ok=True)
    (ledger.runtime_dir / STATE_FILE).write_bytes(marshal.dumps(state.to_json()))


def shards_kept(ledger: Ledger) -> dict[str, Any]:
    data = marshal.loads((ledger.runtime_dir / STATE_FILE).read_bytes())
    assert data["kinds"]["status-cache"]["pending"] == ["aa0001"]  # left as it was
    return dict(data["kinds"]["status-cache"]["shards"])


def test_a_shard_the_state_vouched_for_is_handed_over(ledger: Ledger) -> None:
    keep(ledger, "c:1", {"aa": LOADED, "bb": OTHER})
    before = snapshot(ledger)
    assert hand_over(ledger, before, {"status-cache": {"aa": (LOADED, WRITTEN)}})
    assert shards_kept(ledger) == {"aa": WRITTEN, "bb": OTHER}
    assert cachewatch.load(ledger) is not None  # still a state a pass can read


@pytest.mark.parametrize("race", ["a pass kept a state since", "another file was loaded",
                                  "a kind no pass checked", "no state before"])
def test_nothing_is_handed_over_that_the_state_does_not_vouch_for(ledger: Ledger,
                                                                   race: str) -> None:
    keep(ledger, "c:1", {"aa": LOADED})
    before = snapshot(ledger)
    loaded, kind = LOADED, "status-cache"
    if race == "a pass kept a state since":
        keep(ledger, "c:2", {"aa": LOADED})
    elif race == "another file was loaded":
        loaded = OTHER
    elif race == "a kind no pass checked":
        kind = "metric-facts"
    else:
        before = None
    assert not hand_over(ledger, before, {kind: {"aa": (loaded, WRITTEN)}})
    assert shards_kept(ledger) == {"aa": LOADED}


def test_a_damaged_or_missing_state_is_no_snapshot(ledger: Ledger) -> None:
    assert snapshot(ledger) is None
    ledger.runtime_dir.mkdir(parents=True, exist_ok=True)
    (ledger.runtime_dir / STATE_FILE).write_bytes(b"\x00garbage")
    assert snapshot(ledger) is None
    assert not hand_over(ledger, {"watch": {}}, {"status-cache": {"aa": (LOADED, WRITTEN)}})
