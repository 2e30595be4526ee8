"""Cost attribution: tokens, money and wall time per cell, rolled up per artifact and line.

The numbers come only from `cell_finished` events, which the cell runner fills in from each
cell's own gptme conversation log, never from what a cell says about itself. A cell with no
`cell_finished` yet (still running, or its end was never recorded) counts as `unmeasured`, and
a measured cell whose log had no money figure counts in `cells_without_cost`, so a total that
is missing parts says so instead of looking cheap.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..line.replay import ArtifactView


@dataclass
class Cost:
    """A sum of measured cell costs."""

    cells: int = 0
    unmeasured: int = 0
    cells_without_cost: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    usd: float = 0.0
    wall_s: float = 0.0

    @property
    def tokens(self) -> int:
        """Input plus output tokens."""
        return self.tokens_in + self.tokens_out

    def add(self, other: Cost) -> None:
        """Add `other` into this sum."""
        self.cells += other.cells
        self.unmeasured += other.unmeasured
        self.cells_without_cost += other.cells_without_cost
        self.tokens_in += other.tokens_in
        self.tokens_out += other.tokens_out
        self.usd += other.usd
        self.wall_s += other.wall_s

    def to_json(self) -> dict[str, Any]:
        """Plain dict (money rounded to 1e-6 USD, time to ms)."""
        return {"cells": self.cells, "unmeasured": self.unmeasured,
                "cells_without_cost": self.cells_without_cost, "tokens_in": self.tokens_in,
                "tokens_out": self.tokens_out, "tokens": self.tokens,
                "usd": round(self.usd, 6), "wall_s": round(self.wall_s, 3)}


@dataclass
class CellCost:
    """One cell's measured cost."""

    cell: str
    stage: str
    role: str
    outcome: str | None
    cost: Cost


@dataclass
class ArtifactCost:
    """An artifact's cost: per cell and in total."""

    artifact: str
    line: str
    total: Cost = field(default_factory=Cost)
    cells: list[CellCost] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """Plain dict for --json output."""
        return {"artifact": self.artifact, "line": self.line, "total": self.total.to_json(),
                "cells": [{"cell": c.cell, "stage": c.stage, "role": c.role,
                           "outcome": c.outcome, **c.cost.to_json()} for c in self.cells]}


def artifact_cost(view: ArtifactView) -> ArtifactCost:
    """Cost of every cell the artifact ran, from its replayed `cell_finished` events."""
    out = ArtifactCost(view.intake.artifact, view.intake.line)
    for cv in view.cells.values():
        c = Cost(cells=1)
        if cv.outcome is None:
            c.unmeasured = 1
        else:
            c.tokens_in, c.tokens_out = cv.tokens_in or 0, cv.tokens_out or 0
            c.usd, c.wall_s = cv.cost_usd or 0.0, cv.wall_s or 0.0
            c.cells_without_cost = int(cv.cost_usd is None)
        out.cells.append(CellCost(cv.cell, cv.stage, cv.role, cv.outcome, c))
        out.total.add(c)
    return out


def per_line(costs: Iterable[ArtifactCost]) -> dict[str, Cost]:
    """Sum artifact costs per line."""
    lines: dict[str, Cost] = {}
    for ac in costs:
        lines.setdefault(ac.line, Cost()).add(ac.total)
    return dict(sorted(lines.items()))
