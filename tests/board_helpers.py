"""A brain with artifacts in every kind of state, made through the real ledger and engine.

Shared by the board's data, server and browser tests. The timeline runs on a fixed clock
(hours after T0) through the helpers of tests/test_metrics.py: real builder commits on
branches, the real verify gate running its check.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gptme_factory.errors import InvalidRecord
from gptme_factory.ledger.config import default_config
from gptme_factory.line import engine
from tests.test_metrics import (
    build,
    finish,
    intake,
    measure_stage,
    package,
    scout,
    two_line_brain,
    verify,
)

XSS_TITLE = "<script>alert(1)</script>"
XSS_IMG = '<img src=x onerror="window.__xss=1">'


def make_brain(root: Path) -> dict[str, Any]:
    """A brain repo at `root`: every artifact state the board shows. Returns ledger and ids."""
    default = default_config().lines["default"]
    ops = default.model_copy(update={"stages": [
        st.model_copy(update={"approval": True}) if st.name == "scout" else st
        for st in default.stages]})
    ledger, clock = two_line_brain(root, ops, "an ops line whose scout stage needs approval")
    ids: dict[str, str] = {}

    # closed: the whole line, measured cost per cell
    clock.at(0)
    a = ids["closed"] = intake(ledger, "Fix the login timeout", ["erik"])
    scout(ledger, clock, a, 1, 2)
    finish(ledger, a, "scout", 0, 1000, 200, 0.10, 60)
    head = build(ledger, clock, a, 2, 6, "fixed")
    finish(ledger, a, "build", 0, 2000, 500, 0.30, 300)
    verify(ledger, clock, a, 6, 7, head, True)
    package(ledger, clock, a, 7, 9)
    measure_stage(ledger, clock, a, 12, "used")
    clock.at(13)
    engine.close(ledger, a, terminal="done")

    # pending at build with a retry note: the verify gate failed, back to build
    clock.at(24)
    r = ids["retry"] = intake(ledger, "Speed up the export", ["alice"])
    scout(ledger, clock, r, 25, 26)
    bad = build(ledger, clock, r, 26, 28, "broken")
    finish(ledger, r, "build", 0, 1000, 1000, 0.20, 100)
    verify(ledger, clock, r, 28, 29, bad, False)

    # blocked at scout: a contract violation (the cell's handoffs stayed invalid)
    clock.at(48)
    b = ids["blocked"] = intake(ledger, "Harden the parser", ["erik"])
    clock.at(49)
    cell = engine.start_stage(ledger, b).cell
    for _ in range(3):
        with pytest.raises(InvalidRecord):
            engine.submit(ledger, cell, {"kind": "scout_memo", "artifact": b})

    # awaiting approval on the ops line
    clock.at(60)
    w = ids["approval"] = intake(ledger, "Rotate the backup keys", ["ops team"], line="ops")
    scout(ledger, clock, w, 61, 62)

    # abandoned; pending at scout with a hostile title; running at scout
    clock.at(70)
    x = ids["abandoned"] = intake(ledger, "Theme editor", ["erik"])
    engine.finish(ledger, x, "abandoned", "nobody needs it")
    clock.at(72)
    ids["xss"] = intake(ledger, XSS_TITLE + " " + XSS_IMG, ["erik"])
    clock.at(73)
    ids["running"] = intake(ledger, "Add search", ["erik"])
    clock.at(74)
    engine.start_stage(ledger, ids["running"])
    return {"ledger": ledger, "ids": ids, "root": root}
