"""envcheck: environment failures told apart from real ones, on real outputs.

- classify_check: real commands run through the factory's own `run_check` (`bash -c`), plus
  a few literal lines from shells this machine does not have (older bash, zsh).
- classify_cell_exit: outputs recorded from the real `gptme -n` 0.35.1 in
  tests/fixtures/gptme-exits/ (paths normalised), and, marked slow, fresh real runs whose
  verdict must agree with `preflight_model` for the same model and environment.
- preflight_model: isolated HOME/XDG with gptme config files written by the test.
- unresolved_commands: a private PATH of real scripts, the real interpreter for `-m`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gptme_factory.envcheck import (
    EnvironmentFailure,
    classify_cell_exit,
    classify_check,
    preflight_model,
    unresolved_commands,
)
from gptme_factory.envcheck.model import gptme_registry
from gptme_factory.line.checks import run_check

FIXTURES = Path(__file__).parent / "fixtures" / "gptme-exits"
PY = sys.executable


def _script(path: Path, text: str, executable: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755 if executable else 0o644)
    return path


def _one_line(f: EnvironmentFailure) -> None:
    assert "\n" not in f.cause and "\n" not in f.fix
    assert f.cause.strip() and f.fix.strip()


# --------------------------------------------------------------------------- classify_check


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A work tree with the scripts the check table runs."""
    t = tmp_path / "tree"
    t.mkdir()
    _script(t / "noexec.sh", "echo hi\n", executable=False)
    _script(t / "envmiss.py", "#!/usr/bin/env no-such-interp-xyz\nprint(1)\n")
    _script(t / "badint.py", "#!/nonexistent/python9\nprint(1)\n")
    _script(t / "inner.sh", "#!/bin/bash\nno-such-tool-xyz -q\n")
    (t / "adir").mkdir()
    (t / "Makefile").write_text("test:\n\tno-such-tool-xyz -q\nshell:\n\tno-such-tool-xyz -q && echo x\n")
    _script(t / "blocked" / "tool", "echo hi\n", executable=False)
    (t / "test_imports_missing.py").write_text("import no_such_module_xyz\n\ndef test_x():\n    pass\n")
    (t / "test_runs_missing.py").write_text(
        "import subprocess\n\n"
        "def test_tool():\n"
        "    r = subprocess.run(['bash', '-c', 'no-such-tool-xyz'])\n"
        "    assert r.returncode == 0\n"
    )
    return t


ENVIRONMENT_CASES = [
    ("no-such-tool-xyz", "command_not_found", "bash: line 1: no-such-tool-xyz: command not found"),
    ("no-such-tool-xyz --flag && echo ok", "command_not_found", "no-such-tool-xyz: command not found"),
    ("sh -c no-such-tool-xyz", "command_not_found", "sh: 1: no-such-tool-xyz: not found"),
    ("./inner.sh", "command_not_found", "./inner.sh: line 2: no-such-tool-xyz: command not found"),
    ("timeout 5 no-such-tool-xyz", "command_not_found", "timeout: failed to run command"),
    ("(cd adir && no-such-tool-xyz)", "command_not_found", "no-such-tool-xyz: command not found"),
    ("/opt/nothing-xyz/bin/tool", "command_not_found", "/opt/nothing-xyz/bin/tool: No such file or directory"),
    ("python9.99 -m pytest", "missing_interpreter", "python9.99: command not found"),
    ("./envmiss.py", "missing_interpreter", "no-such-interp-xyz"),
    ("./badint.py", "missing_interpreter", "./badint.py"),
    (f"{PY} -m no_such_module_xyz", "missing_module", f"{PY}: No module named no_such_module_xyz"),
    (f"{PY} -m no_such_module_xyz -q tests/", "missing_module", "No module named no_such_module_xyz"),
    (f"{PY} -m no_such_pkg_xyz.sub", "missing_module", "No module named 'no_such_pkg_xyz'"),
    ("make test", "command_not_found", "make: no-such-tool-xyz: No such file or directory"),
    ("make shell", "command_not_found", "no-such-tool-xyz: not found"),
]


@pytest.mark.parametrize(("command", "kind", "cause_part"), ENVIRONMENT_CASES,
                         ids=[c[0].replace(PY, "python")[:40] for c in ENVIRONMENT_CASES])
def test_a_check_that_cannot_run_is_an_environment_failure(
        tree: Path, command: str, kind: str, cause_part: str) -> None:
    if command.startswith("make") and not os.path.exists("/usr/bin/make"):
        pytest.skip("make is not installed")
    result = run_check(command, tree, timeout_s=60, env=dict(os.environ))
    assert result.exit_code not in (0, None)
    found = classify_check(command, result.exit_code, result.output_tail)
    assert found is not None, result.output_tail
    assert found.kind == kind
    assert cause_part in found.cause
    _one_line(found)


def test_the_fix_says_what_to_install(tree: Path) -> None:
    result = run_check("cd adir && pytest-like-xyz", tree, timeout_s=30)
    found = classify_check("cd adir && pytest-like-xyz", result.exit_code, result.output_tail)
    assert found is not None and "install pytest-like-xyz" in found.fix
    pytest_line = "bash: line 1: pytest: command not found"
    found = classify_check("pytest -q", 127, pytest_line + "\n")
    assert found is not None and found.cause == pytest_line
    assert "pip install pytest" in found.fix
    found = classify_check(f"{PY} -m pytest", 1, f"{PY}: No module named pytest\n")
    assert found is not None and found.fix.startswith("install pytest") and f"{PY} -m pip install pytest" in found.fix


# (command, a line in its real output that a naive classifier would take for the environment's)
REAL_FAILURE_CASES = [
    ("cd sample && pytest", "cd: sample: No such file or directory"),  # the tree lacks the folder
    ("./missing.sh", "./missing.sh: No such file or directory"),  # the tree lacks the script
    ("./noexec.sh", "./noexec.sh: Permission denied"),  # the tree lacks the mode bit
    ("./adir", "./adir: Is a directory"),  # a folder, not a program
    (f"{PY} -c 'import no_such_module_xyz'", "No module named 'no_such_module_xyz'"),  # its own code
    (f"{PY} -m json.no_such_sub", "No module named json.no_such_sub"),  # the package is there
    (f"{PY} -m pytest -q -p no:cacheprovider test_imports_missing.py",  # an ImportError in a test
     "ModuleNotFoundError: No module named 'no_such_module_xyz'"),
    (f"{PY} -m pytest -q -p no:cacheprovider test_runs_missing.py",  # a test whose tool is missing
     "bash: line 1: no-such-tool-xyz: command not found"),
    ("exit 127", ""),  # the status alone, without the shell's line
    ("no-such-tool-xyz || exit 3", "no-such-tool-xyz: command not found"),  # the status disagrees
    ("make nosuchtarget", "No rule to make target"),
    ("false", ""),
]


@pytest.mark.parametrize(("command", "tempting"), REAL_FAILURE_CASES,
                         ids=[c[0].replace(PY, "python")[:40] for c in REAL_FAILURE_CASES])
def test_a_check_that_ran_and_failed_is_not_an_environment_failure(
        tree: Path, command: str, tempting: str) -> None:
    result = run_check(command, tree, timeout_s=120, env=dict(os.environ))
    assert result.exit_code not in (0, None), result.output_tail
    assert tempting in result.output_tail
    assert classify_check(command, result.exit_code, result.output_tail) is None, result.output_tail


def test_timeouts_and_successes_are_never_environment_failures(tree: Path) -> None:
    slow = run_check("no-such-tool-xyz; sleep 5", tree, timeout_s=0.5)
    assert slow.exit_code is None
    assert classify_check("no-such-tool-xyz; sleep 5", None, slow.output_tail) is None
    ok = run_check("no-such-tool-xyz; true", tree, timeout_s=30)
    assert ok.exit_code == 0 and "command not found" in ok.output_tail
    assert classify_check("no-such-tool-xyz; true", 0, ok.output_tail) is None


@pytest.mark.parametrize(("command", "exit_code", "output", "kind"), [
    # bash before 5.1 says "bad interpreter" for a missing #! interpreter
    ("./x.py", 126, "bash: line 1: ./x.py: /usr/bin/python9: bad interpreter: No such file or directory\n",
     "missing_interpreter"),
    ("./x.py", 127, "/usr/bin/env: 'python': No such file or directory\n", "missing_interpreter"),
    ("tox", 127, "zsh:1: command not found: tox\n", "command_not_found"),
    ("/usr/local/bin/tool", 126, "bash: line 1: /usr/local/bin/tool: Permission denied\n", "not_executable"),
    ("python3 -m pytest", 1, "\x1b[31m/usr/bin/python3: No module named pytest\x1b[0m\n", "missing_module"),
    ("env -i python3 -m pytest", 1, ": No module named pytest\n", "missing_module"),
    ("python3 -mpytest", 1, "/usr/bin/python3: No module named pytest\n", "missing_module"),
    # not the environment's:
    ("./x.sh", 127, "bash: line 1: ./x.sh: No such file or directory\n", None),
    ("python3 -m pytest", 1, "/usr/bin/python3: No module named mypkg\n", None),  # another module
    ("python3 -m pytest", 1, "E   ModuleNotFoundError: No module named 'pytest'\n", None),
    ("python3 -m pytest", 2, "/usr/bin/python3: No module named pytest\n", None),  # wrong status
    ("node -m pytest", 1, "node: No module named pytest\n", None),  # not a python
    ("tool", 1, "bash: line 1: cd: sample: No such file or directory\n", None),
    ("tool", 127, "", None),
])
def test_literal_lines(command: str, exit_code: int, output: str, kind: str | None) -> None:
    found = classify_check(command, exit_code, output)
    assert (found.kind if found else None) == kind


# --------------------------------------------------------------------------- classify_cell_exit


def _fixture(name: str) -> tuple[int, str]:
    text = (FIXTURES / f"{name}.out").read_bytes().decode("utf-8")  # keeps the carriage returns
    code = re.search(r"^EXIT_CODE=(\d+)$", text, re.M)
    assert code is not None
    return int(code[1]), text


RECORDED = [
    ("nomodel", "no_provider", "No provider configured, couldn't auto-detect model.", "ANTHROPIC_API_KEY"),
    ("nomodelwide", "no_provider", "No provider configured, couldn't auto-detect model.", "ANTHROPIC_API_KEY"),
    ("anthropic", "missing_api_key",
     "Environment variable ANTHROPIC_API_KEY not set in env/config or credentials.toml", "set ANTHROPIC_API_KEY"),
    ("gptmemodelenv", "missing_api_key", "ANTHROPIC_API_KEY not set", "set ANTHROPIC_API_KEY"),
    ("openai", "missing_api_key", "OPENAI_API_KEY not set in env/config", "set OPENAI_API_KEY"),
    ("azure", "missing_api_key",
     "Environment variable AZURE_OPENAI_API_KEY not set in env or config, see README.", "set AZURE_OPENAI_API_KEY"),
    ("local", "missing_provider_setting", "Missing environment variable OPENAI_BASE_URL", "set OPENAI_BASE_URL"),
    ("gptmecloud", "not_logged_in", "gptme provider requires authentication.", "gptme-auth login"),
    ("oaisub", "not_logged_in", "OpenAI subscription not authenticated.", "gptme auth openai-subscription"),
    ("groksub", "not_logged_in", "Grok subscription not authenticated.", "grok login"),
    ("mockother", "invalid_model", "Unknown mock model: 'mock/nosuch' (available: mock/echo, mock/static)",
     "--model"),
    ("unknownbare", "invalid_model", "Error: --model: Unknown model 'foo-bar-model'.", "--model"),
    ("unknownprov", "invalid_model", "Error: --model: Unknown provider: nosuchprov", "--model"),
    ("local401", "auth_failed", "Error code: 401", "API key"),
    ("local404", "model_unavailable", "Error code: 404", "--model"),
    ("localrefused", "provider_unreachable", "Connection error.", "network"),
]


@pytest.mark.parametrize(("name", "kind", "cause_part", "fix_part"), RECORDED, ids=[r[0] for r in RECORDED])
def test_recorded_gptme_exits(name: str, kind: str, cause_part: str, fix_part: str) -> None:
    code, text = _fixture(name)
    found = classify_cell_exit(code, text)
    assert found is not None
    assert found.kind == kind
    assert cause_part in found.cause
    assert fix_part in found.fix
    _one_line(found)


def test_a_cell_that_worked_is_not_an_environment_failure() -> None:
    code, text = _fixture("mockecho")
    assert code == 0 and classify_cell_exit(code, text) is None
    assert classify_cell_exit(None, _fixture("nomodel")[1]) is None  # killed: the reaper's call


def test_the_exit_status_must_agree_with_the_message() -> None:
    _, text = _fixture("anthropic")
    assert classify_cell_exit(2, text) is None
    assert classify_cell_exit(75, text) is None  # gptme's rate-limit status
    _, usage = _fixture("unknownbare")
    assert classify_cell_exit(1, usage) is None


def test_quoted_error_lines_are_not_the_fatal_error() -> None:
    # A prompt echoed back (mock/echo) or a tool's output can quote gptme's own lines; only
    # the record right after the *last* "Fatal error occurred" counts.
    _, no_provider = _fixture("nomodel")
    quoted = (
        "User: here is what the last run printed:\n" + no_provider +
        "Assistant: I will now run the tests\n"
        "· ERROR    Fatal error occurred                                                 \n"
        "· ERROR    Tool 'shell' crashed: boom                                          \n"
        "EXIT_CODE=1\n"
    )
    assert classify_cell_exit(1, quoted) is None
    echoed = "User: · ERROR    No provider configured, couldn't auto-detect model.\nEXIT_CODE=1\n"
    assert classify_cell_exit(1, echoed) is None


def test_colours_and_spinner_redraws_are_ignored() -> None:
    _, text = _fixture("oaisub")
    assert "\r" in text  # the recorded output really has the spinner's carriage return
    coloured = text.replace("ERROR", "\x1b[31mERROR\x1b[0m").replace("· ", "\x1b[2m·\x1b[0m ")
    found = classify_cell_exit(1, coloured)
    assert found is not None and found.kind == "not_logged_in"


def test_gptme_missing_or_broken_is_the_environments() -> None:
    found = classify_cell_exit(127, "bash: line 1: gptme: command not found\nEXIT_CODE=127\n")
    assert found is not None and found.kind == "command_not_found" and "gptme" in found.fix
    crash = ("Traceback (most recent call last):\n  File \"/venv/bin/gptme\", line 5, in <module>\n"
             "    from gptme.cli import main\nModuleNotFoundError: No module named 'rich'\nEXIT_CODE=1\n")
    found = classify_cell_exit(1, crash)
    assert found is not None and found.kind == "missing_module" and "rich" in found.fix
    # the same traceback after gptme started is the work's (a tool crashed), not a startup crash
    assert classify_cell_exit(1, "· Using model: mock/echo\n" + crash) is None


# --------------------------------------------------------------------------- preflight_model


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "cellhome"
    (h / ".config" / "gptme").mkdir(parents=True)
    return h


def _env(home: Path, **extra: str) -> dict[str, str]:
    return {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "PATH": "/usr/bin:/bin", **extra}


def _user_config(home: Path, text: str, name: str = "config.toml") -> None:
    (home / ".config" / "gptme" / name).write_text(text)


def test_mock_echo_needs_nothing_and_imports_nothing_of_gptme() -> None:
    code = ("import sys; from gptme_factory.envcheck import preflight_model\n"
            "assert preflight_model('mock/echo', {}) is None\n"
            "assert preflight_model(None, {'GPTME_MODEL': 'mock/echo'}) is None\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('gptme', 'tomlkit')))")
    out = subprocess.run([PY, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_anthropic_model_with_and_without_its_key(home: Path) -> None:
    model = "anthropic/claude-sonnet-4-5"
    found = preflight_model(model, _env(home))
    assert found is not None and found.kind == "missing_api_key"
    assert "ANTHROPIC_API_KEY" in found.cause and found.fix.startswith("set ANTHROPIC_API_KEY")
    _one_line(found)
    assert preflight_model(model, _env(home, ANTHROPIC_API_KEY="sk-ant-x")) is None
    assert preflight_model(model, _env(home, GPTME_ANTHROPIC_API_KEY="sk-ant-x")) is None
    assert preflight_model(model, _env(home, ANTHROPIC_API_KEY="")) is not None  # empty is unset
    assert preflight_model(model, _env(home, OPENAI_API_KEY="sk-x")) is not None  # another provider's


def test_no_model_and_no_keys_names_the_variable_to_set(home: Path) -> None:
    found = preflight_model(None, _env(home))
    assert found is not None and found.kind == "no_provider"
    assert found.fix.startswith("set ANTHROPIC_API_KEY") and "mock/echo" in found.fix
    assert "OPENAI_API_KEY" in found.fix
    _one_line(found)
    line = found.summary()  # what `run` prints before it would spawn
    assert "\n" not in line and line.startswith(found.cause) and "set ANTHROPIC_API_KEY" in line
    assert preflight_model(None, _env(home, OPENAI_API_KEY="sk-x")) is None  # auto-detected
    assert preflight_model(None, _env(home, GROQ_API_KEY="gsk-x")) is None


def test_a_key_in_gptmes_config_file_counts(home: Path) -> None:
    model = "anthropic/claude-sonnet-4-5"
    _user_config(home, '[env]\nANTHROPIC_API_KEY = "sk-ant-from-config"\n')
    assert preflight_model(model, _env(home)) is None
    assert preflight_model(None, _env(home)) is None  # and gptme auto-detects from it
    assert preflight_model("openai/gpt-4o", _env(home)) is not None
    # `home` overrides env's HOME (the config is found under the home given)
    assert preflight_model(model, _env(home.parent / "elsewhere"), home=home) is None


def test_a_key_in_the_local_config_or_credentials_counts(home: Path) -> None:
    _user_config(home, '[env]\nOPENAI_API_KEY = "sk-local"\n', name="config.local.toml")
    assert preflight_model("openai/gpt-4o", _env(home)) is None
    (home / ".config" / "gptme" / "credentials.toml").write_text('[providers]\ngemini = "AIza-x"\n')
    assert preflight_model("gemini/gemini-2.5-flash", _env(home)) is None
    assert preflight_model("xai/grok-4", _env(home)) is not None


def test_a_key_in_the_workspace_gptme_toml_counts(home: Path, tmp_path: Path) -> None:
    ws = tmp_path / "brain"
    ws.mkdir()
    (ws / "gptme.toml").write_text('[env]\nTOOL_MODULES = "gptme.tools"\nOPENROUTER_API_KEY = "sk-or-x"\n')
    model = "openrouter/meta-llama/llama-3.1-8b-instruct"
    assert preflight_model(model, _env(home)) is not None
    assert preflight_model(model, _env(home), workspace=ws) is None


def test_gptme_model_and_the_config_default_are_honoured(home: Path, tmp_path: Path) -> None:
    found = preflight_model(None, _env(home, GPTME_MODEL="anthropic/claude-haiku-4-5"))
    assert found is not None and found.kind == "missing_api_key" and "GPTME_MODEL" in found.cause
    assert preflight_model(None, _env(home, GPTME_MODEL="anthropic/claude-haiku-4-5",
                                      ANTHROPIC_API_KEY="k")) is None
    # --model wins over GPTME_MODEL
    assert preflight_model("mock/echo", _env(home, GPTME_MODEL="anthropic/claude-haiku-4-5")) is None
    found = preflight_model("openai/gpt-4o", _env(home, GPTME_MODEL="mock/echo"))
    assert found is not None and "OPENAI_API_KEY" in found.fix
    _user_config(home, '[models]\ndefault = "deepseek/deepseek-v4-flash"\n[env]\nMODEL = "mock/echo"\n')
    found = preflight_model(None, _env(home))
    assert found is not None and "DEEPSEEK_API_KEY" in found.fix and "[models] default" in found.cause
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "gptme.toml").write_text('[env]\nMODEL = "mock/echo"\n')
    assert preflight_model(None, _env(home), workspace=ws) is None  # the project beats the user


@pytest.mark.parametrize(("model", "kind"), [
    ("foo-bar-model", "invalid_model"),
    ("nosuchprov/x", "invalid_model"),
    ("mock/nosuch", "invalid_model"),
    ("mock", "invalid_model"),
    ("azure", "invalid_model"),  # a bare provider without a recommended model
    ("mock/static", None),
    ("anthropic", "missing_api_key"),
    ("gpt-4o", "missing_api_key"),
    ("local/llama3", "missing_provider_setting"),
    ("gptme/claude-sonnet-4-6", "not_logged_in"),
    ("openai-subscription/gpt-5", "not_logged_in"),
    ("grok-subscription/grok-4", "not_logged_in"),
    ("nvidia/some-model", "missing_api_key"),
])
def test_models_without_what_they_need(home: Path, model: str, kind: str | None) -> None:
    found = preflight_model(model, _env(home))
    assert (found.kind if found else None) == kind
    if found:
        _one_line(found)


def test_what_each_provider_accepts(home: Path) -> None:
    assert preflight_model("local/llama3", _env(home, OPENAI_BASE_URL="http://127.0.0.1:11434/v1")) is None
    found = preflight_model("azure/gpt-4o", _env(home, AZURE_OPENAI_API_KEY="k"))
    assert found is not None and found.kind == "missing_provider_setting" and "AZURE_OPENAI_ENDPOINT" in found.fix
    assert preflight_model("azure/gpt-4o", _env(home, AZURE_OPENAI_API_KEY="k",
                                                AZURE_OPENAI_ENDPOINT="https://x")) is None
    assert preflight_model("gptme/claude-sonnet-4-6", _env(home, GPTME_CLOUD_API_KEY="k")) is None
    assert preflight_model("openai/gpt-4o", _env(home, LLM_PROXY_API_KEY="k")) is None
    assert preflight_model("gemini/gemini-2.5-flash", _env(home, LLM_PROXY_API_KEY="k")) is not None
    oauth = home / ".config" / "gptme" / "oauth"
    oauth.mkdir()
    (oauth / "openai_subscription.json").write_text("{}")
    assert preflight_model("openai-subscription/gpt-5", _env(home)) is None
    assert preflight_model(None, _env(home)) is None  # a login is auto-detected too


def test_custom_providers_from_the_user_config(home: Path) -> None:
    _user_config(home, '[[providers]]\nname = "myllm"\nbase_url = "http://127.0.0.1:9/v1"\n'
                       'api_key_env = "MYLLM_KEY"\ndefault_model = "m1"\n'
                       '[[providers]]\nname = "open"\nbase_url = "http://127.0.0.1:9/v1"\n')
    found = preflight_model("myllm/m1", _env(home))
    assert found is not None and found.kind == "missing_api_key" and "MYLLM_KEY" in found.fix
    assert preflight_model("myllm", _env(home, MYLLM_KEY="k")) is None
    assert preflight_model("open/anything", _env(home)) is None  # no key needed
    found = preflight_model("open", _env(home))
    assert found is not None and found.kind == "invalid_model"  # no default_model


def test_every_builtin_provider_of_gptme_is_known(home: Path) -> None:
    # gptme adding a provider shows up here: the pre-flight must say what it needs.
    from gptme.llm import PROVIDER_API_KEYS
    from gptme.llm.models import PROVIDERS

    reg = gptme_registry()
    assert reg is not None and dict(reg.api_keys) == PROVIDER_API_KEYS
    for provider in PROVIDERS:
        found = preflight_model(f"{provider}/some-model", _env(home))
        if provider == "mock":
            assert found is not None and found.kind == "invalid_model"
        else:
            assert found is not None, provider


# --------------------------------------------------------------------------- real gptme runs


def _real_gptme(home: Path, workdir: Path, model: str | None, extra: dict[str, str]) -> tuple[int, str]:
    """Run a cell exactly as gptodo does (shell redirect and EXIT_CODE trailer), no keys."""
    env = {**_env(home), "PATH": os.environ["PATH"], "GPTME_TIKTOKEN_TIMEOUT": "0",
           "XDG_DATA_HOME": str(home / ".local" / "share"), "XDG_STATE_HOME": str(home / ".local" / "state"),
           "XDG_CACHE_HOME": str(home / ".cache"), **extra}
    out = workdir / "cell.output"
    model_arg = f"--model {model} " if model else ""
    shell = f'gptme -n {model_arg}"hi" > {out} 2>&1; echo "EXIT_CODE=$?" >> {out}'
    subprocess.run(["bash", "-c", shell], cwd=workdir, env=env, stdin=subprocess.DEVNULL,
                   check=True, timeout=120)
    text = out.read_bytes().decode("utf-8", "replace")
    code = re.search(r"^EXIT_CODE=(\d+)$", text, re.M)
    assert code is not None
    return int(code[1]), text


@pytest.mark.slow
@pytest.mark.parametrize(("model", "extra", "kind"), [
    (None, {}, "no_provider"),
    ("anthropic/claude-sonnet-4-5", {}, "missing_api_key"),
    (None, {"GPTME_MODEL": "openai/gpt-4o"}, "missing_api_key"),
    ("foo-bar-model", {}, "invalid_model"),
    ("local/llama3", {}, "missing_provider_setting"),
])
def test_real_gptme_and_the_preflight_agree(tmp_path: Path, home: Path, model: str | None,
                                            extra: dict[str, str], kind: str) -> None:
    code, text = _real_gptme(home, tmp_path, model, extra)
    found = classify_cell_exit(code, text)
    assert found is not None and found.kind == kind, text
    predicted = preflight_model(model, {**_env(home), **extra})
    assert predicted is not None and predicted.kind == kind
    if kind in ("missing_api_key", "missing_provider_setting"):
        var = re.search(r"[A-Z][A-Z0-9_]+(?:_KEY|_URL)", found.cause)
        assert var is not None and var[0] in predicted.fix  # the same variable to set


@pytest.mark.slow
def test_real_gptme_on_mock_echo_is_not_an_environment_failure(tmp_path: Path, home: Path) -> None:
    code, text = _real_gptme(home, tmp_path, "mock/echo", {"GPTME_MAX_STEPS": "2"})
    assert code == 0 and "Echo: hi" in text
    assert classify_cell_exit(code, text) is None
    assert preflight_model("mock/echo", _env(home)) is None


# --------------------------------------------------------------------------- unresolved_commands


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    b = tmp_path / "bin"
    _script(b / "mytool", "#!/bin/sh\nexit 0\n")
    _script(b / "brokenshebang", "#!/nonexistent/python9\n")
    _script(b / "envshebang", "#!/usr/bin/env no-such-interp-xyz\n")
    _script(b / "okshebang", "#!/usr/bin/env mytool\n")
    _script(tmp_path / "homebin" / "hometool", "#!/bin/sh\nexit 0\n")  # under HOME, not on PATH
    (b / "python3").symlink_to(PY)
    return b


@pytest.fixture
def work(tmp_path: Path) -> Path:
    w = tmp_path / "work"
    (w / "sub").mkdir(parents=True)
    (w / "localmod.py").write_text("")
    (w / "sub" / "submod.py").write_text("")
    _script(w / "sub" / "run.sh", "#!/bin/sh\nexit 0\n")
    return w


def _cmd_env(bin_dir: Path, **extra: str) -> dict[str, str]:
    return {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(bin_dir.parent), **extra}


def _kinds(found: list[EnvironmentFailure]) -> list[tuple[str, str]]:
    return [(f.kind, f.cause.split(" ", 1)[0]) for f in found]


@pytest.mark.parametrize(("command", "expected"), [
    ("mytool -q", []),
    ("no-such-a -q", [("command_not_found", "no-such-a")]),
    ("cd sub && ./run.sh && mytool", []),
    ("true && no-such-a; no-such-b | no-such-c || no-such-d & no-such-e",
     [("command_not_found", f"no-such-{c}") for c in "abcde"]),
    ("FOO=1 no-such-a", [("command_not_found", "no-such-a")]),
    ("env X=1 no-such-a", [("command_not_found", "no-such-a")]),
    ("env -u FOO -- no-such-a", [("command_not_found", "no-such-a")]),
    ("nice -n 5 no-such-a", [("command_not_found", "no-such-a")]),
    ("timeout -s KILL 60 no-such-a", [("command_not_found", "no-such-a")]),
    ("nohup no-such-a", [("command_not_found", "no-such-a")]),
    ("bash -c 'no-such-a --x'", [("command_not_found", "no-such-a")]),
    ("sh -ec 'cd sub && no-such-a'", [("command_not_found", "no-such-a")]),
    ("bash -euo pipefail -c 'no-such-a'", [("command_not_found", "no-such-a")]),
    ("PATH=/nowhere nice no-such-a", [("command_not_found", "nice")]),
    ("exec no-such-a", [("command_not_found", "no-such-a")]),
    ("command -v no-such-a", []),  # a query
    ("time -p no-such-a", [("command_not_found", "no-such-a")]),
    ("no-such-a > log 2>&1", [("command_not_found", "no-such-a")]),
    ("2>/dev/null no-such-a", [("command_not_found", "no-such-a")]),
    ("if mytool; then no-such-a; else echo no; fi", [("command_not_found", "no-such-a")]),
    ("while mytool; do break; done", []),
    ("echo ';' no-such-a", []),  # a quoted operator is a word
    ("mytool # no-such-a", []),
    ("mytool # comment\nno-such-a", [("command_not_found", "no-such-a")]),
    ("mytool \\\n  --flag", []),
    ("python9.99 -V", [("missing_interpreter", "python9.99")]),
    ("/nonexistent-xyz/bin/tool", [("command_not_found", "/nonexistent-xyz/bin/tool")]),
    ("brokenshebang", [("missing_interpreter", "brokenshebang")]),
    ("envshebang", [("missing_interpreter", "envshebang")]),
    ("okshebang", []),
    ("PATH=/nowhere no-such-a; mytool", [("command_not_found", "no-such-a")]),
    ("PATH=/nowhere; mytool", [("command_not_found", "mytool")]),
    ("echo hi && test -f x && [ -d . ] && true && : && set -e && no-such-a",
     [("command_not_found", "no-such-a")]),  # builtins are fine, and reading goes on
    ("PATH=~/homebin:$PATH hometool", []),  # `~` is expanded in an assignment
    ("PATH=~/nobin:$PATH hometool", [("command_not_found", "hometool")]),
    ("declare -x PATH=/nowhere; mytool", [("command_not_found", "mytool")]),
    ("-f b", []),
])
def test_programs_are_found_or_reported(work: Path, bin_dir: Path, command: str,
                                        expected: list[tuple[str, str]]) -> None:
    found = unresolved_commands([command], work, _cmd_env(bin_dir))
    assert _kinds(found) == expected
    for f in found:
        _one_line(f)
        assert "(needed by: " in f.cause


@pytest.mark.parametrize("command", [
    "$(which foo) --version",
    "`no-such-a`",
    "no-such-a $(date)",
    "for f in *.py; do no-such-a $f; done",
    "f() { no-such-a; }; f",
    "$TOOL run",
    "eval no-such-a",
    "source env.sh && no-such-a",
    "cd missing-folder && no-such-a",  # the build may create the folder
    "./missing.sh",  # the tree's business
    "sub/run-missing.sh",
    "cat <<EOF\nno-such-a\nEOF",
    "env -i no-such-a",  # no PATH left to judge by
    "echo 'unbalanced",
    "[[ -f a && -f b ]] && no-such-a",  # `&&` inside a test is not a separator
    "(( i++ )) && no-such-a",
    "bash -lc 'no-such-a'",  # a login shell reads profiles that may change PATH
])
def test_unsure_commands_report_nothing(work: Path, bin_dir: Path, command: str) -> None:
    assert unresolved_commands([command], work, _cmd_env(bin_dir)) == []


def test_subshells_keep_their_cd(work: Path, bin_dir: Path) -> None:
    # ./run.sh exists only in sub/: inside the subshell it is found, outside it is relative
    # (and so not reported), while the bare program after the subshell is still looked up.
    found = unresolved_commands(["(cd sub && ./run.sh) && no-such-a"], work, _cmd_env(bin_dir))
    assert _kinds(found) == [("command_not_found", "no-such-a")]


def test_python_m_asks_the_interpreter_in_the_right_folder(work: Path, bin_dir: Path) -> None:
    env = _cmd_env(bin_dir)
    cases = {
        f"{PY} -m pytest -q": [],  # installed in this venv
        f"{PY} -m json": [],
        f"{PY} -m no_such_module_xyz": [("missing_module", f"{PY}:")],
        "python3 -m no_such_module_xyz": [("missing_module", f"{bin_dir / 'python3'}:")],
        f"{PY} -u -X dev -W error -m no_such_module_xyz": [("missing_module", f"{PY}:")],
        f"{PY} -mno_such_module_xyz": [("missing_module", f"{PY}:")],
        f"{PY} -m no_such_pkg_xyz.sub": [("missing_module", f"{PY}:")],
        f"{PY} -m json.no_such_sub": [],  # only the top-level package is asked about
        f"{PY} -m localmod": [],  # found in cwd, as `-m` would
        f"cd sub && {PY} -m submod": [],  # found in the cd target
        f"{PY} -m submod": [("missing_module", f"{PY}:")],
        f"{PY} -c 'import no_such_module_xyz'": [],  # code, not a module to look up
        f"{PY} script.py -m no_such_module_xyz": [],  # -m belongs to the script
        f"{PY} -I -m localmod": [("missing_module", f"{PY}:")],  # -I leaves cwd off sys.path
    }
    for command, expected in cases.items():
        assert _kinds(unresolved_commands([command], work, env)) == expected, command
    found = unresolved_commands([f"{PY} -m no_such_module_xyz"], work, env)
    assert "No module named no_such_module_xyz" in found[0].cause
    assert f"{PY} -m pip install no_such_module_xyz" in found[0].fix


def test_python_m_uses_the_env_given(work: Path, bin_dir: Path, tmp_path: Path) -> None:
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "onlyhere.py").write_text("")
    assert unresolved_commands([f"{PY} -m onlyhere"], work, _cmd_env(bin_dir)) != []
    assert unresolved_commands([f"{PY} -m onlyhere"], work, _cmd_env(bin_dir, PYTHONPATH=str(extra))) == []
    assert unresolved_commands([f"env PYTHONPATH={extra} {PY} -m onlyhere"], work, _cmd_env(bin_dir)) == []


def test_nothing_is_executed(work: Path, bin_dir: Path) -> None:
    _script(bin_dir / "marker", f"#!/bin/sh\ntouch {work / 'ran'}\n")
    pkg = work / "sideeffect"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(f"open({str(work / 'imported')!r}, 'w').close()\n")
    found = unresolved_commands(["marker && touch made", f"{PY} -m sideeffect.sub"], work, _cmd_env(bin_dir))
    assert found == []
    assert not (work / "ran").exists() and not (work / "made").exists()
    assert not (work / "imported").exists()


def test_failures_are_reported_once(work: Path, bin_dir: Path) -> None:
    found = unresolved_commands(["no-such-a -q", "cd sub && no-such-a --x", "no-such-b"], work, _cmd_env(bin_dir))
    assert _kinds(found) == [("command_not_found", "no-such-a"), ("command_not_found", "no-such-b")]


def test_an_absolute_program_that_is_not_executable(work: Path, bin_dir: Path) -> None:
    blocked = _script(work / "blocked-tool", "echo hi\n", executable=False)
    found = unresolved_commands([str(blocked)], work, _cmd_env(bin_dir))
    assert _kinds(found) == [("not_executable", str(blocked))]


# --------------------------------------------------------------------------- properties


@settings(max_examples=200, deadline=None)
@given(output=st.text(), code=st.one_of(st.none(), st.integers(-1, 255)), command=st.text(max_size=80))
def test_classifiers_never_raise(output: str, code: int | None, command: str) -> None:
    for found in (classify_check(command, code, output), classify_cell_exit(code, output)):
        if found is not None:
            _one_line(found)
    assert classify_check(command, 0, output) is None and classify_cell_exit(None, output) is None


@pytest.fixture(scope="module")
def empty_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("emptybin")


@settings(max_examples=300, deadline=None)
@given(command=st.text(alphabet=st.sampled_from(list("ab c;&|()<>'\"$`#\\\n=-./~*")), max_size=40))
def test_command_reading_never_raises(command: str, empty_path: Path) -> None:
    found = unresolved_commands([command], empty_path, {"PATH": str(empty_path), "HOME": str(empty_path)})
    assert all(f.kind in ("command_not_found", "missing_interpreter", "not_executable") for f in found)
