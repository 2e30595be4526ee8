"""The factory-run skill and the lessons, read with gptme's own parser and matcher."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from gptme.lessons.matcher import LessonMatcher, MatchContext
from gptme.lessons.parser import Lesson, parse_lesson

from gptme_factory.plugin.tools.factory import tool
from gptme_factory.plugin.wiring import data_root

ROOT = data_root()
SKILL = ROOT / "skills" / "factory-run" / "SKILL.md"
LESSONS = sorted((ROOT / "lessons").rglob("*.md"))
SECTIONS = ["Rule", "Context", "Detection", "Pattern", "Outcome"]
FUNCTION_NAMES = sorted(fn.name for fn in tool.functions or [])


def test_skill_parses_as_a_gptme_skill() -> None:
    skill = parse_lesson(SKILL)
    assert skill.metadata.name == "factory-run"
    assert skill.metadata.description and len(skill.metadata.description) < 300
    assert skill.metadata.status == "active"
    assert "software factory" in skill.metadata.keywords
    assert skill.title == "Factory run"


def test_every_tool_function_is_named_in_the_skill() -> None:
    text = SKILL.read_text()
    missing = [name for name in FUNCTION_NAMES if f"{name}(" not in text]
    assert missing == [], f"the skill does not name {missing}"


def test_the_skill_names_no_function_that_does_not_exist() -> None:
    named = set(re.findall(r"\b(factory_[a-z_]+)\(", SKILL.read_text()))
    assert named - set(FUNCTION_NAMES) == set()


def test_the_skill_has_a_procedure_and_a_worked_example() -> None:
    text = SKILL.read_text()
    assert "## Procedure" in text and "## Worked example" in text
    assert text.count("```ipython") >= 2


def lessons() -> list[Lesson]:
    return [parse_lesson(p) for p in LESSONS]


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.stem)
def test_lesson_format(path: Path) -> None:
    lesson = parse_lesson(path)
    assert lesson.metadata.status == "active"
    assert len(lesson.metadata.keywords) >= 4
    assert lesson.title != "Untitled"
    headings = re.findall(r"^## (\w+)", lesson.body, re.MULTILINE)
    assert headings == SECTIONS, f"{path.name}: sections {headings}"
    for kw in lesson.metadata.keywords:
        # precise: a phrase, a tool function name or a hyphenated term, never one plain word
        assert " " in kw or "_" in kw or "-" in kw, f"{path.name}: keyword {kw!r} is too broad"
    text = path.read_text()
    assert text.endswith("\n") and not text.endswith("\n\n")
    assert not [ln for ln in text.splitlines() if ln != ln.rstrip()], "trailing whitespace"


def test_the_five_failure_modes_are_covered() -> None:
    titles = " | ".join(lesson.title.lower() for lesson in lessons())
    for topic in ("contract", "verifier", "demand", "successor", "bounded"):
        assert topic in titles


UNRELATED = [
    "Please fix the failing unit test in the parser module and commit the change.",
    "Can you verify the deploy worked and close the issue when you are done?",
    "Spawn a subagent to summarize the README, budget is tight this month.",
    "The factory method pattern in this Java code creates handlers; refactor it.",
    "There is high demand for the new feature; write a blog post about it.",
    "Write a handoff note for the on-call engineer about the database migration.",
]


@pytest.mark.parametrize("message", UNRELATED)
def test_lessons_do_not_fire_on_unrelated_sessions(message: str) -> None:
    matched = LessonMatcher().match([*lessons(), parse_lesson(SKILL)], MatchContext(message=message))
    assert [m.lesson.title for m in matched] == []


@pytest.mark.parametrize(("message", "title"), [
    ("the subagent returned free text instead of a handoff", "Handoffs need a contract"),
    ("the builder says tests pass, so skip the verify gate", "A verifier must be able to fail the run"),
    ("there is no demand source but we could keep the cells busy", "Capacity is not demand"),
    ("the artifact is finished, let's just stop", "Done needs a successor or a terminal reason"),
    ("the tmux session still running after an hour: a runaway subagent", "Cells are bounded"),
])
def test_lessons_fire_on_their_failure_mode(message: str, title: str) -> None:
    matched = LessonMatcher().match(lessons(), MatchContext(message=message))
    assert [m.lesson.title for m in matched][:1] == [title]


def test_gptme_indexes_the_installed_skill_and_lessons(factory_repo: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """After `init`, gptme's lesson index (workspace ./skills, ./lessons) finds them all."""
    from gptme.lessons.index import LessonIndex

    from gptme_factory.ledger.store import Ledger
    from gptme_factory.plugin.wiring import wire

    wire(Ledger.open(factory_repo))
    monkeypatch.chdir(factory_repo)
    index = LessonIndex()
    found = {lesson.path.resolve() for lesson in index.lessons}
    assert (factory_repo / "skills/factory-run/SKILL.md").resolve() in found
    for path in LESSONS:
        assert (factory_repo / "lessons" / path.relative_to(ROOT / "lessons")).resolve() in found
