"""The offline demo: the whole line with scripted cells on real gptme (mock/echo), gptodo, tmux."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from gptme_factory.cli import main
from gptme_factory.demo.run import board_line, prepare, run_demo
from gptme_factory.demo.sample import DEMAND
from gptme_factory.ledger.store import Ledger, short_id
from gptme_factory.line.verify import verify_ledger
from tests.conftest import git


def test_prepare_makes_a_wired_brain_repo_with_demand(tmp_path: Path) -> None:
    repo = prepare(tmp_path / "brain")
    root = repo.root
    assert not (root / "sample").exists()  # the project is its own repo, the brain's target
    assert repo.project == tmp_path / "deploy-bot" and repo.upstream is not None
    assert (repo.project / "sample" / "durations.py").is_file()
    assert git(repo.project, "remote", "get-url", "origin").strip() == str(repo.upstream)
    assert git(repo.upstream, "rev-parse", "main") == git(repo.project, "rev-parse", "HEAD")
    ledger = Ledger.open(root)
    assert ledger.read(repo.artifact).root.record.target == "deploy-bot"  # by the slug
    assert ledger.config.targets["deploy-bot"].slug == "acme/deploy-bot"
    assert (root / "skills" / "factory-run" / "SKILL.md").is_file()
    assert "gptme_factory.plugin.tools" in (root / "gptme.toml").read_text()
    assert git(root, "config", "user.email").strip() == "demo@gptme-factory.invalid"
    assert git(root, "status", "--porcelain") == ""
    assert repo.artifact in Ledger.open(root).artifact_ids()
    assert board_line(repo.ledger, repo.artifact) == (
        "scout:pending  build:waiting  verify:waiting  package:waiting  measure:waiting")


def test_keep_dir_must_be_new_or_empty(tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    res = CliRunner().invoke(main, ["demo", "--keep", str(tmp_path / "full")])
    assert res.exit_code == 2 and "not empty" in res.output


@pytest.mark.slow
def test_demo_runs_the_whole_line(tmp_path: Path) -> None:
    out = io.StringIO()
    console = Console(file=out, width=200, soft_wrap=True)
    code = run_demo(console, keep=tmp_path / "demo")
    text = out.getvalue()
    assert code == 0, text
    keep, project, upstream = (tmp_path / "demo" / p for p in ("brain", "deploy-bot",
                                                                "upstream/deploy-bot.git"))
    ledger = Ledger.open(keep)
    [aid] = ledger.artifact_ids()
    assert verify_ledger(ledger) == []
    # the line ended in the target: its branch pushed to the upstream, at the verified commit
    verified = [e.event for e in ledger.read(aid).events if e.event.kind == "gate_passed"
                and e.event.gate == "evidence"][0]
    assert verified.target is not None and verified.target.slug == "acme/deploy-bot"
    pushed = git(upstream, "for-each-ref", "--format=%(refname:short) %(objectname)",
                 "refs/heads/factory/").split()
    assert pushed[1] == verified.commit
    assert not [p for p in git(upstream, "ls-tree", "-r", "--name-only", pushed[0]).split()
                if p.startswith("factory/")]
    assert f"gh pr create --repo acme/deploy-bot --head {pushed[0]} --base main" in text
    assert "**Target:** `deploy-bot`" in text  # the PR text was rendered
    assert git(project, "status", "--porcelain") == ""  # the project's clone is untouched
    assert sorted(git(project, "branch", "--format=%(refname:short)").split()) == [pushed[0], "main"]
    assert (ledger.runtime_dir / "envs" / "deploy-bot").is_dir()  # its own environment
    # the live board went through every stage
    assert "scout:running" in text and "build:running" in text and "measure:running" in text
    assert "scout:passed  build:passed  verify:passed  package:passed  measure:passed" in text
    # every typed handoff is printed
    for stage, kind in (("scout", "scout_memo"), ("build", "builder_patch"),
                        ("verify", "verifier_report"), ("package", "release_package"),
                        ("measure", "outcome_report")):
        assert f"--- [{stage}] {kind}" in text
    # the audit trail is git history: one commit per decision, ending with the close
    subjects = git(keep, "log", "--format=%s").splitlines()
    sid = short_id(aid)
    line = subjects[:subjects.index(f"factory({sid}): intake: {DEMAND['title']}") + 1]
    assert line[0] == f"factory({sid}): closed: terminal"
    assert len(line) <= 14, line  # intake to close: at most half of one commit per event
    assert all(len(s) <= 72 for s in subjects), subjects
    for stage, after in (("scout", "build"), ("build", "verify"), ("verify", "package")):
        assert f"factory({sid}): {stage} passed -> " in "\n".join(line)
        assert any(s.startswith(f"factory({sid}): {stage} passed") and f"{after} started" in s
                   for s in line), line  # the verdict and the next cell: one commit
    assert sum(s.endswith(")") and "handoff (" in s for s in line) == 5
    for stage in ("scout", "build", "verify", "package", "measure"):
        assert f"{aid}: gate {stage} passed" in text
    assert f"{aid}: closed in " in text
    # a real gptme ran each cell: its conversation log recorded the scripted actions
    events = ledger.read(aid).events
    finished = [e.event for e in events if e.event.kind == "cell_finished"]
    assert [f.outcome for f in finished] == ["handoff"] * 5
    assert all(f.conversation for f in finished)
