"""The board as `status` prints it (views/status.py) and the summaries it shows (summary.py)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from gptme_factory.views.status import render_board
from gptme_factory.views.summary import ArtifactSummary

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)


def _summary(aid: str, state: str, created: str, last: str, **more: object) -> ArtifactSummary:
    return ArtifactSummary(
        artifact=aid, title=f"title of {aid}", line="default", state=state,
        stage="scout" if state == "idea" else None, status="pending", cell=None,
        last_event="intake" if created == last else "closed", last_at=last,
        created_at=created, events=1, **more)  # type: ignore[arg-type]


def test_the_board_orders_by_state_then_id_whatever_order_it_is_given() -> None:
    summaries = [
        _summary("zeta-1", "idea", "2026-01-05T11:00:00+00:00", "2026-01-05T11:00:00+00:00"),
        _summary("alpha-2", "closed", "2026-01-01T12:00:00+00:00", "2026-01-05T11:59:30+00:00"),
        _summary("beta-3", "idea", "2026-01-05T11:58:00+00:00", "2026-01-05T11:58:00+00:00",
                 problem="intake.yaml: bad"),
        _summary("alpha-1", "closed", "2026-01-02T12:00:00+00:00", "2026-01-04T12:00:00+00:00"),
    ]
    lines = render_board(summaries, [], [], 0, NOW).splitlines()
    assert lines[0] == "artifacts (4: 2 idea, 2 closed)"
    rows = [line.split()[0] for line in lines[2:7] if not line.lstrip().startswith("!")]
    assert rows == ["beta-3", "zeta-1", "alpha-1", "alpha-2"]
    by_id = {line.split()[0]: line.split() for line in lines[2:7]}
    assert by_id["zeta-1"][4:8] == ["1h", "intake", "1h", "ago"]  # an idea: its intake, once
    assert by_id["alpha-2"][4:8] == ["4d", "closed", "30s", "ago"]
    assert lines[3] == "    ! intake.yaml: bad"  # a problem goes right under its row


def test_a_summary_is_stored_as_a_row_and_restored_from_it() -> None:
    s = _summary("fix-1", "idea", "2026-01-05T11:00:00+00:00", "2026-01-05T11:00:00+00:00",
                 consumers=["erik"], cost_usd=0.25)
    row = s.to_row()
    assert isinstance(row, list) and len(row) == len(ArtifactSummary._fields)
    back = ArtifactSummary.from_row(row)
    assert back == s and back.consumers == ["erik"] and back.cost_usd == 0.25
    data = s.to_json()
    assert data["artifact"] == "fix-1" and data["consumers"] == ["erik"]
    assert ArtifactSummary.from_row([*row[:-1], "other"]).target == "other"
    with pytest.raises(ValueError, match="not a summary row"):
        ArtifactSummary.from_row(row[:-1])
    with pytest.raises(AttributeError):
        s.state = "closed"  # type: ignore[misc]  # immutable, like the dataclass it was
