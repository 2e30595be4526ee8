"""The shared wording (views/present.py): what the CLI, the gptme tool and the board all say."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from gptme_factory.ledger.records import (
    Budget,
    CellFinished,
    CellSpawned,
    CheckResult,
    Closed,
    GateFailed,
    Rework,
)
from gptme_factory.views import present

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(("seconds", "said"), [
    (None, "?"), (-5, "0s"), (42.9, "42s"), (300, "5m"), (3 * 3600 + 59, "3h"), (2 * 86400, "2d")])
def test_ago_says_the_largest_unit(seconds: float | None, said: str) -> None:
    assert present.ago(seconds) == said


def test_age_counts_from_an_iso_time() -> None:
    assert present.age("2026-01-05T11:55:00+00:00", NOW) == "5m"
    assert present.age("", NOW) == "?"


@pytest.mark.parametrize(("seconds", "said"), [
    (None, "-"), (45, "45s"), (185, "3m05s"), (2 * 3600 + 600, "2h10m"),
    (3 * 86400 + 4 * 3600 + 59, "3d04h")])
def test_duration_says_two_units(seconds: float | None, said: str) -> None:
    assert present.duration(seconds) == said


def test_money_tokens_and_times() -> None:
    assert [present.usd(v) for v in (None, 0.01234, 1.5, 1234.0)] == \
        ["-", "$0.0123", "$1.50", "$1,234.00"]
    assert [present.tokens(n) for n in (None, 12, 3400, 1_200_000)] == ["-", "12", "3.4k", "1.2M"]
    assert present.when("2026-01-02T03:04:05+00:00") == "2026-01-02 03:04 UTC"
    assert present.when(None) == "-" and present.when("not a time") == "not a time"


def test_a_check_line_says_how_it_ended() -> None:
    ok = CheckResult(command="pytest -q", exit_code=0, duration_s=1.25)
    slow = CheckResult(command="sleep 9", exit_code=None, duration_s=30, timed_out=True)
    assert present.check_line(ok) == "$ pytest -q  exit 0  1.2s"
    assert present.check_line(slow) == "$ sleep 9  exit timeout  30.0s"


def test_event_lines_say_what_each_event_did() -> None:
    cell = "fix-login-timeout-abc123.build.1a2b"
    assert present.event_line(CellSpawned(
        cell=cell, role="builder", backend="gptodo", model="openai/gpt-4o",
        budget=Budget(timeout_s=900), brief="factory/artifacts/x/briefs/b.md",
        brief_digest="0" * 64)) == "gptodo cell launched, model openai/gpt-4o, 900 s budget"
    assert present.event_line(CellFinished(
        cell=cell, outcome="handoff", wall_s=125, cost_usd=0.25, exit_code=0)) == \
        f"cell {cell} ended (handoff) after 2m05s, $0.2500"
    assert present.event_line(GateFailed(
        stage="verify", cell=cell, gate="evidence", reasons=["1 check failed"],
        failure_summary="pytest exited 1")) == "evidence gate failed at verify: pytest exited 1"
    assert present.event_line(Rework(from_stage="verify", to_stage="build",
                                     retry_note="fix the test")) == \
        "sent back from verify to build: fix the test"
    assert present.event_line(Closed(terminal="done")) == "closed: done"


def test_a_table_pads_every_column_but_the_last_and_turns_cells_into_text() -> None:
    rows = [["fix-a", 3, None, "a title"], ["b", 12345, "x", "t"]]
    assert present.table(["id", "n", "stage", "title"], rows, indent="  ") == [
        "  ID     N      STAGE  TITLE",
        "  fix-a  3      None   a title",
        "  b      12345  x      t",
    ]
    # an iterator of rows, no rows, a row of the wrong width
    assert present.table(["a", "b"], iter([("x", "yy")])) == ["A  B", "x  yy"]
    assert present.table(["a", "bb"], []) == ["A  BB"]
    with pytest.raises(ValueError, match="every row of the table needs 2 cells"):
        present.table(["a", "b"], [["only one"]])
    # a cell is text, never a format: `%` in a title or an id is printed as it is
    assert present.table(["a", "b"], [["50%", "%s %d %%"]], indent="%") == [
        "%A    B", "%50%  %s %d %%"]
    # with last_wide off the last column is padded too (and then stripped at the line's end)
    assert present.table(["a", "b"], [["x", "long"], ["y", "z"]], last_wide=False) == [
        "A  B", "x  long", "y  z"]
