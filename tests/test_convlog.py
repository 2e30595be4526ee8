"""What `status` shows of a cell's terminal output: the line that says what is going on."""

from __future__ import annotations

from gptme_factory.cells.convlog import last_output_line

CRASH = """\
\x1b[31m· ERROR    Fatal error occurred                                                 \x1b[0m
· ERROR    No provider configured, couldn't auto-detect model.
           Or set an API key:
             export ANTHROPIC_API_KEY='sk-ant-...'
· ERROR      at
           /site-packages/gptme/init.py:194 in init_model

Goodbye! (resume with: gptme --name 2026-11-24-dancing-red-dog)
EXIT_CODE=1
"""


def test_a_crash_shows_gptme_error_not_the_traceback() -> None:
    assert last_output_line(CRASH) == "error: No provider configured, couldn't auto-detect model."


def test_normal_output_shows_last_line_without_noise() -> None:
    text = "Thinking...\nran the tests: 3 passed\n```\nGoodbye! (resume with: x)\nEXIT_CODE=0\n"
    assert last_output_line(text) == "ran the tests: 3 passed"


def test_empty_output() -> None:
    assert last_output_line("\n\n") == ""
