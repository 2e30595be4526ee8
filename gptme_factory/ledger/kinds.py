"""The kinds of stream the ledger holds, each an instance of the one stream (stream.py).

- `ARTIFACTS`: `factory/artifacts/<bucket>/<shelf>/<id>/` (fanned out, layout.py), rooted at
  `intake.yaml`; events are `records.ArtifactEvent`; a cell's committed brief may sit in its
  `briefs/` folder.
- `LINES`: `factory/lines/<line>/`, no root (the first event's parent is the line's genesis
  hash); events are `records.LineEvent` (park, unpark, archive).

Imported lazily by the `Ledger` (pydantic builds the unions): a warm `status` never loads it.
"""

from __future__ import annotations

from typing import TypeAlias

from .records import (
    ARTIFACT_EVENTS,
    LINE_EVENTS,
    ArtifactEvent,
    Intake,
    LineEvent,
    check_artifact_id,
    check_name,
)
from .stream import Chain, RootedKind, Stored, Stream, StreamKind

INTAKE_FILE = "intake.yaml"
BRIEFS_DIR = "briefs"  # cells' briefs, committed with their cell_spawned events (cells/spawn.py)

ARTIFACTS: RootedKind[Intake, ArtifactEvent] = RootedKind(
    name="artifact", folder="artifacts", key="artifact", check_id=check_artifact_id,
    events=ARTIFACT_EVENTS, subdirs=frozenset({BRIEFS_DIR}), fanout=True, root_file=INTAKE_FILE,
    root_model=Intake,
)
LINES: StreamKind[LineEvent] = StreamKind(
    name="line", folder="lines", key="line", check_id=check_name, events=LINE_EVENTS,
)

ArtifactChain: TypeAlias = Chain[Intake, ArtifactEvent]
LineStream: TypeAlias = Stream[LineEvent]
StoredEvent: TypeAlias = Stored[ArtifactEvent]
StoredLineEvent: TypeAlias = Stored[LineEvent]
