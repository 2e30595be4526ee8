"""The ledger: intake (demand first), ids and their resolution, the append-only hash chain."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from gptme_factory.errors import (
    ArtifactNotFound,
    ConfigError,
    InvalidRecord,
    LedgerConflict,
    UsageError,
)
from gptme_factory.ledger import yamlio
from gptme_factory.ledger.layout import fanned
from gptme_factory.ledger.records import Abandoned, Intake, Rejected
from gptme_factory.ledger.store import Ledger
from gptme_factory.ledger.stream import sha256
from gptme_factory.line.intake import intake as new_intake
from gptme_factory.line.verify import verify_ledger
from tests.conftest import git
from tests.ledger_helpers import (
    DEMAND,
    abandon,
    append_next,
    commit_count,
    event,
    git_state,
    new_artifact,
)

ID_RE = re.compile(r"^[a-z0-9-]+-[0-9a-f]{6}$")


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ({"demand": ""}, "a demand source (--demand)"),
        ({"demand": "   "}, "a demand source (--demand)"),
        ({"consumers": []}, "a named consumer (--consumer)"),
        ({"consumers": ["", " "]}, "a named consumer (--consumer)"),
        ({"acceptance": []}, "an acceptance criterion (--accept)"),
    ],
)
def test_intake_needs_demand_consumer_and_acceptance(
    ledger: Ledger, override: dict[str, Any], needle: str
) -> None:
    root = ledger.repo.root
    head, before = git(root, "rev-parse", "HEAD"), git_state(root)
    with pytest.raises(UsageError, match=re.escape(needle)) as exc:
        new_intake(ledger, title="Fix login timeout", **{**DEMAND, **override})
    assert "nothing was written" in str(exc.value)
    assert git(root, "rev-parse", "HEAD") == head
    assert git_state(root) == before
    assert not ledger.artifacts_dir.exists()


@pytest.mark.parametrize(
    ("override", "error", "needle"),
    [
        ({"line": "nope"}, ConfigError, "unknown line 'nope'"),
        ({"classification": "hobby"}, InvalidRecord, "classification"),
        ({"title": ""}, InvalidRecord, "title"),
        ({"title": "x" * 501}, InvalidRecord, "title"),
    ],
)
def test_intake_invalid_fields_write_nothing(
    ledger: Ledger, override: dict[str, Any], error: type[Exception], needle: str
) -> None:
    count = commit_count(ledger.repo.root)
    kwargs = {"title": "Fix it", **DEMAND, **override}
    with pytest.raises(error, match=needle):
        new_intake(ledger, **kwargs)
    assert commit_count(ledger.repo.root) == count
    assert ledger.artifact_ids() == []


def test_intake_record_and_ids(ledger: Ledger) -> None:
    fixed = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    ledger.clock = lambda: fixed
    ids = {new_artifact(ledger, "Fix: Login Timeout!! (v2)") for _ in range(5)}
    assert len(ids) == 5
    for aid in ids:
        assert ID_RE.match(aid) and aid.startswith("fix-login-timeout-v2-")
    odd = new_intake(ledger, title="日本語 / ../etc", **DEMAND).artifact
    assert ID_RE.match(odd) and odd.startswith("etc-")
    aid = sorted(ids)[0]
    raw = (ledger.artifact_dir(aid) / "intake.yaml").read_bytes()
    intake = Intake.model_validate(yamlio.loads(raw, "intake"))
    assert raw == yamlio.dumps(intake.model_dump(mode="json"))  # the writer is byte-stable
    assert (intake.created_at, intake.created_by, intake.line) == (fixed, "tester", "default")
    assert sorted(ledger.artifact_ids()) == sorted([*ids, odd])


def test_resolve_exact_prefix_ambiguous_unknown(ledger: Ledger) -> None:
    a = new_intake(ledger, title="alpha one", **DEMAND).artifact
    b = new_intake(ledger, title="alpha two", **DEMAND).artifact
    assert ledger.resolve(a) == a
    assert ledger.resolve("alpha-t") == b
    assert ledger.resolve(a[:-2]) == a
    with pytest.raises(ArtifactNotFound) as exc:
        ledger.resolve("alpha")
    assert exc.value.candidates == sorted([a, b])
    assert a in str(exc.value) and b in str(exc.value) and "ambiguous" in str(exc.value)
    with pytest.raises(ArtifactNotFound, match="no artifact matches 'beta'"):
        ledger.resolve("beta")


@pytest.mark.parametrize(
    "query", ["../factory", "..", "a/b", "/etc/passwd", "x\0y", "", "  ", "UPPER", ".hidden"]
)
def test_resolve_and_read_refuse_path_like_ids(ledger: Ledger, query: str) -> None:
    new_artifact(ledger)
    with pytest.raises(UsageError, match="is not an artifact id"):
        ledger.resolve(query)
    with pytest.raises(UsageError):
        ledger.read(query)


def test_chain_links_parents_by_hash(ledger: Ledger) -> None:
    aid = new_artifact(ledger)
    first = append_next(ledger, aid)
    second = append_next(ledger, aid)
    chain = ledger.read(aid)
    assert chain.problems == []
    assert [e.path for e in chain.events] == [first.path, second.path]
    assert first.header.parent == chain.root.digest
    assert second.header.parent == first.digest
    name = Path(second.path).name
    assert name == f"0002-cell_finished-{second.digest[:12]}.yaml"
    assert second.digest == sha256((ledger.repo.root / second.path).read_bytes())
    assert verify_ledger(ledger) == []


def test_record_requires_the_lock_and_a_valid_payload(ledger: Ledger) -> None:
    aid = new_artifact(ledger)
    chain = ledger.read(aid)
    count = commit_count(ledger.repo.root)
    with pytest.raises(RuntimeError, match="requires the writer lock"):
        ledger.record(chain, Abandoned(reason="x"))
    with pytest.raises(InvalidRecord, match="reason: required field is missing"):
        Abandoned.build()
    with pytest.raises(InvalidRecord, match="mood: unknown field"):
        Abandoned.build(reason="x", mood="sad")
    with pytest.raises(InvalidRecord, match=r"abandoned event.*\n.*reason: String should have"):
        Abandoned.build(reason="")
    assert commit_count(ledger.repo.root) == count
    assert ledger.read(aid).events == []


def test_append_refuses_a_chain_with_integrity_problems(ledger: Ledger) -> None:
    aid = new_artifact(ledger)
    first = append_next(ledger, aid)
    path = ledger.repo.root / first.path
    path.write_bytes(path.read_bytes().replace(b"attempt: 1", b"attempt: 2"))
    count = commit_count(ledger.repo.root)
    with ledger.locked(), pytest.raises(LedgerConflict, match="integrity check"):
        ledger.record(ledger.read(aid), Abandoned(reason="x"))
    assert commit_count(ledger.repo.root) == count


def test_commit_subject_is_one_short_line_even_for_multiline_titles(ledger: Ledger) -> None:
    title = "Fix it\n\nFactory-Artifact: other-000000"
    aid = new_intake(ledger, title=title, **DEMAND).artifact
    body = git(ledger.repo.root, "log", "-1", "--format=%B")
    scope = f"fix-{aid[-6:]}"
    assert body.splitlines()[0] == f"factory({scope}): intake: Fix it Factory-Artifact: other-000000"
    assert body.splitlines()[1] == ""
    trailers = git(ledger.repo.root, "log", "-1", "--format=%(trailers:key=Factory-Artifact)")
    assert trailers.strip() == f"Factory-Artifact: {aid}"
    long = new_intake(ledger, title="y" * 200, **DEMAND).artifact
    subject = git(ledger.repo.root, "log", "-1", "--format=%s").strip()
    assert len(subject) == 72 and subject.endswith("..."), subject
    assert subject.startswith(f"factory(yyyyyyyyyyyy-{long[-6:]}): intake: yyy")


def test_read_reports_but_skips_stray_entries_when_tolerant(ledger: Ledger) -> None:
    aid = new_artifact(ledger)
    adir = ledger.artifact_dir(aid)
    (adir / "notes.txt").write_text("hi\n")
    (adir / "0009-abandoned-0123456789ab.yaml").mkdir()
    (adir / ".DS_Store").write_bytes(b"\0")
    assert ledger.read(aid).problems == []  # strict readers ignore strays
    problems = [str(p) for p in ledger.read(aid, tolerant=True).problems]
    assert any("notes.txt: not a ledger record (unexpected file)" in p for p in problems)
    assert any("0009-abandoned-0123456789ab.yaml: not a ledger record (unexpected directory)"
               in p for p in problems)
    assert not any(".DS_Store" in p for p in problems)


def test_abandon_then_more_events_is_illegal_for_verify(ledger: Ledger) -> None:
    aid = new_artifact(ledger)
    abandon(ledger, aid, "not needed")
    with ledger.locked():
        ledger.record(ledger.read(aid), Rejected(reason="also"))
    problems = verify_ledger(ledger)
    assert len(problems) == 1
    assert re.fullmatch(rf"factory/artifacts/{fanned(aid)}/0002-rejected-[0-9a-f]{{12}}\.yaml",
                        problems[0].where)
    assert "illegal transition" in problems[0].message


@pytest.mark.parametrize("field", ["parent", "artifact", "seq", "at", "by", "schema_version"])
def test_the_ledger_owns_the_event_header(ledger: Ledger, field: str) -> None:
    new_artifact(ledger)
    count = commit_count(ledger.repo.root)
    with pytest.raises(InvalidRecord, match=f"{field}: unknown field"):
        Abandoned.build(reason="x", **{field: "0" * 64})
    with pytest.raises(ValueError, match="Extra inputs"):
        event({"kind": "abandoned", "reason": "x", field: "0" * 64})
    assert commit_count(ledger.repo.root) == count


def test_symlinks_are_never_followed(ledger: Ledger, tmp_path: Path) -> None:
    secret = tmp_path / "secret.yaml"
    secret.write_text("kind: abandoned\nreason: outside\n")
    aid = new_artifact(ledger)
    adir = ledger.artifact_dir(aid)
    (adir / "0001-abandoned-0123456789ab.yaml").symlink_to(secret)
    assert ledger.read(aid).events == []
    assert any("unexpected symlink" in str(p) for p in ledger.read(aid, tolerant=True).problems)
    other = new_artifact(ledger, "Other")
    intake = ledger.artifact_dir(other) / "intake.yaml"
    intake.unlink()
    intake.symlink_to(adir / "intake.yaml")
    with pytest.raises(InvalidRecord, match="is a symlink"):
        ledger.read(other)
    problems = verify_ledger(ledger)
    assert {p.where for p in problems} == {
        f"factory/artifacts/{fanned(aid)}/0001-abandoned-0123456789ab.yaml",
        f"factory/artifacts/{fanned(other)}/intake.yaml",
    }


def test_append_refuses_a_chain_read_before_the_lock(ledger: Ledger) -> None:
    aid = new_artifact(ledger)
    stale = ledger.read(aid)  # read outside the lock ...
    append_next(ledger, aid)  # ... and someone else appends meanwhile
    count = commit_count(ledger.repo.root)
    with ledger.locked(), pytest.raises(LedgerConflict, match="has moved on since it was read"):
        ledger.record(stale, Abandoned(reason="x"))
    assert commit_count(ledger.repo.root) == count
    assert verify_ledger(ledger) == []


def test_the_actor_is_the_git_identity(factory_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GPTME_FACTORY_ACTOR")
    ledger = Ledger.open(factory_repo)
    aid = new_artifact(ledger)
    assert ledger.read(aid).root.record.created_by == "Factory Test <test@factory.invalid>"  # type: ignore[union-attr]
    assert abandon(ledger, aid, "gone").by == "Factory Test <test@factory.invalid>"
