"""Targets in factory.yaml: the registry, detection, `target add|list|show|remove`, intake's choice.

Every repository is real: a brain, project clones with bare upstreams, a clone without a
remote; no network (a GitHub URL is only ever a URL here).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from gptme_factory.cli import main
from gptme_factory.demo.sample import CHECK_COMMAND, DEMAND
from gptme_factory.errors import ConfigError, TargetError, UsageError
from gptme_factory.ledger import yamlio
from gptme_factory.ledger.config import BRAIN_TARGET, parse_config
from gptme_factory.ledger.gitstore import GitRepo
from gptme_factory.ledger.store import Ledger
from gptme_factory.line import engine
from gptme_factory.line.intake import intake as new_intake
from gptme_factory.line.verify import verify_ledger
from gptme_factory.outcomes.demand import target_of_demand
from gptme_factory.targets import registry
from gptme_factory.targets.detect import detect, github_slug
from tests.cells_helpers import set_config
from tests.conftest import git
from tests.targets_helpers import local_project, project, register


def cli(ledger: Ledger, *args: str) -> Any:
    return CliRunner().invoke(main, [*args, "--repo", str(ledger.repo.root)])


def config_data(**extra: Any) -> dict[str, Any]:
    from gptme_factory.ledger.config import default_config

    data = default_config().model_dump(mode="json", exclude_none=True)
    data.update(extra)
    return data


@pytest.mark.parametrize(("extra", "needle"), [
    ({"default_target": "nope"}, "default_target: unknown target 'nope' (brain)"),
    ({"targets": {"brain": {"path": "x", "base": "main"}}},
     "targets.brain: 'brain' is the built-in target"),
    ({"targets": {"app": {"path": "x", "base": "main", "slug": "not a slug"}}},
     "targets.app.slug: a GitHub repository as OWNER/NAME"),
    ({"targets": {"app": {"path": "x", "base": "a..b"}}}, "targets.app.base: a branch name"),
    ({"targets": {"app": {"path": "x", "base": "main", "tests": ["make"]}}},
     "targets.app.tests: unknown field"),
    ({"targets": {"app": {"path": "x", "base": "main", "setup_inputs": ["../uv.lock"]}}},
     "targets.app.setup_inputs.0: a plain path relative"),
    ({"targets": {"app": {"path": "x", "base": "main", "slug": "acme/app"}}},
     "targets.app.slug: a GitHub slug needs a remote"),
])
def test_bad_target_config_names_the_key(extra: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(config_data(**extra), "factory/factory.yaml")
    assert f"factory/factory.yaml: {needle}" in str(err.value), str(err.value)


def test_a_line_names_an_unknown_target() -> None:
    data = config_data()
    data["lines"]["default"]["target"] = "ghost"
    with pytest.raises(ConfigError, match=r"lines.default.target: unknown target 'ghost'"):
        parse_config(data, "factory.yaml")


def test_github_slug_from_urls() -> None:
    assert github_slug("https://github.com/gptme/gptme.git") == "gptme/gptme"
    assert github_slug("git@github.com:acme/deploy-bot.git") == "acme/deploy-bot"
    assert github_slug("ssh://git@github.com/acme/x") == "acme/x"
    assert github_slug("/srv/git/app.git") is None and github_slug(None) is None


def test_detect_a_local_upstream(tmp_path: Path) -> None:
    clone, upstream = project(tmp_path, branch="trunk")
    found = detect(GitRepo.discover(clone))
    assert (found.remote, found.url, found.slug, found.base) == ("origin", str(upstream), None,
                                                                 "trunk")
    said = found.guesses()
    assert "remote: origin (the clone's origin)" in said
    assert "base branch: trunk (origin's default branch)" in said  # asked with ls-remote
    assert found.checks == [] and found.setup == []  # the sample has no manifest
    assert "test command: none found (pass --check COMMAND)" in said
    assert found.guesses(frozenset({"checks", "setup", "remote", "base"})) == []


def test_detect_a_github_clone_and_a_python_project(tmp_path: Path) -> None:
    clone = local_project(tmp_path)
    git(clone, "remote", "add", "upstream", "git@github.com:acme/app.git")
    # what `git clone` records; read locally, so no network is needed
    git(clone, "update-ref", "refs/remotes/upstream/develop", "HEAD")
    git(clone, "symbolic-ref", "refs/remotes/upstream/HEAD", "refs/remotes/upstream/develop")
    (clone / "pyproject.toml").write_text(
        '[project]\nname = "app"\nversion = "1"\n'
        '[project.optional-dependencies]\ntest = ["pytest"]\n'
        '[tool.pytest.ini_options]\ntestpaths = ["tests"]\n')
    (clone / "uv.lock").write_text("version = 1\n")
    (clone / "src").mkdir()
    found = detect(GitRepo.discover(clone))
    assert (found.remote, found.slug, found.base) == ("upstream", "acme/app", "develop")
    assert found.checks == ["PYTHONPATH=src python -m pytest"]
    assert found.setup == ['python3 -m venv "$FACTORY_ENV"',
                           '"$FACTORY_ENV/bin/python" -m pip install -q ".[test]"']
    assert found.setup_inputs == ["pyproject.toml", "uv.lock"]
    said = "\n".join(found.guesses())
    assert "GitHub repository: acme/app (from upstream's URL)" in said
    assert "remote: upstream (the clone's only remote)" in said


def test_detect_npm_and_make(tmp_path: Path) -> None:
    clone = local_project(tmp_path)
    (clone / "package.json").write_text(json.dumps({"scripts": {"test": "node t.js"}}))
    (clone / "package-lock.json").write_text("{}")
    found = detect(GitRepo.discover(clone))
    assert found.remote is None and found.base == "main"
    assert "base branch: main (the clone's current branch; check it)" in found.guesses()
    assert (found.checks, found.setup, found.links) == (["npm test"], ["npm ci"],
                                                        ["node_modules"])
    assert found.setup_inputs == ["package.json", "package-lock.json"]
    (clone / "Makefile").write_text("all:\n\ttrue\ntest:\n\tnpm test\n")
    assert detect(GitRepo.discover(clone)).checks == ["make test"]


def test_target_add_list_show_remove_through_the_cli(ledger: Ledger, tmp_path: Path) -> None:
    clone, upstream = project(tmp_path)
    before = git(ledger.repo.root, "rev-parse", "HEAD").strip()
    res = cli(ledger, "target", "add", "deploy-bot", str(clone), "--slug", "acme/deploy-bot",
              "--check", CHECK_COMMAND, "--setup", 'python3 -m venv "$FACTORY_ENV"')
    assert res.exit_code == 0, res.output
    assert "guessed remote: origin (the clone's origin)" in res.output
    assert "guessed base branch: main (origin's default branch)" in res.output
    assert "guessed test command" not in res.output  # given, not guessed
    assert f"  remote: origin {upstream}  (GitHub acme/deploy-bot)" in res.output
    # one commit of factory.yaml, nothing else; the path is relative to the brain
    assert git(ledger.repo.root, "log", "--format=%s", f"{before}..HEAD").splitlines() == [
        "factory: add target deploy-bot"]
    assert git(ledger.repo.root, "diff", "--name-only", before, "HEAD").split() == [
        "factory/factory.yaml"]
    data = yamlio.loads((ledger.dir / "factory.yaml").read_bytes(), "factory.yaml")
    assert data["targets"]["deploy-bot"] == {
        "path": "../deploy-bot", "remote": "origin", "url": str(upstream),
        "slug": "acme/deploy-bot", "base": "main",
        "setup": ['python3 -m venv "$FACTORY_ENV"'], "checks": [CHECK_COMMAND]}
    assert git(ledger.repo.root, "status", "--porcelain") == ""
    again = cli(ledger, "target", "add", "deploy-bot", str(clone))
    assert again.exit_code == 2 and "registered already" in again.output
    listed = json.loads(cli(ledger, "target", "list", "--json").output)
    assert [r["name"] for r in listed] == [BRAIN_TARGET, "deploy-bot"]
    shown = json.loads(cli(ledger, "target", "show", "deploy-bot", "--json").output)
    assert shown["path"] == str(clone) and shown["base_commit"] is None  # not fetched yet
    assert shown["environments"] == []
    text = cli(ledger, "target", "show", "brain").output
    assert "the brain repo itself" in text
    # an open artifact keeps its target registered
    aid = new_intake(ledger, **DEMAND, target="deploy-bot").artifact
    refused = cli(ledger, "target", "remove", "deploy-bot")
    assert refused.exit_code == 2 and aid in refused.output
    engine.finish(ledger, aid, "abandoned", "demo over")
    done = cli(ledger, "target", "remove", "deploy-bot")
    assert done.exit_code == 0, done.output
    assert "deploy-bot" not in Ledger.open(ledger.repo.root).config.targets
    assert [str(p) for p in verify_ledger(ledger)] == []


def test_target_add_refuses_the_brain_a_non_repo_and_a_reserved_name(
        ledger: Ledger, tmp_path: Path) -> None:
    res = cli(ledger, "target", "add", "self", str(ledger.repo.root), "--base", "master")
    assert res.exit_code == 2 and "is the brain repo" in res.output
    (tmp_path / "plain").mkdir()
    res = cli(ledger, "target", "add", "plain", str(tmp_path / "plain"))
    assert res.exit_code == 3 and "not a git working tree" in res.output
    clone = local_project(tmp_path)
    res = cli(ledger, "target", "add", "brain", str(clone))
    assert res.exit_code == 2 and "built-in target" in res.output
    res = cli(ledger, "target", "add", "Bad Name", str(clone))
    assert res.exit_code == 2 and "target name 'Bad Name'" in res.output
    res = cli(ledger, "target", "add", "lib", str(clone), "--no-remote", "--no-detect")
    assert res.exit_code == 0, res.output
    assert "guessed base branch: main (the clone's current branch; check it)" in res.output
    assert "  remote: none" in res.output


def test_intake_picks_the_target(ledger: Ledger, tmp_path: Path) -> None:
    app, _ = project(tmp_path, "app")
    lib = local_project(tmp_path, "lib")
    register(ledger, "app", app, slug="acme/deploy-bot")
    register(ledger, "lib", lib)
    ledger = Ledger.open(ledger.repo.root)
    demand = {k: v for k, v in DEMAND.items() if k != "demand"}
    # no target anywhere: the brain, recorded as no target (the intake file is as before)
    plain = new_intake(ledger, **demand, demand="erik asked")
    assert plain.target is None
    raw = (ledger.artifact_dir(plain.artifact) / "intake.yaml").read_text()
    assert "target" not in raw
    assert registry.of_intake(ledger, plain).is_brain
    assert new_intake(ledger, **demand, demand="x", target="lib").target == "lib"
    assert new_intake(ledger, **demand, demand="x", target="brain").target is None
    # a GitHub demand names its repo: the target with that slug
    assert target_of_demand(ledger.config, "gh:ACME/deploy-bot#17") == "app"
    assert target_of_demand(ledger.config, "gh:acme/other#1") is None
    res = cli(ledger, "intake", DEMAND["title"], "--demand", "gh:acme/deploy-bot#17",
              "--consumer", "erik", "--accept", "works", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["target"] == "app"
    # the line's target, then default_target
    data = yamlio.loads((ledger.dir / "factory.yaml").read_bytes(), "factory.yaml")
    data["lines"]["default"]["target"] = "lib"
    ledger = set_config(ledger, lines=data["lines"], default_target="app")
    assert new_intake(ledger, **demand, demand="x").target == "lib"
    assert new_intake(ledger, **demand, demand="x", target="app").target == "app"
    with pytest.raises(UsageError, match="unknown target 'ghost'"):
        new_intake(ledger, **demand, demand="x", target="ghost")


def test_intake_on_a_missing_clone_writes_nothing(ledger: Ledger, tmp_path: Path) -> None:
    clone = local_project(tmp_path)
    register(ledger, "lib", clone)
    ledger = Ledger.open(ledger.repo.root)
    clone.rename(tmp_path / "moved")
    head = git(ledger.repo.root, "rev-parse", "HEAD")
    with pytest.raises(TargetError, match=r"its clone .*lib does not exist: clone the project"):
        new_intake(ledger, **DEMAND, target="lib")
    assert git(ledger.repo.root, "rev-parse", "HEAD") == head
    assert ledger.artifact_ids() == []


def test_a_target_pointing_into_the_brain_is_refused(ledger: Ledger) -> None:
    ledger = set_config(ledger, targets={"inner": {"path": ".", "base": "master"}})
    with pytest.raises(TargetError, match="points at the brain repo"):
        registry.resolve(ledger, "inner")
