"""yamlio: byte-stable dumps (snapshots), safe strict loads, and property tests of the parser."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gptme_factory.errors import InvalidRecord
from gptme_factory.ledger import yamlio
from gptme_factory.ledger.kinds import ARTIFACTS
from gptme_factory.ledger.records import EventHeader, Intake, StageStarted

AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
AID = "fix-login-timeout-8c1f2a"

INTAKE_YAML = """\
kind: intake
schema_version: 1
artifact: fix-login-timeout-8c1f2a
title: Fix login timeout
problem: |
  Users wait 30 s at the login form.
  Some of them give up.
demand: gh:acme/app#42
consumers:
- erik
- ops team
acceptance:
- login succeeds under 2 s
- 'no: colons # or hashes lost'
line: default
classification: factory_run
created_at: '2026-01-02T03:04:05Z'
created_by: tester
"""

EVENT_YAML = """\
kind: stage_started
schema_version: 1
artifact: fix-login-timeout-8c1f2a
seq: 1
parent: 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
at: '2026-01-02T03:04:05Z'
by: tester
stage: scout
role: scout
cell: fix-login-timeout-8c1f2a.scout.ab12
attempt: 1
retry_note: |-
  first line
  second line
"""


def sample_intake() -> Intake:
    return Intake(
        artifact=AID, title="Fix login timeout",
        problem="Users wait 30 s at the login form.\nSome of them give up.\n",
        demand="gh:acme/app#42", consumers=["erik", "ops team"],
        acceptance=["login succeeds under 2 s", "no: colons # or hashes lost"],
        created_at=AT, created_by="tester",
    )


HEADER = EventHeader(kind="stage_started", seq=1, parent="0123456789abcdef" * 4, at=AT,
                     by="tester")


def sample_event() -> StageStarted:
    return StageStarted(stage="scout", role="scout", cell=f"{AID}.scout.ab12", attempt=1,
                        retry_note="first line\nsecond line")


def parse_record(raw: bytes, source: str, expect_intake: bool) -> Any:
    """A root (intake) or an event file, parsed as the ledger reads them."""
    if expect_intake:
        return ARTIFACTS.parse_root(raw, source)
    return ARTIFACTS.parse(raw, source)[2]


def test_intake_snapshot() -> None:
    raw = yamlio.dumps(sample_intake().model_dump(mode="json"))
    assert raw.decode() == INTAKE_YAML
    assert Intake.model_validate(yamlio.loads(raw, "intake.yaml")) == sample_intake()


def test_event_snapshot_kind_leads() -> None:
    raw = ARTIFACTS.dump(AID, HEADER, sample_event())
    assert raw.decode() == EVENT_YAML
    assert ARTIFACTS.parse(raw, "e.yaml") == (AID, HEADER, sample_event())


def test_dumps_is_stable_and_hook_clean() -> None:
    data: dict[str, Any] = {"b": "tail  ", "a": "x\ny", "e": "", "l": [], "m": {}, "n": None, "t": True, "u": "é"}
    first = yamlio.dumps(data)
    assert first == yamlio.dumps(dict(data))
    text = first.decode()
    assert text.splitlines()[0].startswith("b:")  # key order as given, never sorted
    assert text.endswith("\n") and not text.endswith("\n\n")
    assert all(line == line.rstrip() for line in text.splitlines())
    assert "a: |-\n  x\n  y\n" in text and "u: é\n" in text
    assert yamlio.loads(first, "s") == data


@pytest.mark.parametrize("value", ["a \nb", "a\nb ", "\ttab\nx", " lead\nx", "x\n\n"])
def test_multiline_edge_cases_keep_content_and_no_trailing_space(value: str) -> None:
    raw = yamlio.dumps({"v": value})
    assert all(line == line.rstrip(" \t") for line in raw.decode().splitlines())
    assert yamlio.loads(raw, "s") == {"v": value}


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (b"a: &x [1]\nb: *x\n", "anchors and aliases"),
        (b"a: &x 1\n", "anchors and aliases"),
        (b"a: &a [1,1,1]\nb: &b [*a,*a,*a]\nc: [*b,*b,*b]\n", "anchors and aliases"),
        (b"a: [" + b"[" * 70 + b"]" * 70 + b"]\n", "nested deeper than"),
        (b"[" * 100_000, "nested deeper than"),
        (b"- " * 60_000 + b"x", "nested deeper than"),
        (b"a: \xff\xfe\n", "not valid UTF-8 at byte 3"),
        (b"- a\n- b\n", "expected a mapping of fields, got list"),
        (b"just text\n", "expected a mapping of fields, got str"),
        (b"", "got empty"),
        (b"a: [1\n", "malformed YAML"),
        (b"a: 1\n---\nb: 2\n", "malformed YAML"),
        (b"a: 1\na: 2\n", "duplicate key 'a'"),
        (b"a: !!python/object:os.system x\n", "could not determine a constructor"),
        (b"a: !!binary aGk=\n", "could not determine a constructor"),
        (b"a: !!set {1}\n", "could not determine a constructor"),
        (b"a: !!int nope\n", "bad value"),
        (b"a: !!bool maybe\n", "bad value"),
        (b"a: \x00\n", "malformed YAML"),
    ],
)
def test_loads_rejects_with_message_naming_source(raw: bytes, needle: str) -> None:
    with pytest.raises(InvalidRecord) as exc:
        yamlio.loads(raw, "factory/artifacts/x/0001-bad.yaml")
    assert exc.value.source == "factory/artifacts/x/0001-bad.yaml"
    assert needle in str(exc.value)
    assert str(exc.value).startswith("invalid record in factory/artifacts/x/0001-bad.yaml")


def test_loads_rejects_oversized_before_parsing() -> None:
    raw = b"a: " + b"x" * 2000 + b"\n"
    with pytest.raises(InvalidRecord, match=r"over the 1000-byte limit"):
        yamlio.loads(raw, "big.yaml", max_bytes=1000)
    assert yamlio.loads(raw, "big.yaml", max_bytes=4000)["a"] == "x" * 2000


def test_loads_keeps_timestamps_as_text_and_allows_quoted_stars() -> None:
    data = yamlio.loads(b"a: 2001-13-01\nb: 2026-01-02T03:04:05Z\nc: '*x & y'\n", "s")
    assert data == {"a": "2001-13-01", "b": "2026-01-02T03:04:05Z", "c": "*x & y"}


def test_loads_any_json_and_yaml() -> None:
    assert yamlio.loads_any(b'{"a": [1, "x"]}', "h") == {"a": [1, "x"]}
    assert yamlio.loads_any(b"a: 1\n", "h") == {"a": 1}
    with pytest.raises(InvalidRecord, match="duplicate key"):
        yamlio.loads_any(b'{"a": 1, "a": 2}', "h")
    with pytest.raises(InvalidRecord, match="nested deeper"):
        yamlio.loads_any(b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}", "h")
    with pytest.raises(InvalidRecord, match="over the"):
        yamlio.loads_any(b'{"a": "' + b"x" * 100 + b'"}', "h", max_bytes=50)


# -- properties ------------------------------------------------------------------------------

scalars = st.none() | st.booleans() | st.integers() | st.text()
json_ish = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.text(), json_ish, max_size=6))
def test_dumps_loads_round_trip(data: dict[str, Any]) -> None:
    raw = yamlio.dumps(data)
    text = raw.decode("utf-8")
    assert text.endswith("\n")
    assert all(line == line.rstrip(" \t") for line in text.split("\n"))
    assert yamlio.loads(raw, "prop.yaml") == data
    assert yamlio.dumps(yamlio.loads(raw, "prop.yaml")) == raw


yamlish = st.text(alphabet=list("ab: -?[]{},&*!|>'\"#\n\t%@`0123.") + ["\x85", "é", "\x00"])


@settings(max_examples=400, deadline=None, derandomize=True, database=None)
@given(st.one_of(st.binary(max_size=300), yamlish.map(lambda t: t.encode("utf-8"))),
       st.booleans())
def test_record_parser_only_raises_invalid_record(raw: bytes, intake: bool) -> None:
    try:
        record = parse_record(raw, "fuzz.yaml", expect_intake=intake)
    except InvalidRecord as exc:
        assert exc.source == "fuzz.yaml" and exc.problems
    else:  # pragma: no cover - random bytes are almost never a valid record
        assert record.kind == ("intake" if intake else record.kind)


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(json_ish, st.booleans())
def test_record_parser_on_wellformed_yaml_of_any_shape(value: Any, intake: bool) -> None:
    raw = yamlio.dumps({"kind": "abandoned", "extra": value})
    with pytest.raises(InvalidRecord) as exc:
        parse_record(raw, "shape.yaml", expect_intake=intake)
    assert any("extra" in p or "kind" in p for p in exc.value.problems)
