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
    assert main_cmd.endswith("gptme-factory demo")
    assert test_cmd.endswith("python3 -m pytest")
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pip install -q -e '.[test]'" in ci
    assert re.search(r"^python3 -m pytest", ci, flags=re.M)
    assert "apt-get install" in ci and "tmux" in ci and "git" in ci
