"""The one event stream: artifact and line streams are read, linked and refused by the same code.

Each case damages an artifact's folder and a line's folder the same way and checks that both
streams report the same problem (the folder's path aside), strict readers stay safe, and
nothing outside the ledger is ever parsed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from gptme_factory.errors import InvalidRecord
from gptme_factory.ledger.kinds import ARTIFACTS, LINES
from gptme_factory.ledger.records import EventHeader, LineParked, StageStarted
from gptme_factory.ledger.store import Ledger
from gptme_factory.ledger.stream import stream_ids
from gptme_factory.line import engine, lifecycle
from gptme_factory.line.verify import verify_ledger
from tests.ledger_helpers import new_artifact

Damage = Callable[[Path, Path], str]  # (stream folder, a place outside) -> the entry it made


def symlink_out(folder: Path, outside: Path) -> str:
    target = outside / "evil.yaml"
    target.write_text("kind: abandoned\nreason: from outside the ledger\n")
    (folder / "0009-abandoned-0123456789ab.yaml").symlink_to(target)
    return "0009-abandoned-0123456789ab.yaml"


def event_named_dir(folder: Path, outside: Path) -> str:
    (folder / "0009-abandoned-0123456789ab.yaml").mkdir()
    return "0009-abandoned-0123456789ab.yaml"


def stray_file(folder: Path, outside: Path) -> str:
    (folder / "notes.txt").write_text("hi\n")
    return "notes.txt"


def oversized(folder: Path, outside: Path) -> str:
    (folder / "0009-abandoned-0123456789ab.yaml").write_bytes(b"reason: " + b"x" * 1_100_000)
    return "0009-abandoned-0123456789ab.yaml"


def bad_utf8(folder: Path, outside: Path) -> str:
    (folder / "0009-abandoned-0123456789ab.yaml").write_bytes(b"kind: abandoned\nreason: \xff\n")
    return "0009-abandoned-0123456789ab.yaml"


def edited(folder: Path, outside: Path) -> str:
    first = sorted(p for p in folder.iterdir() if p.name.startswith("0001-"))[0]
    first.write_bytes(first.read_bytes().replace(b"by: tester", b"by: mallory"))
    return first.name


CASES: dict[str, tuple[Damage, str]] = {
    "symlink": (symlink_out, "not a ledger record (unexpected symlink)"),
    "directory": (event_named_dir, "not a ledger record (unexpected directory)"),
    "stray": (stray_file, "not a ledger record (unexpected file)"),
    "oversized": (oversized, "over the 1048576-byte limit for a record"),
    "utf8": (bad_utf8, "not valid UTF-8 at byte"),
    "edited": (edited, "content does not match the hash in its name"),
}


@pytest.fixture
def two_streams(ledger: Ledger) -> tuple[Ledger, Path, Path]:
    aid = new_artifact(ledger)
    engine.start_stage(ledger, aid)
    lifecycle.park(ledger, "default", ["demand returns"])
    return ledger, ledger.artifact_dir(aid), ledger.lines_dir / "default"


@pytest.mark.parametrize("case", sorted(CASES))
def test_artifact_and_line_streams_refuse_the_same_bad_input(
    two_streams: tuple[Ledger, Path, Path], tmp_path: Path, case: str
) -> None:
    ledger, artifact_dir, line_dir = two_streams
    damage, needle = CASES[case]
    found: dict[str, list[str]] = {}
    for name, folder in (("artifact", artifact_dir), ("line", line_dir)):
        entry = damage(folder, tmp_path)
        rel = ledger.relpath(folder)
        stream = (ledger.read(folder.name, tolerant=True) if name == "artifact"
                  else ledger.read_line(folder.name, tolerant=True))
        found[name] = [str(p).replace(rel, "<folder>").replace(entry, "<entry>")
                       for p in stream.problems if p.where.endswith(entry)]
        assert any(needle in p for p in found[name]), (name, found[name])
        # verify reports it too, naming the file, and never crashes
        assert any(p.where == f"{rel}/{entry}" and needle in p.message
                   for p in verify_ledger(ledger)), name
    assert found["artifact"] == found["line"]


@pytest.mark.parametrize("case", ["symlink", "directory", "stray"])
def test_strict_readers_skip_what_is_not_a_record(
    two_streams: tuple[Ledger, Path, Path], tmp_path: Path, case: str
) -> None:
    ledger, artifact_dir, line_dir = two_streams
    for folder in (artifact_dir, line_dir):
        CASES[case][0](folder, tmp_path)
    assert [e.kind for e in ledger.read(artifact_dir.name).events] == ["stage_started"]
    assert [e.kind for e in ledger.read_line("default").events] == ["line_parked"]


@pytest.mark.parametrize("case", ["oversized", "utf8"])
def test_strict_readers_refuse_a_bad_record(
    two_streams: tuple[Ledger, Path, Path], tmp_path: Path, case: str
) -> None:
    ledger, artifact_dir, line_dir = two_streams
    for folder in (artifact_dir, line_dir):
        CASES[case][0](folder, tmp_path)
    with pytest.raises(InvalidRecord, match="0009-abandoned"):
        ledger.read(artifact_dir.name)
    with pytest.raises(InvalidRecord, match="0009-abandoned"):
        ledger.read_line("default")


def test_both_kinds_dump_the_same_header_and_drop_unset_fields() -> None:
    header = EventHeader(kind="stage_started", seq=1, parent="ab" * 32,
                         at="2026-01-02T03:04:05Z", by="t")  # type: ignore[arg-type]
    raw = ARTIFACTS.dump("a-1", header, StageStarted(stage="s", role="r", cell="a-1.s.0001",
                                                     attempt=1))
    assert raw.decode().splitlines()[:7] == [
        "kind: stage_started", "schema_version: 1", "artifact: a-1", "seq: 1",
        f"parent: {'ab' * 32}", "at: '2026-01-02T03:04:05Z'", "by: t"]
    assert b"base_commit" not in raw  # None is left out, for every kind
    line_header = header.model_copy(update={"kind": "line_parked"})
    line_raw = LINES.dump("default", line_header, LineParked(triggers=["x"]))
    assert line_raw.decode().splitlines()[:7] == [
        "kind: line_parked", "schema_version: 1", "line: default", "seq: 1",
        f"parent: {'ab' * 32}", "at: '2026-01-02T03:04:05Z'", "by: t"]
    for kind, data, sid in ((ARTIFACTS, raw, "a-1"), (LINES, line_raw, "default")):
        assert kind.parse(data, "x.yaml")[0] == sid


def test_stream_folders_report_strays_for_every_kind(ledger: Ledger, tmp_path: Path) -> None:
    new_artifact(ledger)
    lifecycle.park(ledger, "default", ["x"])
    for kind, base in ((ARTIFACTS, ledger.artifacts_dir), (LINES, ledger.lines_dir)):
        (base / "stray.yaml").write_text("x: 1\n")
        os.symlink(tmp_path, base / "linked")
        ids, problems = stream_ids(kind, base, kind.folder)
        assert len(ids) == 1
        assert sorted(str(p) for p in problems) == [
            f"{kind.folder}/linked: unexpected symlink in {kind.folder}/",
            f"{kind.folder}/stray.yaml: unexpected file in {kind.folder}/",
        ]
