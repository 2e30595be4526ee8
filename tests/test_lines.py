"""Line lifecycle: park / unpark / archive streams, intake refusal, idleness, verification."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from gptme_factory.cli import main
from gptme_factory.errors import ConfigError, IllegalTransition, LedgerConflict
from gptme_factory.ledger.gitstore import GitRepo
from gptme_factory.ledger.kinds import LINES
from gptme_factory.ledger.store import Ledger
from gptme_factory.line import lifecycle as lines
from gptme_factory.line.intake import intake as new_intake
from gptme_factory.line.lifecycle import LineRefusesIntake
from gptme_factory.line.verify import verify_lines
from gptme_factory.views.linestatus import line_statuses
from tests.conftest import git

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
DEMAND = {"demand": "gh:acme/app#42", "consumers": ["erik"], "acceptance": ["it works"]}


class Clock:
    """A settable clock for the ledger."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clocked(factory_repo: Path) -> tuple[Ledger, Clock]:
    clock = Clock(T0)
    return Ledger(GitRepo.discover(factory_repo), clock=clock), clock


def run(repo: Path, *args: str) -> Result:
    return CliRunner().invoke(main, [*args, "--repo", str(repo)])


def test_park_writes_a_hash_chained_event_and_refuses_intake(
    clocked: tuple[Ledger, Clock],
) -> None:
    ledger, _ = clocked
    stored = lines.park(ledger, "default", ["acme files a new issue", "erik asks again"],
                        reason="no demand this quarter")
    name = Path(stored.path).name
    assert stored.path.startswith("factory/lines/default/0001-line_parked-")
    assert name == f"0001-line_parked-{stored.digest[:12]}.yaml"
    assert (ledger.repo.root / stored.path).read_text() == (
        "kind: line_parked\n"
        "schema_version: 1\n"
        "line: default\n"
        "seq: 1\n"
        f"parent: {LINES.genesis('default')}\n"
        "at: '2026-01-05T09:00:00Z'\n"
        "by: tester\n"
        "triggers:\n"
        "- acme files a new issue\n"
        "- erik asks again\n"
        "reason: no demand this quarter\n"
    )
    msg = git(ledger.repo.root, "log", "-1", "--format=%B")
    assert msg.splitlines()[0] == (
        "factory(line:default): parked until acme files a new issue; erik asks...")
    assert "Factory-Line: default" in msg and f"Factory-Hash: {stored.digest}" in msg
    assert git(ledger.repo.root, "status", "--porcelain") == ""
    head = git(ledger.repo.root, "rev-parse", "HEAD")
    with pytest.raises(LineRefusesIntake) as err:
        new_intake(ledger, title="More work", **DEMAND)
    assert str(err.value) == (
        "line 'default' is parked since 2026-01-05 (no demand this quarter) and takes no new "
        'intake until one of its restart triggers fires: "acme files a new issue"; '
        '"erik asks again". If one has, run `gptme-factory unpark default --because "..."`; '
        "otherwise use another line (--line)"
    )
    assert git(ledger.repo.root, "rev-parse", "HEAD") == head  # nothing written
    assert ledger.artifact_ids() == []
    assert verify_lines(ledger) == []


def test_unpark_resumes_and_archive_is_final(clocked: tuple[Ledger, Clock]) -> None:
    ledger, clock = clocked
    first = lines.park(ledger, "default", ["a new issue"])
    clock.now = T0 + timedelta(days=3)
    second = lines.unpark(ledger, "default", "acme filed issue #50")
    assert second.header.parent == first.digest and second.seq == 2
    st = lines.line_state(ledger, "default")
    assert (st.state, st.because, st.resumed_at) == ("active", "acme filed issue #50", clock.now)
    new_intake(ledger, title="Now there is demand", **DEMAND)
    with pytest.raises(IllegalTransition, match="not parked"):
        lines.unpark(ledger, "default", "again")
    lines.park(ledger, "default", ["x"])
    with pytest.raises(IllegalTransition, match="already parked"):
        lines.park(ledger, "default", ["y"])
    lines.archive(ledger, "default", "the product was retired")
    with pytest.raises(LineRefusesIntake, match=r"archived \(the product was retired\)"):
        new_intake(ledger, title="Late", **DEMAND)
    with pytest.raises(IllegalTransition, match="archived"):
        lines.unpark(ledger, "default", "changed my mind")
    with pytest.raises(ConfigError, match="unknown line 'nope'"):
        lines.park(ledger, "nope", ["x"])
    assert [e.event.kind for e in ledger.read_line("default").events] == [
        "line_parked", "line_unparked", "line_parked", "line_archived"]
    assert verify_lines(ledger) == []


def test_cli_park_unpark_archive_and_refused_intake(factory_repo: Path) -> None:
    result = run(factory_repo, "park", "default", "--trigger", "a customer asks",
                 "--trigger", "the API changes")
    assert result.exit_code == 0, result.output
    assert result.output == 'default: parked until "a customer asks"; "the API changes"\n'
    result = run(factory_repo, "intake", "X", "--demand", "me", "--consumer", "erik",
                 "--accept", "y")
    assert result.exit_code == 7
    assert '"a customer asks"; "the API changes"' in result.output
    assert result.output.startswith("error: line 'default' is parked")
    status = json.loads(run(factory_repo, "status", "--json").stdout)
    assert status["lines"][0]["state"] == "parked"
    assert status["lines"][0]["triggers"] == ["a customer asks", "the API changes"]
    result = run(factory_repo, "unpark", "default", "--because", "a customer asks")
    assert (result.exit_code, result.output) == (0, "default: active again (a customer asks)\n")
    assert run(factory_repo, "intake", "X", "--demand", "me", "--consumer", "erik",
               "--accept", "y").exit_code == 0
    text = run(factory_repo, "status").output
    assert "lines\n  default: active; 1 artifact(s), last intake" in text
    result = run(factory_repo, "park", "default")
    assert result.exit_code == 2 and "--trigger" in result.output
    result = run(factory_repo, "archive", "default", "--reason", "retired", "--json")
    assert json.loads(result.stdout)["state"] == "archived"
    assert run(factory_repo, "verify").exit_code == 0


def test_idle_line_is_flagged(clocked: tuple[Ledger, Clock]) -> None:
    ledger, clock = clocked
    from gptme_factory.views.status import load_summaries

    assert line_statuses(ledger, [], T0)[0].idle is False  # no intake yet: no reference time
    new_intake(ledger, title="Once", **DEMAND)
    summaries = load_summaries(ledger, use_cache=False)
    fresh = line_statuses(ledger, summaries, T0 + timedelta(days=29))[0]
    assert (fresh.idle, fresh.idle_days, fresh.artifacts) == (False, 29, 1)
    stale = line_statuses(ledger, summaries, T0 + timedelta(days=30))[0]
    assert (stale.idle, stale.idle_days, stale.idle_after_days) == (True, 30, 30)
    assert "IDLE: no intake for 30 days" in stale.describe()
    clock.now = T0 + timedelta(days=31)
    lines.park(ledger, "default", ["new demand"])
    parked = line_statuses(ledger, summaries, T0 + timedelta(days=90))[0]
    assert (parked.state, parked.idle) == ("parked", False)  # parked lines are not "idle"
    lines.unpark(ledger, "default", "new demand")
    resumed = line_statuses(ledger, summaries, T0 + timedelta(days=40))[0]
    assert (resumed.state, resumed.idle, resumed.idle_days) == ("active", False, 9)


def test_verify_lines_names_tampering_forks_and_strays(clocked: tuple[Ledger, Clock]) -> None:
    ledger, _ = clocked
    first = lines.park(ledger, "default", ["a"])
    second = lines.unpark(ledger, "default", "a")
    root = ledger.repo.root
    path = root / first.path
    path.write_text(path.read_text().replace("- a\n", "- b\n"))
    problems = [str(p) for p in verify_lines(ledger)]
    assert f"{first.path}: content does not match the hash in its name (edited after it was written)" in problems
    assert any(p.startswith(second.path) and "is not in the chain" in p for p in problems)
    with pytest.raises(LedgerConflict, match="ledger problems"):
        lines.park(ledger, "default", ["c"])
    git(root, "checkout", "--", first.path)
    assert verify_lines(ledger) == []
    # a second writer on another clone appended after the same parent: a fork
    rival = second.event.model_copy(update={"because": "something else"})
    from gptme_factory.ledger.stream import sha256

    raw = LINES.dump("default", second.header, rival)
    (root / f"factory/lines/default/0002-line_unparked-{sha256(raw)[:12]}.yaml").write_bytes(raw)
    (root / "factory/lines/default/notes.txt").write_text("hi")
    (root / "factory/lines/stray.yaml").write_text("x: 1\n")
    problems = [str(p) for p in verify_lines(ledger)]
    assert any(p.startswith("factory/lines/default: fork: factory/lines/default/0002-line_unparked-")
               and "all claim the same parent" in p for p in problems), problems
    assert "factory/lines/default/notes.txt: not a ledger record (unexpected file)" in problems
    assert "factory/lines/stray.yaml: unexpected file in lines/" in problems
