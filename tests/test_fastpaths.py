"""The performance paths give exactly what the plain paths give.

- yamlio's fast builder and memoized resolver load what PyYAML's constructor loads (values
  and errors), and its cheap anchor pre-check never lets an anchor or alias through;
- gitstore builds the same tree objects as `git mktree` and computes the same ids as git;
- the status cache follows git states a stat-only cache would miss: a staged in-place edit,
  a checkout of an older commit, a parked line.
"""

from __future__ import annotations

import os
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gptme_factory.errors import InvalidRecord
from gptme_factory.ledger import gitstore, yamlio
from gptme_factory.ledger.records import Abandoned
from gptme_factory.ledger.store import Ledger
from gptme_factory.line.intake import intake as new_intake
from gptme_factory.views import statuscache
from gptme_factory.views.status import load_line_statuses, load_summaries

# -- yamlio -------------------------------------------------------------------------------


def full_load(text: str) -> Any:
    """What yamlio gave before the fast builder: PyYAML's constructor with yamlio's loader."""
    return yaml.load(text, Loader=yamlio._Loader)  # noqa: S506 - safe loader


def outcome(fn: Any, text: str) -> tuple[str, Any]:
    try:
        return "ok", fn(text)
    except Exception as exc:  # noqa: BLE001 - comparing failures too
        return "error", type(exc).__name__


TRICKY = [
    "a: 1\nb: 007\nc: 0\nd: -3\ne: 1_000\nf: 0x1F\ng: 1:30\nh: +4\n",
    "a: yes\nb: No\nc: ~\nd: null\ne: 1.5\nf: .inf\ng: 1e3\nh: '1'\n",
    "a: 2026-01-02\nb: 2026-01-02T03:04:05Z\nc: '2026-01-02'\n",
    "base: &b {x: 1}\nderived:\n  <<: *b\n  y: 2\n",
    "a: {<<: {x: 1}, y: 2}\n",
    "a: 1\na: 2\n",
    "? [1, 2]\n: complex\n",
    "a: !!str 12\nb: !!int '7'\nc: !!float 1\nd: !!binary aGk=\n",
    "a: !custom x\n",
    "a: !!set {x, y}\n",
    "=: value key\n",
    "1: int key\nnull: null key\ntrue: bool key\n",
    "a: [1, [2, [3, {b: c}]]]\n",
    "- a\n- b\n",
    "",
    "just a string\n",
    "a: 'quoted: yes'\nb: \"x\\ty\"\nc: |\n  lit\n  eral\nd: >\n  fold\n  ed\n",
    "a: !!int 12x\n",
    "a: [\n",
    "a: b\n---\nc: d\n",
    "a: ０１\n",
    "a: " + "[" * 70 + "]" * 70 + "\n",
]


@pytest.mark.parametrize("text", TRICKY)
def test_fast_builder_equals_the_full_constructor(text: str) -> None:
    fast = outcome(lambda t: (lambda v: full_load(t) if v is yamlio._FULL else v)(
        yamlio._load_fast(t)), text)
    assert fast == outcome(full_load, text)


def old_loads(text: str) -> tuple[str, Any]:
    """yamlio.loads before the fast paths: event scan, PyYAML's constructor, depth walk."""
    try:
        if ("&" in text or "*" in text) and yamlio._scan_events(text):
            return "invalid", None
        data = full_load(text)
    except (yaml.YAMLError, ValueError, TypeError, KeyError, OverflowError, RecursionError):
        return "invalid", None
    if yamlio._too_deep(data) or not isinstance(data, dict):
        return "invalid", None
    return "ok", data


def new_loads(text: str) -> tuple[str, Any]:
    try:
        return "ok", yamlio.loads(text.encode(), "t.yaml")
    except InvalidRecord:
        return "invalid", None


@pytest.mark.parametrize("text", TRICKY)
def test_loads_equals_the_full_constructor(text: str) -> None:
    assert new_loads(text) == old_loads(text)


def test_the_memoized_resolver_agrees_with_pyyaml() -> None:
    loader = yamlio._Loader("")
    plain = yaml.SafeLoader("")
    for value in ["yes", "no", "1", "007", "1.5", "~", "null", "2026-01-02", "abc", "", "<<",
                  "=", "0x1F", ".inf", "-.5", "True", "1_0", "1:30"]:
        for implicit in [(True, False), (False, True), (False, False)]:
            expect = plain.resolve(yaml.ScalarNode, value, implicit)
            assert loader.resolve(yaml.ScalarNode, value, implicit) == expect
            assert loader.resolve(yaml.ScalarNode, value, implicit) == expect  # memoized
    assert loader.resolve(yaml.MappingNode, None, (True, True)) == yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG
    assert loader.resolve(yaml.SequenceNode, None, (True, True)) == yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG
    loader.dispose()
    plain.dispose()


ANCHORED = [
    "a: &x 1\nb: *x\n", "- &x a\n- *x\n", "&x a: 1\n", "a:\n  &x b: 1\n", "[&x a, *x]\n",
    "{a: &x 1, b: *x}\n", "a: !!str &x v\n", "\ufeff&x a: 1\n", "a: # c\n  &x v\n",
    "a:\t&x v\n", "? &x k\n: v\n", "--- &x\na: 1\n", "a: [1,\n  &x 2]\n", "a: &x\n  b: 1\n",
]


@pytest.mark.parametrize("text", ANCHORED)
def test_every_anchor_position_is_caught(text: str) -> None:
    assert yamlio._MAYBE_ANCHOR.search(text)
    with pytest.raises(InvalidRecord, match="anchors and aliases|malformed YAML"):
        yamlio.loads(text.encode(), "t.yaml")


@pytest.mark.parametrize("text", ["cmd: pytest -q && ruff check .\n", "notes: use **bold**\n",
                                  "a: 2 * 3\n", "a: 'x & y'\n", "k: v # &c\n"])
def test_harmless_stars_and_ampersands_skip_the_event_scan(text: str) -> None:
    assert not yamlio._MAYBE_ANCHOR.search(text)
    assert yamlio.loads(text.encode(), "t.yaml") == full_load(text)


def test_a_shared_collection_is_refused_even_past_the_pre_check() -> None:
    loader = yamlio._Loader("a: &x [1, 2]\nb: *x\n")
    node = loader.get_single_node()
    with pytest.raises(yamlio._SharedNode):
        yamlio._build(loader, node, 1, set())
    loader.dispose()


leaf = st.one_of(st.integers(-5, 10**6), st.booleans(), st.none(),
                 st.text(alphabet="ab &*-:?!#[]{},'\"\n", max_size=8))
shared_docs = st.recursive(leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text("abc", min_size=1, max_size=3),
                                                 inner, max_size=3)), max_leaves=8)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(shared_docs, st.sampled_from([True, False, None]))
def test_dumped_aliases_are_always_caught(value: Any, flow: bool | None) -> None:
    shared = [value, 1] if not isinstance(value, (list, dict)) or value else [[0], 1]
    doc = {"x": shared, "y": shared}  # PyYAML's dumper writes &id001 / *id001 for this
    text = yaml.safe_dump(doc, default_flow_style=flow)
    assert "&id" in text
    assert yamlio._MAYBE_ANCHOR.search(text)
    with pytest.raises(InvalidRecord):
        yamlio.loads(text.encode(), "t.yaml")


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(shared_docs, st.sampled_from([True, False, None]))
def test_fast_and_full_loads_agree_on_dumped_documents(value: Any, flow: bool | None) -> None:
    text = yaml.dump({"v": value, "w": [value]}, Dumper=yamlio._Dumper, default_flow_style=flow)
    assert new_loads(text) == old_loads(text)


# -- gitstore trees ---------------------------------------------------------------------------


def git(repo: Path, *args: str, input: bytes | None = None) -> bytes:
    return subprocess.run(["git", *args], cwd=repo, input=input, check=True,
                          capture_output=True).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    git(tmp_path, "init", "-q", "-b", "master")
    return tmp_path


def mktree(repo: Path, entries: dict[str, tuple[str, str]]) -> str:
    listing = b"".join(f"{mode} {'tree' if mode == '040000' else 'blob'} {oid}\t{name}".encode()
                       + b"\0" for name, (mode, oid) in entries.items())
    return git(repo, "mktree", "-z", "--missing", input=listing).decode().strip()


NAMES = st.text(alphabet="ab-._/0", min_size=1, max_size=4).filter(
    lambda n: "/" not in n and n not in (".", ".."))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(NAMES, st.booleans(), min_size=1, max_size=8),
       st.dictionaries(NAMES, st.booleans(), min_size=1, max_size=3))
def test_edited_trees_equal_git_mktree(repo: Path, before: dict[str, bool],
                                       change: dict[str, bool]) -> None:
    blob = git(repo, "hash-object", "-w", "--stdin", input=b"x\n").decode().strip()
    empty_tree = git(repo, "mktree", input=b"").decode().strip()

    def entry(is_dir: bool) -> tuple[str, str]:
        return ("040000", empty_tree) if is_dir else ("100644", blob)

    old = {n: entry(d) for n, d in before.items()}
    old_id = mktree(repo, old)
    content = git(repo, "cat-file", "tree", old_id)
    edits = {n.encode(): (b"40000" if d else b"100644", bytes.fromhex(entry(d)[1]))
             for n, d in change.items()}
    new = gitstore._edit_tree(content, edits, 20)
    expected = mktree(repo, {**old, **{n: entry(d) for n, d in change.items()}})
    assert new == git(repo, "cat-file", "tree", expected)


def test_tree_id_matches_git(repo: Path) -> None:
    files = {"intake.yaml": b"a: 1\n", "0001-x-0123456789ab.yaml": b"b: 2\n", "Z": b""}
    for name, data in files.items():
        (repo / name).write_bytes(data)
    git(repo, "add", *files)
    assert gitstore.tree_id(files) == git(repo, "write-tree").decode().strip()


# -- the status cache against git states -------------------------------------------------------


def settle(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    """No racy window in these tests: every directory is trusted as soon as it is cached."""
    monkeypatch.setattr(statuscache, "RACY_NS", 0)
    assert ledger


def board(ledger: Ledger) -> dict[str, dict[str, Any]]:
    """`status` through the cache, asserted equal to a cold read."""
    fresh = Ledger.open(ledger.repo.root)
    cached = [s.to_json() for s in load_summaries(fresh)]
    assert cached == [s.to_json() for s in load_summaries(fresh, use_cache=False)]
    return {r["artifact"]: r for r in cached}


def test_staged_in_place_edit_with_restored_stat_is_seen(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    settle(ledger, monkeypatch)
    aid = new_intake(ledger, title="Alpha", demand="d", consumers=["c"], acceptance=["a"]).artifact
    board(ledger)
    intake = ledger.artifact_dir(aid) / "intake.yaml"
    st_before = intake.stat()
    intake.write_bytes(intake.read_bytes().replace(b"Alpha", b"Omega"))
    os.utime(intake, ns=(st_before.st_atime_ns, st_before.st_mtime_ns))
    # Stage exactly these bytes, index == working tree, both != HEAD. (Not `git add`: this
    # git compares stat times by the second, so under load it may take the edited file,
    # same size and mtime, for the one it indexed a second earlier, and stage nothing.)
    oid = git(ledger.repo.root, "hash-object", "-w", str(intake)).decode().strip()
    git(ledger.repo.root, "update-index", "--cacheinfo",
        f"100644,{oid},{ledger.artifact_rel(aid)}/intake.yaml")
    assert git(ledger.repo.root, "diff", "--cached", "--name-only").decode().split() == \
        [f"{ledger.artifact_rel(aid)}/intake.yaml"]
    assert board(ledger)[aid]["title"] == "Omega"


def test_checkout_of_an_older_commit_and_back(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    settle(ledger, monkeypatch)
    aid = new_intake(ledger, title="Beta", demand="d", consumers=["c"], acceptance=["a"]).artifact
    before = git(ledger.repo.root, "rev-parse", "HEAD").decode().strip()
    with ledger.locked():
        chain = ledger.read(aid)
        ledger.record(chain, Abandoned(reason="no demand"))
    assert board(ledger)[aid]["state"] == "abandoned"
    git(ledger.repo.root, "checkout", "-q", before)
    assert board(ledger)[aid]["state"] == "idea"
    git(ledger.repo.root, "checkout", "-q", "master")
    assert board(ledger)[aid]["state"] == "abandoned"


def test_line_statuses_follow_a_park(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    from gptme_factory.line.lifecycle import park
    from gptme_factory.views.linestatus import line_statuses

    settle(ledger, monkeypatch)
    now = datetime.now(timezone.utc)

    def both() -> list[dict[str, Any]]:
        fresh = Ledger.open(ledger.repo.root)
        cached = [x.to_json() for x in load_line_statuses(fresh, [], now)]
        assert cached == [x.to_json() for x in line_statuses(fresh, [], now)]
        return cached

    assert both()[0]["state"] == "active"
    park(ledger, "default", ["a customer asks again"])
    assert both()[0]["state"] == "parked"
