"""The gptme plugin: a light manifest, settings, the session.start hook and `/factory`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from gptme_factory.ledger.store import Ledger
from gptme_factory.line.intake import intake as new_intake
from gptme_factory.plugin import manifest as manifest
from gptme_factory.plugin.settings import Settings, configure, settings
from gptme_factory.plugin.tools._session import briefing_for, session_start

LIGHT_PROBE = r"""
import json, sys
opened = []
def audit(event, args):
    if event == "open" and isinstance(args[0], str) and not args[0].endswith((".py", ".pyc", ".so")):
        opened.append(args[0])
import gptme.plugins.plugin  # what gptme has loaded before it looks at plugins
sys.addaudithook(audit)
before = set(sys.modules)
from importlib.metadata import entry_points
[ep] = [e for e in entry_points(group="gptme.plugins") if e.name == "gptme_factory"]
plugin = ep.load()
new = sorted(set(sys.modules) - before)
print(json.dumps({"name": plugin.name, "tool_modules": plugin.tool_modules, "new": new,
                  "opened": [p for p in opened if "site-packages" not in p and "/lib/python" not in p]}))
"""


def test_manifest_import_is_light() -> None:
    """Loading the entry point imports no GitPython, no pydantic, no core module; reads no files."""
    proc = subprocess.run([sys.executable, "-c", LIGHT_PROBE], capture_output=True, text=True,
                          check=True, cwd=Path(__file__).parent)
    data = json.loads(proc.stdout)
    assert data["name"] == "gptme_factory"
    assert data["tool_modules"] == ["gptme_factory.plugin.tools"]
    new = data["new"]
    assert not [m for m in new if m == "git" or m.startswith(("git.", "pydantic", "yaml"))], new
    ours = sorted(m for m in new if m.startswith("gptme_factory"))
    assert ours == ["gptme_factory", "gptme_factory.plugin", "gptme_factory.plugin.manifest",
                    "gptme_factory.plugin.settings"], ours
    assert not [p for p in data["opened"] if not p.endswith((".pth", "RECORD", "METADATA"))
                and "dist-info" not in p and "__pycache__" not in p], data["opened"]


def test_entry_point_resolves_to_the_plugin() -> None:
    from gptme.plugins import GptmePlugin
    from gptme.plugins.entrypoints import _coerce_to_plugin

    assert isinstance(manifest.plugin, GptmePlugin)
    assert _coerce_to_plugin("gptme_factory", manifest.plugin) is manifest.plugin
    assert manifest.plugin.tools == []  # tools come through tool_modules only (no double load)
    assert callable(manifest.plugin.register_hooks) and callable(manifest.plugin.register_commands)


@pytest.fixture
def restore_settings() -> Any:
    yield
    configure({})


def test_init_reads_project_over_user_config(restore_settings: None,
                                             caplog: pytest.LogCaptureFixture) -> None:
    config = SimpleNamespace(
        user=SimpleNamespace(plugin={"gptme_factory": {"model": "user/model", "timeout_s": 60}}),
        project=SimpleNamespace(plugin={"gptme_factory": {
            "ledger_dir": "ledger", "timeout_s": 120, "max_cost_usd": 1, "colour": "red",
            "max_tokens": "lots"}}),
    )
    manifest.init(config)
    s = settings
    assert (s.ledger_dir, s.model, s.timeout_s, s.max_cost_usd, s.max_tokens) == (
        "ledger", "user/model", 120, 1, None)
    assert "colour: unknown key" in caplog.text and "max_tokens: expected int" in caplog.text


def test_init_without_project_config(restore_settings: None) -> None:
    manifest.init(SimpleNamespace(user=SimpleNamespace(plugin={}), project=None))
    assert settings == Settings()


def test_register_hooks_and_commands() -> None:
    from gptme.commands.base import _command_registry, unregister_command
    from gptme.hooks import HookType, get_hooks, unregister_hook

    manifest.register_hooks()
    manifest.register_commands()
    try:
        names = [h.name for h in get_hooks(HookType.SESSION_START)]
        assert "gptme_factory.session_start" in names
        assert "factory" in _command_registry
    finally:
        unregister_hook("gptme_factory.session_start", HookType.SESSION_START)
        unregister_command("factory")


# -- session.start ----------------------------------------------------------------------


def test_briefing_is_silent_without_a_ledger(brain: Path, tmp_path: Path) -> None:
    assert briefing_for(brain) == ""  # a git repo without a ledger
    (tmp_path / "plain").mkdir()
    assert briefing_for(tmp_path / "plain") == ""  # not even a git repo
    assert list(session_start(tmp_path, brain, [])) == []


def test_briefing_names_active_artifacts_and_running_cells(ledger: Ledger) -> None:
    from gptme_factory.line import engine

    assert briefing_for(ledger.repo.root) == ""  # a ledger with nothing active says nothing
    a = new_intake(ledger, title="Fix login timeout", demand="gh:acme/app#42", consumers=["erik"],
                      acceptance=["login under 2 s"]).artifact
    b = new_intake(ledger, title="Faster status", demand="gh:acme/app#43", consumers=["ops"],
                      acceptance=["status under 1 s"]).artifact
    cell = engine.start_stage(ledger, b).cell
    c = new_intake(ledger, title="Old idea", demand="gh:acme/app#1", consumers=["erik"],
                      acceptance=["x"]).artifact
    engine.finish(ledger, c, "abandoned", "nobody needs it")
    text = briefing_for(ledger.repo.root)
    lines = text.splitlines()
    assert lines[0].endswith("2 active artifact(s), 1 cell(s) running.")
    assert f"cell {cell}" in lines[1] and b in lines[1]  # running cells first
    assert a in text and c not in text
    assert len(lines) <= 10
    [msg] = list(session_start(Path("/tmp"), ledger.repo.root, []))
    assert msg.role == "system" and msg.content.startswith("<factory>\n")


def test_briefing_can_be_turned_off(ledger: Ledger, restore_settings: None) -> None:
    new_intake(ledger, title="X", demand="d", consumers=["c"], acceptance=["a"])
    configure({"session_start": False})
    assert list(session_start(Path("/tmp"), ledger.repo.root, [])) == []


# -- /factory ---------------------------------------------------------------------------


def run_command(cmd: str, logdir: Path) -> list[Any]:
    from gptme.commands import handle_cmd
    from gptme.logmanager import LogManager
    from gptme.message import Message

    manager = LogManager.load(logdir, initial_msgs=[Message("system", "start")], create=True)
    manager.append(Message("user", cmd))
    return list(handle_cmd(cmd, manager))


def test_factory_command_through_gptme(ledger: Ledger, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from gptme.commands import unregister_command

    aid = new_intake(ledger, title="Fix login timeout", demand="gh:acme/app#42", consumers=["erik"],
                        acceptance=["login under 2 s"]).artifact
    monkeypatch.chdir(ledger.repo.root)
    manifest.register_commands()
    try:
        [status] = run_command("/factory", tmp_path / "log1")
        assert status.role == "system" and aid in status.content and "scout:pending" in status.content
        [show] = run_command(f"/factory show {aid[:10]}", tmp_path / "log2")
        assert f"{aid}: Fix login timeout" in show.content and "[0] login under 2 s" in show.content
        [usage] = run_command("/factory fly", tmp_path / "log3")
        assert usage.content.startswith("usage: /factory")
        [missing] = run_command("/factory show nope", tmp_path / "log4")
        assert missing.content.startswith("error: no artifact matches 'nope'")
    finally:
        unregister_command("factory")


# -- the real gptme CLI -----------------------------------------------------------------


@pytest.mark.slow
def test_session_start_message_in_a_real_session(ledger: Ledger, isolated_env: Path) -> None:
    repo = ledger.repo.root
    aid = new_intake(ledger, title="Fix login timeout", demand="gh:acme/app#42", consumers=["erik"],
                        acceptance=["login under 2 s"]).artifact
    env = {**os.environ, "GPTME_TIKTOKEN_TIMEOUT": "0", "GPTME_MAX_STEPS": "2"}
    proc = subprocess.run(
        ["gptme", "--model", "mock/echo", "--no-stream", "-n", "--name", "brief",
         "hello\n```complete\n```"],
        cwd=repo, env=env, capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    log = Path(os.environ["XDG_DATA_HOME"]) / "gptme" / "logs" / "brief" / "conversation.jsonl"
    msgs = [json.loads(line) for line in log.read_text().splitlines()]
    [brief] = [m for m in msgs if m["content"].startswith("<factory>")]
    assert brief["role"] == "system"
    assert "1 active artifact(s), 0 cell(s) running." in brief["content"]
    assert aid in brief["content"]
    # the briefing comes before the user's prompt
    assert msgs.index(brief) < [m["role"] for m in msgs].index("user")
