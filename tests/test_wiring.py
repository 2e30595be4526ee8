"""Wiring a brain repo: gptme.toml merge, skill/lesson install, `init`, `init --upgrade`, `doctor`."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomlkit
from click.testing import CliRunner

from gptme_factory.cli import main
from gptme_factory.ledger.store import Ledger
from gptme_factory.line.verify import verify_ledger
from gptme_factory.plugin.wiring import (
    RECORD_FILE,
    digest,
    merge_gptme_toml,
    shipped_files,
    tool_modules_ok,
    wire,
)
from tests.conftest import git

BRAIN_TOML = """\
# Bob's brain: keep this comment
[agent]
name = "Bob"  # the agent's name

[prompt]
files = ["ABOUT.md", "README.md"]

[lessons]
dirs = ["lessons", "skills"]

[env]
# my own tools
TOOL_MODULES = "gptme.tools,bob.tools"  # keep mine
EDITOR = "vim"

[plugins]
enabled = ["gptme_attention_tracker"]
"""


def test_merge_preserves_keys_comments_and_existing_tool_modules() -> None:
    merged, did = merge_gptme_toml(BRAIN_TOML)
    assert did == ["[env] TOOL_MODULES: added gptme_factory.plugin.tools",
                   "[plugins] enabled: added gptme_factory"]
    for line in ("# Bob's brain: keep this comment", 'name = "Bob"  # the agent\'s name',
                 "# my own tools", 'EDITOR = "vim"', 'files = ["ABOUT.md", "README.md"]'):
        assert line in merged
    assert 'TOOL_MODULES = "gptme.tools,bob.tools,gptme_factory.plugin.tools"  # keep mine' in merged
    data = tomlkit.parse(merged).unwrap()
    assert data["plugins"]["enabled"] == ["gptme_attention_tracker", "gptme_factory"]
    assert data["lessons"]["dirs"] == ["lessons", "skills"]
    again, did_again = merge_gptme_toml(merged)
    assert (again, did_again) == (merged, [])
    assert tool_modules_ok(merged) and not tool_modules_ok(BRAIN_TOML)


def test_merge_adds_gptme_tools_when_an_existing_value_lacks_it() -> None:
    merged, did = merge_gptme_toml('[env]\nTOOL_MODULES = "bob.tools"\n')
    assert tomlkit.parse(merged)["env"]["TOOL_MODULES"] == "gptme.tools,bob.tools,gptme_factory.plugin.tools"
    assert did == ["[env] TOOL_MODULES: added gptme.tools, gptme_factory.plugin.tools"]


def test_merge_into_missing_or_minimal_file() -> None:
    created, did = merge_gptme_toml(None)
    assert tool_modules_ok(created) and did and created.startswith("[env]\n# gptme-factory")
    minimal, _ = merge_gptme_toml('[agent]\nname = "x"\n')
    assert minimal.startswith('[agent]\nname = "x"\n\n[env]\n')
    no_allowlist, did = merge_gptme_toml('[plugins]\npaths = ["p"]\n')
    assert "enabled" not in tomlkit.parse(no_allowlist)["plugins"]  # no allowlist: all enabled


@pytest.fixture
def ledger_with_work(ledger: Ledger) -> Ledger:
    """A factory repo where the user has staged and unstaged work in progress."""
    root = ledger.repo.root
    (root / "staged.txt").write_text("staged\n")
    git(root, "add", "staged.txt")
    (root / "README.md").write_text("# brain\nunstaged edit\n")
    return ledger


def user_work(root: Path) -> tuple[str, str, str]:
    return (git(root, "status", "--porcelain"), git(root, "diff"), git(root, "diff", "--cached"))


def test_wire_installs_commits_only_its_files_and_is_idempotent(ledger_with_work: Ledger) -> None:
    ledger = ledger_with_work
    root = ledger.repo.root
    before = user_work(root)
    head = git(root, "rev-parse", "HEAD").strip()
    report = wire(ledger)
    shipped = shipped_files()
    assert "skills/factory-run/SKILL.md" in shipped
    assert len([p for p in shipped if p.startswith("lessons/")]) >= 5
    assert sorted(report.changed) == sorted(["gptme.toml", *shipped])
    committed = git(root, "diff", "--name-only", head, "HEAD").split()
    assert sorted(committed) == sorted(["gptme.toml", f"factory/{RECORD_FILE}", *shipped])
    assert git(root, "rev-list", "--count", f"{head}..HEAD").strip() == "1"
    assert git(root, "log", "-1", "--format=%s").strip() == (
        f"factory: wire gptme.toml, 1 skill file, {len(shipped) - 1} lessons")
    assert user_work(root) == before  # the user's staged and unstaged work is untouched
    for rel, content in shipped.items():
        assert (root / rel).read_bytes() == content
    assert verify_ledger(ledger) == []
    again = wire(ledger)
    assert again.changes == [] and again.commit is None
    assert git(root, "rev-list", "--count", f"{head}..HEAD").strip() == "1"


def test_user_changes_win_and_upgrade_updates_only_unchanged_files(ledger: Ledger) -> None:
    root = ledger.repo.root
    wire(ledger)
    lessons = sorted(p for p in shipped_files() if p.startswith("lessons/"))
    mine, old, gone = lessons[0], lessons[1], lessons[2]
    (root / mine).write_text((root / mine).read_text() + "\nMy own note.\n")
    # `old` holds an earlier shipped version: the record says so.
    old_content = b"---\nmatch:\n  keywords: [old]\nstatus: active\n---\n\n# Old\n"
    (root / old).write_bytes(old_content)
    record = (root / "factory" / RECORD_FILE).read_text()
    record = record.replace(digest(shipped_files()[old]), digest(old_content))
    (root / "factory" / RECORD_FILE).write_text(record)
    (root / gone).unlink()
    git(root, "commit", "-qam", "user edits")
    plain = dict(wire(ledger).changes)
    assert plain[mine].startswith("kept: ")
    assert plain[old].startswith("outdated: `gptme-factory init --upgrade`")
    assert plain[gone].startswith("skipped: you deleted it")
    assert (root / old).read_bytes() == old_content
    upgraded = dict(wire(ledger, upgrade=True).changes)
    assert upgraded[old] == "updated to the shipped version"
    assert (root / old).read_bytes() == shipped_files()[old]
    assert (root / mine).read_text().endswith("My own note.\n")
    assert not (root / gone).exists()


def test_uncommitted_gptme_toml_is_merged_but_not_committed(ledger: Ledger) -> None:
    root = ledger.repo.root
    (root / "gptme.toml").write_text(BRAIN_TOML)
    git(root, "add", "gptme.toml")
    git(root, "commit", "-qm", "brain config")
    (root / "gptme.toml").write_text(BRAIN_TOML + '\n[prompt.extra]\nx = "mine"\n')
    report = wire(ledger)
    [(path, what)] = [c for c in report.changes if c[0] == "gptme.toml"]
    assert "not committed" in what
    assert tool_modules_ok((root / "gptme.toml").read_text())
    assert 'x = "mine"' in (root / "gptme.toml").read_text()
    assert "gptme_factory.plugin.tools" not in git(root, "show", "HEAD:gptme.toml")


def test_init_cli_says_what_changed(brain: Path) -> None:
    runner = CliRunner()
    first = runner.invoke(main, ["init", "--repo", str(brain)])
    assert first.exit_code == 0, first.output
    assert "factory initialized" in first.output
    assert "gptme.toml: created: [env] TOOL_MODULES" in first.output
    assert "skills/factory-run/SKILL.md: created" in first.output
    second = runner.invoke(main, ["init", "--repo", str(brain)])
    assert second.exit_code == 0 and "already a factory, nothing changed" in second.output
    no_wire = runner.invoke(main, ["init", "--no-wire", "--repo", str(brain)])
    assert no_wire.exit_code == 0


def test_doctor_passes_after_init_and_says_how_to_fix(brain: Path) -> None:
    runner = CliRunner()
    bare = runner.invoke(main, ["doctor", "--repo", str(brain)])
    assert bare.exit_code == 1
    assert "FAIL  ledger:" in bare.output and "fix: run `gptme-factory init`" in bare.output
    assert "FAIL  gptme.toml:" in bare.output and "FAIL  skill:" in bare.output
    assert runner.invoke(main, ["init", "--repo", str(brain)]).exit_code == 0
    ok = runner.invoke(main, ["doctor", "--repo", str(brain)])
    assert ok.exit_code == 0, ok.output
    assert ok.output.rstrip().endswith("all good")
    for name in ("ledger", "gptme.toml", "plugin", "tools", "plugin enabled", "skill", "gptodo",
                 "tmux"):
        assert f"ok    {name}:" in ok.output
    (brain / "gptme.toml").write_text('[plugins]\nenabled = ["other"]\n')
    bad = runner.invoke(main, ["doctor", "--json", "--repo", str(brain)])
    assert bad.exit_code == 1
    import json

    checks = {c["name"]: c for c in json.loads(bad.output)["checks"]}
    assert not checks["gptme.toml"]["ok"] and not checks["plugin enabled"]["ok"]
    assert 'add "gptme_factory" to [plugins] enabled' in checks["plugin enabled"]["fix"]


def test_merge_replaces_the_tool_module_of_older_versions() -> None:
    from gptme_factory.plugin.wiring import merge_gptme_toml, tool_modules_ok

    old = '[env]\nTOOL_MODULES = "gptme.tools,gptme_factory.tools"  # keep\n'
    assert not tool_modules_ok(old)
    text, did = merge_gptme_toml(old)
    assert 'TOOL_MODULES = "gptme.tools,gptme_factory.plugin.tools"  # keep' in text
    assert did == ["[env] TOOL_MODULES: added gptme_factory.plugin.tools "
                   "(replacing gptme_factory.tools)"]
    assert tool_modules_ok(text)
