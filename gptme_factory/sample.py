"""A small sample project with real tests, for the offline demo and end-to-end tests.

`write_sample_project` puts a tiny Python module (`durations`) and its pytest tests into a
directory of the brain repo. The demand that goes with it — accept compound durations such as
"2m30s" — needs a real code change, and `FIXED_SOURCE`/`BROKEN_SOURCE` are a correct and a
wrong implementation that scripted builder cells write.
"""

from __future__ import annotations

from pathlib import Path

SAMPLE_DIR = "sample"

ORIGINAL_SOURCE = '''"""Parse human durations into seconds."""


def parse_duration(text: str) -> int:
    """Seconds in a duration such as "90s" or "5m"."""
    text = text.strip()
    if text.endswith("m"):
        return int(text[:-1]) * 60
    if text.endswith("s"):
        return int(text[:-1])
    raise ValueError(f"not a duration: {text!r}")
'''

FIXED_SOURCE = '''"""Parse human durations into seconds."""

import re

_PART = re.compile(r"(\\d+)([hms])")
_UNIT = {"h": 3600, "m": 60, "s": 1}


def parse_duration(text: str) -> int:
    """Seconds in a duration such as "90s", "5m" or "1h2m30s"."""
    text = text.strip()
    parts = _PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r}")
    return sum(int(n) * _UNIT[u] for n, u in parts)
'''

BROKEN_SOURCE = '''"""Parse human durations into seconds."""


def parse_duration(text: str) -> int:
    """Seconds in a duration such as "90s", "5m" or "2m30s" (first unit only: wrong)."""
    text = text.strip()
    for unit, size in (("m", 60), ("s", 1)):
        if unit in text:
            return int(text.split(unit)[0]) * size
    raise ValueError(f"not a duration: {text!r}")
'''

TESTS = '''from durations import parse_duration
import pytest


def test_seconds():
    assert parse_duration("90s") == 90


def test_minutes():
    assert parse_duration("5m") == 300


def test_garbage():
    with pytest.raises(ValueError):
        parse_duration("soon")
'''

NEW_TEST = '''

def test_compound():
    assert parse_duration("2m30s") == 150
    assert parse_duration("1h2m3s") == 3723
'''

DEMAND = {
    "title": "Accept compound durations like 2m30s",
    "problem": (
        "The deploy bot's --timeout flag rejects '2m30s' with 'not a duration', so operators "
        "convert by hand and get it wrong. parse_duration must accept compound values."
    ),
    "demand": "gh:acme/deploy-bot#17",
    "consumers": ["deploy-bot maintainers", "erik"],
    "acceptance": [
        "parse_duration('2m30s') == 150 and parse_duration('1h2m3s') == 3723",
        "the existing tests still pass",
    ],
}

CHECK_COMMAND = f"cd {SAMPLE_DIR} && python -m pytest -q -p no:cacheprovider"


def write_sample_project(root: Path) -> list[str]:
    """Write the sample project under `root/sample`; returns the repo-relative paths."""
    d = root / SAMPLE_DIR
    d.mkdir(parents=True, exist_ok=True)
    files = {
        "durations.py": ORIGINAL_SOURCE,
        "test_durations.py": TESTS,
        "conftest.py": "import sys, pathlib\nsys.path.insert(0, str(pathlib.Path(__file__).parent))\n",
    }
    for name, text in files.items():
        (d / name).write_text(text)
    return [f"{SAMPLE_DIR}/{name}" for name in files]
