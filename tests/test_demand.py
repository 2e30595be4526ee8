"""Demand-first intake: from a GitHub issue through (fake) gh, and from a gptodo task file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from hypothesis import given
from hypothesis import strategies as st

from gptme_factory.cli import main
from gptme_factory.ledger.store import Ledger
from gptme_factory.outcomes.demand import parse_acceptance
from tests import fake_gh

ISSUE_BODY = """The deploy bot rejects `--timeout 2m30s`.

## Acceptance criteria

- [ ] `2m30s` parses to 150 seconds
- [x] old values still parse
1. errors name the bad value

## Notes

- [ ] not a criterion: outside the section
"""


def run(repo: Path, *args: str) -> Result:
    return CliRunner().invoke(main, [*args, "--repo", str(repo)])


def intake_record(ledger: Ledger, result: Result) -> dict[str, object]:
    assert result.exit_code == 0, result.output
    aid = json.loads(result.stdout)["artifact"]
    return ledger.read(aid).root.record.model_dump(mode="json")


def test_parse_acceptance_sections_labels_and_checkboxes() -> None:
    assert parse_acceptance(ISSUE_BODY) == [
        "`2m30s` parses to 150 seconds", "old values still parse", "errors name the bad value"]
    assert parse_acceptance("Intro\n\n**Acceptance criteria:**\n- one\n- two\n\nMore text\n- no"
                            ) == ["one", "two"]
    assert parse_acceptance("Do it.\n\n- [ ] first\n  - [x] second\n- plain item\n") == [
        "first", "second"]
    assert parse_acceptance("### Acceptance\n#### Details\n* nested counts\n## Next\n- no\n") == [
        "nested counts"]
    assert parse_acceptance("nothing to see\n- a bullet\n") == []


@given(st.text())
def test_parse_acceptance_never_fails_and_only_quotes_the_body(body: str) -> None:
    for item in parse_acceptance(body):
        assert item and item in body


def test_intake_from_issue(ledger: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gh = fake_gh.install(tmp_path, monkeypatch)
    gh.respond_json("issue view", {"title": "Accept compound durations", "body": ISSUE_BODY,
                                   "author": {"login": "octocat", "name": "Mona"},
                                   "url": "https://github.com/acme/app/issues/42"})
    root = ledger.repo.root
    record = intake_record(ledger, run(root, "intake", "--from-issue", "acme/app#42", "--json"))
    assert gh.calls() == [["auth", "status"],
                          ["issue", "view", "42", "--repo", "acme/app", "--json",
                           "title,body,author,url"]]
    assert record["title"] == "Accept compound durations"
    assert record["demand"] == "gh:acme/app#42"
    assert record["consumers"] == ["octocat"]
    assert record["acceptance"] == ["`2m30s` parses to 150 seconds", "old values still parse",
                                    "errors name the bad value"]
    assert record["problem"] == ISSUE_BODY.strip() + "\n\n(from https://github.com/acme/app/issues/42)"
    record = intake_record(ledger, run(root, "intake", "Shorter title", "--from-issue",
                                       "gh:acme/app#42", "--consumer", "erik", "--accept", "only",
                                       "--json"))
    assert (record["title"], record["consumers"], record["acceptance"]) == (
        "Shorter title", ["erik"], ["only"])


def test_intake_from_issue_refusals(ledger: Ledger, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    gh = fake_gh.install(tmp_path, monkeypatch)
    root = ledger.repo.root
    gh.respond_json("issue view", {"title": "Vague", "body": "make it better",
                                   "author": {"login": "octocat"}})
    result = run(root, "intake", "--from-issue", "acme/app#7")
    assert result.exit_code == 2
    assert "gh:acme/app#7 has no acceptance criteria" in result.output
    result = run(root, "intake", "--from-issue", "acme-app-7")
    assert result.exit_code == 2 and "expected OWNER/REPO#N" in result.output
    gh.respond("issue view", stderr="GraphQL: Could not resolve to an issue (repository.issue)",
               exit=1)
    result = run(root, "intake", "--from-issue", "acme/app#999")
    assert result.exit_code == 6 and "Could not resolve to an issue" in result.output
    gh.logged_out()
    result = run(root, "intake", "--from-issue", "acme/app#7")
    assert result.exit_code == 2 and "gh is not logged in" in result.output
    assert ledger.artifact_ids() == []
    result = run(root, "intake", "--demand", "me", "--consumer", "erik", "--accept", "x")
    assert result.exit_code == 2 and "intake needs a TITLE" in result.output


def test_intake_from_task(ledger: Ledger) -> None:
    root = ledger.repo.root
    (root / "tasks").mkdir()
    (root / "tasks" / "speed-up-status.md").write_text(
        "---\nstate: todo\ncreated: 2026-01-05T10:00:00+00:00\nrequested_by: erik\n---\n"
        "# Speed up status\n\nstatus takes 3 s on the big brain.\n\n"
        "## Acceptance\n\n- status under 1 s warm\n- same output\n")
    record = intake_record(ledger, run(root, "intake", "--from-task", "speed-up-status", "--json"))
    assert record["title"] == "Speed up status"
    assert record["demand"] == "task:speed-up-status"
    assert record["consumers"] == ["erik"]
    assert record["acceptance"] == ["status under 1 s warm", "same output"]
    assert record["problem"].startswith("status takes 3 s")
    result = run(root, "intake", "--from-task", "no-such-task")
    assert result.exit_code == 2 and "no task file tasks/no-such-task.md" in result.output
    result = run(root, "intake", "--from-task", "../etc/passwd")
    assert result.exit_code == 2
