"""The line-engine CLI: schema, start, submit, advance, close, review, reject, abandon.

Each test asserts exit codes and output; refused or invalid handoffs must leave HEAD where it
was, and `verify` must stay clean.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from gptme_factory.cli import main
from gptme_factory.demo.sample import FIXED_SOURCE, SAMPLE_DIR, write_sample_project
from gptme_factory.ledger.config import default_config
from gptme_factory.ledger.layout import fanned
from gptme_factory.ledger.store import Ledger, short_id
from gptme_factory.ledger.stream import sha256
from tests.conftest import git
from tests.test_engine import build, scout_memo


def cli(repo: Path, *args: str, input: str | bytes | None = None) -> Result:
    return CliRunner().invoke(main, [*args, "--repo", str(repo)], input=input)


@pytest.fixture
def repo(ledger: Ledger) -> Path:
    """A factory with the default line, a one-stage line with approval and a check-only line."""
    root = ledger.repo.root
    git(root, "add", *write_sample_project(root))
    cfg = default_config().model_dump(mode="json", exclude_none=True)
    cfg["lines"]["one"] = {"stages": [{"name": "scout", "role": "scout", "produces": "designed",
                                       "approval": True}]}
    cfg["lines"]["check"] = {"stages": [{
        "name": "verify", "role": "verifier", "gate": "evidence", "produces": "verified",
        "checks": ["echo checking; exit 3"], "check_timeout_s": 30}]}
    (ledger.dir / "factory.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    git(root, "add", "factory/factory.yaml")
    git(root, "commit", "-q", "-m", "sample project and lines")
    return root


def intake(repo: Path, line: str = "default", accept: tuple[str, ...] = ("works", "fast")) -> str:
    args = ["intake", "Compound durations", "--demand", "gh:acme/bot#17", "--consumer", "erik",
            "--line", line]
    for a in accept:
        args += ["--accept", a]
    result = cli(repo, *args)
    assert result.exit_code == 0, result.output
    return result.stdout.split()[0]


def start(repo: Path, aid: str) -> str:
    result = cli(repo, "start", aid)
    assert result.exit_code == 0, result.output
    return result.stdout.split()[0]


def head(repo: Path) -> str:
    return git(repo, "rev-parse", "HEAD").strip()


def assert_clean(repo: Path) -> None:
    result = cli(repo, "verify")
    assert (result.exit_code, result.stdout.splitlines()[-1][:9]) == (0, "ledger ok"), result.output


def memo(aid: str) -> dict[str, Any]:
    return scout_memo(aid)


def through_scout(repo: Path, aid: str) -> None:
    cell = start(repo, aid)
    assert cli(repo, "submit", "--cell", cell, "-", input=json.dumps(memo(aid))).exit_code == 0
    assert cli(repo, "advance", aid).exit_code == 0


# -- schema -------------------------------------------------------------------------------------

def test_schema_prints_the_json_schema(repo: Path) -> None:
    result = cli(repo, "schema", "builder")
    assert result.exit_code == 0 and result.stderr == ""
    schema = json.loads(result.stdout)
    assert schema["title"] == "BuilderPatch" and "head" in schema["required"]
    assert cli(repo, "schema", "builder_patch").stdout == result.stdout
    bad = cli(repo, "schema", "chef")
    assert bad.exit_code == 2 and bad.stdout == ""
    assert bad.stderr.startswith("error: unknown role or contract 'chef': roles are analyst")
    assert cli(repo, "schema").exit_code == 2  # ROLE is required


# -- start ----------------------------------------------------------------------------------------

def test_start_prints_the_cell_and_refuses_a_second_one(repo: Path) -> None:
    aid = intake(repo)
    result = cli(repo, "start", aid[:12])  # any unambiguous prefix
    assert result.exit_code == 0
    assert re.fullmatch(rf"{aid}\.scout\.[0-9a-f]{{4}}  scout \(scout, attempt 1\)\n", result.stdout)
    cell = result.stdout.split()[0]
    before = head(repo)
    again = cli(repo, "start", aid)
    assert again.exit_code == 7
    assert f"stage scout of {aid} is running (cell {cell})" in again.stderr
    assert head(repo) == before
    missing = cli(repo, "start", "no-such-thing")
    assert missing.exit_code == 2 and "no artifact matches 'no-such-thing'" in missing.stderr
    other = intake(repo)
    data = json.loads(cli(repo, "start", other, "--json").stdout)
    assert data["artifact"] == other and data["stage"] == "scout" and data["role"] == "scout"
    assert data["attempt"] == 1 and data["retry_note"] == "" and data["cell"].startswith(other)
    assert data["base_commit"] == git(repo, "rev-parse", "HEAD~1").strip()
    assert_clean(repo)


# -- submit ---------------------------------------------------------------------------------------

def test_submit_a_yaml_file(repo: Path, tmp_path: Path) -> None:
    aid = intake(repo)
    cell = start(repo, aid)
    path = tmp_path / "memo.yaml"
    path.write_text(yaml.safe_dump(memo(aid)))
    result = cli(repo, "submit", "--cell", cell, str(path))
    assert result.exit_code == 0, result.output
    assert re.fullmatch(
        rf"accepted: factory/artifacts/{fanned(aid)}/0002-handoff_submitted-[0-9a-f]{{12}}\.yaml\n",
        result.stdout)
    assert git(repo, "log", "-1", "--format=%s").strip() == f"factory({short_id(aid)}): scout handoff (scout_memo)"
    assert git(repo, "status", "--porcelain", "factory") == ""
    assert_clean(repo)


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_submit_from_stdin(repo: Path, fmt: str) -> None:
    aid = intake(repo)
    cell = start(repo, aid)
    text = yaml.safe_dump(memo(aid)) if fmt == "yaml" else json.dumps(memo(aid))
    result = cli(repo, "submit", "--cell", cell, "-", "--json", input=text)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["accepted"] is True
    raw = (repo / data["file"]).read_bytes()
    assert sha256(raw) == data["hash"] and data["file"].endswith(f"-{data['hash'][:12]}.yaml")
    assert yaml.safe_load(raw)["handoff"]["approach"] == memo(aid)["approach"]
    assert_clean(repo)


def test_invalid_handoff_exits_4_with_field_lines_and_no_commit(repo: Path) -> None:
    aid = intake(repo)
    cell = start(repo, aid)
    before = head(repo)
    bad = {**memo(aid), "colour": "blue"}
    del bad["approach"]
    result = cli(repo, "submit", "--cell", cell, "-", input=yaml.safe_dump(bad))
    assert result.exit_code == 4 and result.stdout == ""
    assert result.stderr == (
        f"error: invalid handoff from {cell} (attempt 1; fix these fields and submit again, "
        "2 attempt(s) left):\n"
        "  approach: required field is missing\n"
        "  colour: unknown field (remove it, or check its spelling)\n")
    result = cli(repo, "submit", "--cell", cell, "-", "--json", input="{not json")
    assert result.exit_code == 4
    data = json.loads(result.stdout)
    assert data["accepted"] is False and data["problems"][0].startswith("malformed YAML")
    assert data["error"].startswith(f"invalid handoff from {cell} (attempt 2;")
    assert head(repo) == before
    # the third invalid handoff spends the repair budget: that is recorded
    result = cli(repo, "submit", "--cell", cell, "-", input="kind: scout_memo\n")
    assert result.exit_code == 4 and "a contract_violation was recorded" in result.stderr
    assert git(repo, "log", "-1", "--format=%s").strip() == f"factory({short_id(aid)}): scout blocked: contract violation"
    assert_clean(repo)


def test_refused_handoffs_exit_7_and_leave_no_commit(repo: Path, tmp_path: Path) -> None:
    aid = intake(repo)
    other = intake(repo)
    cell = start(repo, aid)
    before = head(repo)
    cases = [
        (cell, memo(other), f"the handoff names artifact '{other}', but cell {cell} works on"),
        (cell, {"kind": "builder_patch", "artifact": aid},
         f"cell {cell} is a scout for stage scout: it must hand over a scout_memo, not a "
         "builder_patch"),
        (f"{aid}.scout.ffff", memo(aid), f"cell {aid}.scout.ffff was never issued"),
        (f"{aid}.build.ffff", memo(aid), f"is for stage build, but the current stage of {aid} is scout"),
        (f"{other}.scout.ffff", memo(other), "was never issued; the stage's current cell is none"),
        ("gone-123456.scout.abcd", memo(aid), "names artifact gone-123456, which does not exist"),
        ("not-a-cell", memo(aid), "'not-a-cell' is not a cell id (expected ARTIFACT.STAGE.HEX)"),
    ]
    for who, handoff, needle in cases:
        result = cli(repo, "submit", "--cell", who, "-", input=json.dumps(handoff))
        assert result.exit_code == 7, (who, result.output)
        assert result.stderr.startswith("error: ") and needle in result.stderr, result.stderr
        assert result.stderr.rstrip().endswith("nothing was recorded"), result.stderr
    missing = cli(repo, "submit", "--cell", cell, str(tmp_path / "nope.yaml"))
    assert missing.exit_code == 2 and "cannot read" in missing.stderr
    assert head(repo) == before
    assert cli(repo, "submit", "--cell", cell, "-", input=json.dumps(memo(aid))).exit_code == 0
    again = cli(repo, "submit", "--cell", cell, "-", input=json.dumps(memo(aid)))
    assert again.exit_code == 7 and "already handed off" in again.stderr
    assert_clean(repo)


# -- advance ----------------------------------------------------------------------------------------

def test_advance_passes_and_fails_with_exit_10(repo: Path, ledger: Ledger) -> None:
    aid = intake(repo, accept=("parse_duration('2m30s') == 150", "old tests pass"))
    nothing = cli(repo, "advance", aid)
    assert nothing.exit_code == 7
    assert f"nothing to advance: stage scout of {aid} is pending; spawn or start" in nothing.stderr
    cell = start(repo, aid)
    assert cli(repo, "submit", "--cell", cell, "-", input=json.dumps(memo(aid))).exit_code == 0
    result = cli(repo, "advance", aid)
    assert result.exit_code == 0
    shown = result.stdout.splitlines()
    assert shown[0] == f"{aid}: gate scout passed -> state designed"
    # the contract was tried at the base: the reproduction fails there, the old tests pass
    assert re.fullmatch(r"  \$ .*parse_duration as p.*  exit 1  \d+\.\ds", shown[1])
    assert re.fullmatch(r"  \$ cd sample && python3 -B -m unittest -q  exit 0  \d+\.\ds", shown[2])
    # a builder that claims success without committing anything: the patch gate fails
    started = json.loads(cli(repo, "start", aid, "--json").stdout)
    from gptme_factory.line.engine import StartedStage

    patch = build(ledger, StartedStage(**started), FIXED_SOURCE, commit=False)
    assert cli(repo, "submit", "--cell", started["cell"], "-", input=json.dumps(patch)).exit_code == 0
    before = head(repo)
    result = cli(repo, "advance", aid, "--json")
    assert result.exit_code == 10
    data = json.loads(result.stdout)
    assert data["passed"] is False and data["stage"] == "build" and data["state"] == "designed"
    assert any("no diff between base" in r for r in data["reasons"])
    assert [Path(e).name.split("-")[1] for e in data["events"]] == ["gate_failed"]
    assert git(repo, "rev-list", "--count", f"{before}..HEAD").strip() == "1"
    assert_clean(repo)


def test_advance_shows_the_checks_the_factory_ran(repo: Path) -> None:
    aid = intake(repo, line="check")
    cell = start(repo, aid)
    report = {"kind": "verifier_report", "artifact": aid, "commit": head(repo),
              "checks": [{"command": "echo checking; exit 3", "exit_code": 3}],
              "verdict": "fail", "failure_summary": "the check exits 3",
              "criteria": [{"criterion": 0, "verdict": "fail", "evidence": "exit 3"},
                           {"criterion": 1, "verdict": "unknown", "evidence": "not run"}]}
    assert cli(repo, "submit", "--cell", cell, "-", input=json.dumps(report)).exit_code == 0
    result = cli(repo, "advance", aid)
    assert result.exit_code == 10
    lines = result.stdout.splitlines()
    assert lines[0] == f"{aid}: gate verify FAILED -> state idea"
    assert re.fullmatch(r"  \$ echo checking; exit 3  exit 3  \d+\.\ds", lines[1])
    assert lines[2].startswith("  - `echo checking; exit 3` failed at commit ")
    # the failure summary is the next verifier's retry note
    data = json.loads(cli(repo, "start", aid, "--json").stdout)
    assert data["attempt"] == 2
    assert data["retry_note"].startswith("the check exits 3\n`echo checking; exit 3` failed at ")
    assert "checking" in data["retry_note"]
    assert_clean(repo)


# -- review, close, reject, abandon -------------------------------------------------------------------

def one_stage_awaiting(repo: Path) -> str:
    aid = intake(repo, line="one")
    cell = start(repo, aid)
    assert cli(repo, "submit", "--cell", cell, "-", input=json.dumps(memo(aid))).exit_code == 0
    result = cli(repo, "advance", aid, "--json")
    assert result.exit_code == 0
    assert [Path(e).name.split("-")[1] for e in json.loads(result.stdout)["events"]] == [
        "gate_passed", "approval_requested"]
    return aid


def test_review_approve_then_close(repo: Path) -> None:
    aid = one_stage_awaiting(repo)
    waiting = cli(repo, "advance", aid)
    assert waiting.exit_code == 7
    assert f"`gptme-factory review {aid} --approve|--request-changes|--reject`" in waiting.stderr
    undecided = cli(repo, "review", aid, "--reviewer", "erik")
    assert undecided.exit_code == 2
    assert "choose one of --approve, --request-changes, --reject" in undecided.stderr
    two = cli(repo, "review", aid, "--approve", "--reject", "--reviewer", "erik")
    assert two.exit_code == 2 and "choose one of" in two.stderr
    assert cli(repo, "review", aid, "--approve").exit_code == 2  # --reviewer is required
    early = cli(repo, "close", aid, "--terminal", "x")
    assert early.exit_code == 7 and "close after the line's last stage has passed" in early.stderr
    result = cli(repo, "review", aid, "--approve", "--reviewer", "erik", "--comments", "ok")
    assert (result.exit_code, result.stdout) == (0, f"{aid}: approve by erik\n")
    again = cli(repo, "review", aid, "--approve", "--reviewer", "erik")
    assert again.exit_code == 7 and "every stage of" in again.stderr
    neither = cli(repo, "close", aid)
    assert neither.exit_code == 2
    assert "done is not a handoff: give exactly one of --successor" in neither.stderr
    both = cli(repo, "close", aid, "--successor", aid, "--terminal", "x")
    assert both.exit_code == 2 and "done is not a handoff" in both.stderr
    itself = cli(repo, "close", aid, "--successor", aid)
    assert itself.exit_code == 2 and "cannot be its own successor" in itself.stderr
    unknown = cli(repo, "close", aid, "--successor", "nope-123")
    assert unknown.exit_code == 2 and "no artifact matches 'nope-123'" in unknown.stderr
    successor = intake(repo, line="check")
    result = cli(repo, "close", aid, "--successor", successor[:-1])  # a prefix is resolved
    assert (result.exit_code, result.stdout) == (0, f"{aid}: closed -> {successor}\n")
    twice = cli(repo, "close", aid, "--terminal", "x")
    assert twice.exit_code == 7 and "already closed" in twice.stderr
    assert_clean(repo)


def test_close_terminal(repo: Path) -> None:
    aid = one_stage_awaiting(repo)
    assert cli(repo, "review", aid, "--approve", "--reviewer", "erik").exit_code == 0
    result = cli(repo, "close", aid, "--terminal", "the demand is met")
    assert (result.exit_code, result.stdout) == (0, f"{aid}: closed (terminal)\n")
    assert git(repo, "log", "-1", "--format=%s").strip() == f"factory({short_id(aid)}): closed: terminal"
    assert_clean(repo)


def test_review_request_changes_and_reject(repo: Path) -> None:
    aid = one_stage_awaiting(repo)
    result = cli(repo, "review", aid, "--request-changes", "--reviewer", "erik",
                 "--comments", "name the risks")
    assert (result.exit_code, result.stdout) == (0, f"{aid}: request_changes by erik\n")
    data = json.loads(cli(repo, "start", aid, "--json").stdout)
    assert data["attempt"] == 2 and data["retry_note"] == "review by erik: name the risks"
    assert cli(repo, "submit", "--cell", data["cell"], "-",
               input=json.dumps(memo(aid))).exit_code == 0
    assert cli(repo, "advance", aid).exit_code == 0
    result = cli(repo, "review", aid, "--reject", "--reviewer", "erik")
    assert (result.exit_code, result.stdout) == (0, f"{aid}: reject by erik\n")
    show = json.loads(cli(repo, "show", aid, "--json").stdout)
    assert show["state"] == "rejected"
    assert cli(repo, "start", aid).exit_code == 7
    assert_clean(repo)


def test_review_bad_reviewer_is_an_error_not_a_traceback(repo: Path) -> None:
    aid = one_stage_awaiting(repo)
    before = head(repo)
    result = cli(repo, "review", aid, "--approve", "--reviewer", "")
    assert result.exit_code == 4 and "Traceback" not in result.output
    assert result.stderr == ("error: invalid record in reviewed event:\n"
                             "  reviewed event: reviewer: String should have at least 1 character\n")
    assert head(repo) == before


def test_reject_and_abandon(repo: Path) -> None:
    aid = intake(repo)
    result = cli(repo, "reject", aid, "--reason", "nobody needs it")
    assert (result.exit_code, result.stdout) == (0, f"{aid}: rejected\n")
    again = cli(repo, "abandon", aid, "--reason", "x")
    assert again.exit_code == 7 and "already rejected" in again.stderr
    other = intake(repo)
    start(repo, other)
    assert cli(repo, "abandon", other).exit_code == 2  # --reason is required
    blank = cli(repo, "abandon", other, "--reason", "  ")
    assert blank.exit_code == 2 and "a reason is required" in blank.stderr
    result = cli(repo, "abandon", other, "--reason", "the demand went away")
    assert (result.exit_code, result.stdout) == (0, f"{other}: abandoned\n")
    late = cli(repo, "submit", "--cell", f"{other}.scout.0000", "-", input=json.dumps(memo(other)))
    assert late.exit_code == 7 and "is abandoned; no handoff is accepted" in late.stderr
    assert_clean(repo)


def test_full_default_line_through_the_cli(repo: Path, ledger: Ledger) -> None:
    """scout and build through the CLI on the sample project (the rest is in test_engine)."""
    aid = intake(repo, accept=("parse_duration('2m30s') == 150", "old tests pass"))
    through_scout(repo, aid)
    started = json.loads(cli(repo, "start", aid, "--json").stdout)
    from gptme_factory.line.engine import StartedStage

    patch = build(ledger, StartedStage(**started), FIXED_SOURCE)
    assert cli(repo, "submit", "--cell", started["cell"], "-", input=yaml.safe_dump(patch)).exit_code == 0
    result = cli(repo, "advance", aid, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["passed"] and data["state"] == "patched" and data["checks"] == []
    show = json.loads(cli(repo, "show", aid, "--json").stdout)
    assert show["state"] == "patched"
    assert f"{SAMPLE_DIR}/durations.py" in patch["files_changed"]
    assert_clean(repo)


def test_overlong_failure_summary_is_clipped_not_a_crash(repo: Path) -> None:
    aid = intake(repo, line="check")
    cell = start(repo, aid)
    report = {"kind": "verifier_report", "artifact": aid, "commit": head(repo),
              "checks": [{"command": "echo checking; exit 3", "exit_code": 3}],
              "verdict": "fail", "failure_summary": "why " * 5000,
              "criteria": [{"criterion": 0, "verdict": "fail", "evidence": "exit 3"},
                           {"criterion": 1, "verdict": "fail", "evidence": "exit 3"}]}
    assert cli(repo, "submit", "--cell", cell, "-", input=json.dumps(report)).exit_code == 0
    result = cli(repo, "advance", aid)
    assert result.exit_code == 10, result.output
    note = json.loads(cli(repo, "start", aid, "--json").stdout)["retry_note"]
    assert len(note) == 20_000 and note.startswith("why why") and note.endswith("\n[... clipped]")
    assert_clean(repo)
