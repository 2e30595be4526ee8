"""A small sample project with real tests, for the offline demo and end-to-end tests.

`write_sample_project` puts a tiny Python module (`durations`) and its tests into a
directory of the brain repo. The tests use the standard library's `unittest`, so the demo's
checks run with nothing but Python (a plain `pip install gptme-factory` has no pytest). The demand that goes with it — accept compound durations such as
"2m30s" — needs a real code change, and `FIXED_SOURCE`/`BROKEN_SOURCE` are a correct and a
wrong implementation that scripted builder cells write.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

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

TESTS = '''import unittest

from durations import parse_duration


class ParseDuration(unittest.TestCase):
    def test_seconds(self):
        self.assertEqual(parse_duration("90s"), 90)

    def test_minutes(self):
        self.assertEqual(parse_duration("5m"), 300)

    def test_garbage(self):
        with self.assertRaises(ValueError):
            parse_duration("soon")
'''

NEW_TEST = '''

class Compound(unittest.TestCase):
    def test_compound(self):
        self.assertEqual(parse_duration("2m30s"), 150)
        self.assertEqual(parse_duration("1h2m3s"), 3723)
'''

DEMAND: dict[str, Any] = {
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

CHECK_COMMAND = f"cd {SAMPLE_DIR} && python3 -B -m unittest -q"
# Fails at the base for the demand's own reason (parse_duration('2m30s') raises), and
# passes once compound durations parse: the check that tells a patch from its base.
REPRO_COMMAND = (f"cd {SAMPLE_DIR} && python3 -B -c 'from durations import parse_duration as p; "
                 "assert p(\"2m30s\") == 150 and p(\"1h2m3s\") == 3723'")


# The bugfix line's reproduction: a committed test of the reported input, and no fix.
REPRO_TEST_FILE = "test_reported.py"
REPRO_TEST = """import unittest

from durations import parse_duration


class Reported(unittest.TestCase):
    def test_compound_timeout(self):
        self.assertEqual(parse_duration("2m30s"), 150)


if __name__ == "__main__":
    unittest.main()
"""
REPRO_TEST_COMMAND = f"cd {SAMPLE_DIR} && python3 -B -m unittest -q test_reported"
REPRO_FAILURE = "ValueError: invalid literal for int() with base 10: '2m30'"


def bugfix_plan() -> list[dict[str, Any]]:
    """The bugfix line's plan: the reproduction the reproducer will commit, the old tests."""
    return [{"command": REPRO_TEST_COMMAND, "proves": "the reported timeout parses",
             "criteria": [0]},
            {"command": CHECK_COMMAND, "proves": "the old tests pass", "criteria": [1]}]


def verification_plan() -> list[dict[str, Any]]:
    """The sample's discriminating plan: the demand's reproduction, then the old tests."""
    return [{"command": REPRO_COMMAND, "proves": "compound durations parse", "criteria": [0]},
            {"command": CHECK_COMMAND, "proves": "the old and the new tests pass",
             "criteria": [1]}]


def write_sample_project(root: Path) -> list[str]:
    """Write the sample project under `root/sample`; returns the repo-relative paths."""
    d = root / SAMPLE_DIR
    d.mkdir(parents=True, exist_ok=True)
    files = {
        "durations.py": ORIGINAL_SOURCE,
        "test_durations.py": TESTS,
    }
    for name, text in files.items():
        (d / name).write_text(text)
    return [f"{SAMPLE_DIR}/{name}" for name in files]
