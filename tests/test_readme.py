"""The README stays true: its CLI reference matches --help, and its test command is CI's."""

from __future__ import annotations

import re
from pathlib import Path

from gptme_factory.cli import COMMANDS
from gptme_factory.cli.reference import END, render

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_cli_reference_matches_help() -> None:
    start = README.index("<!-- cli-reference:start")
    end = README.index(END) + len(END)
    assert README[start:end] == render(), (
        "README's CLI reference is stale: run `python -m gptme_factory.cli.reference --write README.md`"
    )


def test_every_command_is_documented() -> None:
    for name in COMMANDS:
        assert f"### `gptme-factory {name}`" in README


def test_readme_opens_with_the_two_commands_and_ci_runs_the_test_one() -> None:
    blocks = re.findall(r"```bash\n(.*?)\n```", README, flags=re.S)
    main_cmd, test_cmd = blocks[0].strip(), blocks[1].strip()
    assert main_cmd.endswith("pip install -c constraints.txt -e . && gptme-factory demo")
    assert test_cmd.endswith("pip install -c constraints.txt -e '.[test]' && python3 -m pytest")
    ci = (ROOT / ".ci" / "run").read_text()
    # CI installs exactly as the README says, runs the same pytest, and the main job in a new venv
    assert "pip install -q -c constraints.txt -e '.[test]'" in ci
    assert re.search(r"^python3 -m pytest", ci, flags=re.M)
    assert "pip install -q -c constraints.txt -e ." in ci and "gptme-factory demo" in ci
    assert "apt-get install" in ci and "tmux" in ci and "git" in ci


def test_constraints_pin_every_installed_dependency() -> None:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep and version, f"constraints.txt: {line!r} is not NAME==VERSION"
            pins[name.lower().replace("_", "-")] = version
    for needed in ("gptme", "gptodo", "click", "pyyaml", "pydantic", "pytest", "hypothesis",
                   "gitpython", "rich", "tomlkit", "mypy", "ruff"):
        assert needed in pins, f"constraints.txt does not pin {needed}"
