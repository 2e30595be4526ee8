"""The benchmark's realistic brain (bench/realgen.py) is what the factory really writes.

A real foreman run (scripted cells on real gptme, a verify that fails once and sends the
build back, then every stage passing, then a close) is the reference:

- the generator's encoder, given that run's decisions (payloads, times, authors, briefs),
  writes the same record files, names, commit subjects, bodies and trailers, byte for byte;
- the generator's own life of an artifact takes the same decisions in the same commits —
  the same events per commit, the same kinds of files beside them — and its records have the
  same fields in the same order as the real ones, kind by kind.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest

from gptme_factory.demo.scripted import run_scripted
from gptme_factory.ledger import yamlio
from gptme_factory.ledger.kinds import ARTIFACTS
from gptme_factory.ledger.store import Ledger
from gptme_factory.line import engine
from gptme_factory.line.verify import verify_ledger
from tests.cells_helpers import cell_env, sample  # noqa: F401 - fixtures
from tests.conftest import git

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import realgen  # noqa: E402

Commit = tuple[str, dict[str, bytes]]  # message, added files


def commits_since_intake(ledger: Ledger, aid: str) -> list[Commit]:
    """Every commit from the artifact's intake on: its message and the files it added."""
    root = ledger.repo.root
    first = ledger.history([aid])[0].commit
    ids = git(root, "rev-list", "--reverse", "--ancestry-path", f"{first}^..HEAD").split()
    out: list[Commit] = []
    for c in ids:
        message = git(root, "show", "-s", "--format=%B", c).rstrip("\n") + "\n"
        added = git(root, "diff-tree", "-r", "--no-commit-id", "--name-only",
                    "--diff-filter=A", "--root", c).split()
        files = {p: ledger.repo.git("show", f"{c}:{p}") for p in added}
        out.append((message, files))
    return out


def decisions_of(commits: list[Commit]) -> list[realgen.Decision]:
    """The decisions the real run recorded, read back from its commits."""
    out = []
    for _, files in commits:
        intake = None
        events: list[tuple[Any, str]] = []
        times = []
        extra = {}
        for path, raw in sorted(files.items()):
            name = path.rpartition("/")[2]
            if name == ARTIFACTS.root_file:
                intake = ARTIFACTS.parse_root(raw, path)
            elif re.fullmatch(r"\d{4}-[a-z_]+-[0-9a-f]{12}\.yaml", name):
                sid, header, payload = ARTIFACTS.parse(raw, path)
                events.append((header.seq, (payload, header.by), header.at))
            else:
                extra[path] = raw
        events.sort(key=lambda e: e[0])
        times = [at for _, _, at in events]
        aid = intake.artifact if intake else sid
        out.append(realgen.Decision(aid, intake.created_at if intake else times[0],
                                    [e for _, e, _ in events], intake=intake, files=extra,
                                    times=times or None))
    return out


def shape(message: str, files: dict[str, bytes], aid: str) -> tuple[list[str], list[str]]:
    """What a commit holds, ids and hashes aside: its events' kinds and its other files."""
    kinds = re.findall(r"^Factory-Event: (\S+)$", message, re.M)
    other = sorted(re.sub(rf"{re.escape(aid)}(\.[a-z]+\.[0-9a-f]{{4}})?", "ID",
                          re.sub(r"/[0-9a-f]{2}/[0-9a-z-]/", "/B/S/", p))
                   for p in files if not p.endswith(".yaml"))
    return kinds, [re.sub(r"ID\.[a-z]+\.md$", "ID.TYPE.md", p) for p in other]


def keys_by_kind(commits: list[Commit]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for _, files in commits:
        for path, raw in files.items():
            if path.endswith(".yaml"):
                data = yamlio.loads(raw, path)
                out.setdefault(str(data["kind"]), list(data))
    return out


@pytest.mark.slow
def test_the_realistic_brain_is_what_the_factory_writes(
        sample: tuple[Ledger, str]) -> None:  # noqa: F811 - the fixture
    ledger, aid = sample
    stopped = run_scripted(ledger, aid, "sample-rework")
    assert [s.kind for s in stopped] == ["done"]
    engine.close(ledger, aid, terminal="done: the demand is met, nothing follows")
    assert verify_ledger(ledger) == []
    real = commits_since_intake(ledger, aid)

    # 1. the encoder writes exactly these files and messages for these decisions
    encoded = realgen.encode_all(decisions_of(real), ledger.rel)
    assert len(encoded) == len(real)
    for (msg, files), (gen_files, gen_msg) in zip(real, encoded, strict=True):
        assert gen_msg == msg
        assert gen_files == files

    # 2. the generator's own artifacts take the same decisions, commit by commit
    reference = [shape(m, f, aid) for m, f in real]
    for i in range(2000):
        lived = realgen.live(i, root=str(ledger.repo.root))
        kinds = [e.kind for d in lived.decisions for e, _ in d.events]
        if "closed" in kinds and "rework" in kinds:
            break
    else:
        pytest.fail("no generated artifact went through a rework to its close")
    made = [(msg, files) for files, msg in realgen.encode_all(lived.decisions)]
    assert [shape(m, f, lived.decisions[0].aid) for m, f in made] == reference
    # the same fields in the same order, kind by kind (what a cell or a model chose to leave
    # out aside: a mock model reports no cost)
    real_keys, made_keys = keys_by_kind(real), keys_by_kind(made)
    assert sorted(made_keys) == sorted(real_keys)
    for kind, keys in real_keys.items():
        assert [k for k in made_keys[kind] if k != "cost_usd"] == keys, kind
    # and the generator's subjects say the same decisions (titles and failure texts aside;
    # a subject is clipped at 72 characters, and the ids' lengths differ)
    def said(message: str) -> str:
        text = message.splitlines()[0].split(": ", 1)[1].removesuffix("...")
        return re.sub(r"(intake|failed): .*", r"\1: X", text)

    for mine, theirs in zip([said(m) for m, _ in made], [said(m) for m, _ in real], strict=True):
        assert mine.startswith(theirs) or theirs.startswith(mine), (mine, theirs)
