"""The metric-facts cache: the same numbers as a full read, and only changed artifacts re-read."""

from __future__ import annotations

import json
import marshal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from gptme_factory.cli import main
from gptme_factory.ledger.store import Ledger
from gptme_factory.line.intake import intake
from gptme_factory.views import statuscache
from gptme_factory.views.factcache import facts_kind, metrics
from gptme_factory.views.statuscache import SUMMARIES, cached, shard
from tests.ledger_helpers import abandon, append_next, new_artifact, reads


@pytest.fixture
def settled(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> Ledger:
    """No racy window: a directory is trusted as soon as it is cached."""
    monkeypatch.setattr(statuscache, "RACY_NS", 0)
    return ledger


def both(ledger: Ledger, **kw: Any) -> dict[str, Any]:
    """`metrics` through the cache, asserted equal to a full read."""
    fresh = Ledger.open(ledger.repo.root)
    cached_report = metrics(fresh, per_artifact=True, **kw)
    assert cached_report == metrics(Ledger.open(ledger.repo.root), per_artifact=True,
                                    use_cache=False, **kw)
    return cached_report


def test_only_a_changed_artifact_is_read_again(settled: Ledger,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    ledger = settled
    aids = [new_artifact(ledger, f"Artifact {i}") for i in range(4)]
    for aid in aids[:3]:
        append_next(ledger, aid)
    first = both(ledger)
    assert first["artifacts"] == 4 and first["rework"]["started"] == 3
    seen = reads(monkeypatch)
    metrics(Ledger.open(ledger.repo.root))
    assert seen == []  # warm: nothing read
    abandon(ledger, aids[1], "no longer needed")
    seen.clear()
    after = metrics(Ledger.open(ledger.repo.root), per_artifact=True)
    assert seen == [aids[1]]
    state = {a["artifact"]: a["state"] for a in after["per_artifact"]}
    assert state[aids[1]] == "abandoned" and state[aids[0]] == "idea"
    seen.clear()
    assert both(ledger) == after


def test_one_pass_serves_summaries_and_facts(settled: Ledger,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    ledger = settled
    a, b = new_artifact(ledger, "One"), new_artifact(ledger, "Two")
    fresh = Ledger.open(ledger.repo.root)
    cached(fresh, [SUMMARIES, facts_kind(fresh)])
    append_next(ledger, b)
    seen = reads(monkeypatch)
    fresh = Ledger.open(ledger.repo.root)
    summaries, facts = cached(fresh, [SUMMARIES, facts_kind(fresh)])
    assert seen == [b]  # read once for both kinds
    assert [s.artifact for s in summaries] == [a, b] == [f.artifact for f in facts]
    assert summaries[1].status == facts[1].status == "running"


def test_self_names_are_part_of_the_key(settled: Ledger) -> None:
    ledger = settled
    intake(ledger, title="Inner", demand="me", consumers=["robo"], acceptance=["ok"])
    assert both(ledger)["self_play"]["count"] == 0
    (ledger.repo.root / "gptme.toml").write_text('[agent]\nname = "Robo"\n')
    assert both(ledger)["self_play"]["count"] == 1


def test_broken_artifacts_are_reported_every_time(settled: Ledger) -> None:
    ledger = settled
    good, bad = new_artifact(ledger, "Good"), new_artifact(ledger, "Bad")
    both(ledger)
    (ledger.artifact_dir(bad) / "0001-abandoned-0123456789ab.yaml").write_text("kind: [\n")
    for _ in range(2):
        report = both(ledger)
        assert report["broken"] == [bad] and report["artifacts"] == 1
    assert both(ledger, line="default")["broken"] == [bad]
    assert good


@pytest.mark.parametrize("garbage", [b"", b"{}", b'{"key": 1, "artifacts": []}',
                                     b'{"artifacts": {"x": [1, 2, 3, [1]]}}'])
def test_damaged_cache_is_ignored(settled: Ledger, garbage: bytes) -> None:
    ledger = settled
    aid = new_artifact(ledger, "A")
    both(ledger)
    path = shard(ledger, facts_kind(ledger), aid)
    path.write_bytes(garbage)
    assert both(ledger)["artifacts"] == 1
    assert marshal.loads(path.read_bytes())["artifacts"]


def test_damaged_entry_is_read_again(settled: Ledger) -> None:
    ledger = settled
    aid = new_artifact(ledger, "A")
    both(ledger)
    path = shard(ledger, facts_kind(ledger), aid)
    data = marshal.loads(path.read_bytes())
    data["artifacts"][aid][3] = data["artifacts"][aid][3][:5]
    path.write_bytes(marshal.dumps(data))
    assert both(ledger)["artifacts"] == 1


def test_cli_no_cache_gives_the_same_json(settled: Ledger, tmp_path: Path) -> None:
    ledger = settled
    aid = new_artifact(ledger, "A")
    append_next(ledger, aid)
    runner = CliRunner()
    args = ["metrics", "--json", "--repo", str(ledger.repo.root)]
    warm = runner.invoke(main, args)
    cold = runner.invoke(main, [*args, "--no-cache"])
    assert warm.exit_code == cold.exit_code == 0
    assert json.loads(warm.output) == json.loads(cold.output)
    assert shard(ledger, facts_kind(ledger), aid).is_file()


def test_the_report_is_kept_until_an_artifact_changes(settled: Ledger,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from gptme_factory.views.factcache import REPORT_FILE

    ledger = settled
    a, b = new_artifact(ledger, "One"), new_artifact(ledger, "Two")
    append_next(ledger, a)
    first = metrics(Ledger.open(ledger.repo.root))
    assert first == metrics(Ledger.open(ledger.repo.root), use_cache=False)
    path = ledger.runtime_dir / REPORT_FILE
    stamp = path.stat().st_mtime_ns
    seen = reads(monkeypatch)
    assert metrics(Ledger.open(ledger.repo.root)) == first
    assert seen == [] and path.stat().st_mtime_ns == stamp  # kept, not computed again
    abandon(ledger, b, "not needed")
    seen.clear()
    second = metrics(Ledger.open(ledger.repo.root))
    assert seen == [b] and second["queue"] != first["queue"]
    assert second == metrics(Ledger.open(ledger.repo.root), use_cache=False)
    path.write_text("{")  # damaged: ignored and rewritten
    assert metrics(Ledger.open(ledger.repo.root)) == second
    assert json.loads(path.read_text())["report"] == second


def test_no_report_is_kept_while_an_artifact_cannot_be_read(settled: Ledger) -> None:
    from gptme_factory.views.factcache import REPORT_FILE

    ledger = settled
    bad = new_artifact(ledger, "Bad")
    (ledger.artifact_dir(bad) / "intake.yaml").write_text("kind: [\n")
    report = metrics(Ledger.open(ledger.repo.root))
    assert report["broken"] == [bad]
    assert report == metrics(Ledger.open(ledger.repo.root), use_cache=False)
    assert not (ledger.runtime_dir / REPORT_FILE).exists()
