"""The core CLI commands: exit codes and output of init, intake, status, show, log, verify."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from gptme_factory.cli import main
from gptme_factory.ledger.layout import fanned
from gptme_factory.ledger.store import Ledger
from gptme_factory.line.intake import intake as new_intake
from tests.conftest import git
from tests.ledger_helpers import abandon, append_next, cli, commit_count, new_artifact

INTAKE = ["--demand", "gh:acme/app#42", "--consumer", "erik", "--accept", "login under 2 s"]


def run(repo: Path, *args: str) -> Result:
    return CliRunner().invoke(main, [*args, "--repo", str(repo)])


def as_json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_help_and_module_entry_point() -> None:
    proc = subprocess.run([sys.executable, "-m", "gptme_factory", "--help"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    for command in ("init", "intake", "status", "show", "log", "verify"):
        assert re.search(rf"^  {command}\s", proc.stdout, re.M), command
    light = subprocess.run(
        [sys.executable, "-c", "import sys\nfrom gptme_factory.cli import main\n"
         "try:\n main(['--help'], prog_name='gptme-factory')\nexcept SystemExit:\n pass\n"
         "print('GITPYTHON' if 'git' in sys.modules else 'LIGHT')"],
        capture_output=True, text=True,
    )
    assert light.stdout.strip().endswith("LIGHT"), light.stdout + light.stderr


def test_init_text_json_idempotent_and_not_a_repo(brain: Path, tmp_path: Path) -> None:
    result = run(brain, "init", "--no-wire")
    assert result.exit_code == 0
    assert result.output == (f"{brain}: factory initialized\n  wrote factory/.gitignore\n"
                             "  wrote factory/factory.yaml\n")
    result = run(brain, "init", "--no-wire")
    assert (result.exit_code, result.output) == (
        0, f"{brain}: already a factory, nothing changed\n")
    data = as_json(run(brain, "init", "--no-wire", "--json"))
    assert (data["repo"], data["changed"]) == (str(brain), [])
    assert git(brain, "status", "--porcelain") == ""
    plain = tmp_path / "plain"
    plain.mkdir()
    result = run(plain, "init")
    assert result.exit_code == 3
    assert result.stderr.startswith("error: ") and "not inside a git working tree" in result.stderr
    assert list(plain.iterdir()) == []


def test_intake_prints_id_and_json(factory_repo: Path) -> None:
    result = run(factory_repo, "intake", "Fix login timeout", *INTAKE)
    assert result.exit_code == 0
    aid, state = result.output.split()
    assert re.fullmatch(r"fix-login-timeout-[0-9a-f]{6}", aid) and state == "idea"
    data = as_json(run(factory_repo, "intake", "Second", *INTAKE, "--consumer", "ops", "--json"))
    assert data["state"] == "idea" and data["line"] == "default"
    shown = as_json(run(factory_repo, "show", data["artifact"], "--json"))
    assert shown["intake"]["consumers"] == ["erik", "ops"]


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["--consumer", "erik", "--accept", "x"], 2, "--demand"),
        (["--demand", "d", "--accept", "x"], 2, "--consumer"),
        (["--demand", "d", "--consumer", "erik"], 2, "--accept"),
        (["--demand", " ", "--consumer", "erik", "--accept", "x"], 2, "needs a demand source"),
        ([*INTAKE, "--line", "nope"], 4, "unknown line 'nope'"),
    ],
)
def test_intake_errors_write_nothing(
    factory_repo: Path, args: list[str], code: int, needle: str
) -> None:
    count = commit_count(factory_repo)
    result = run(factory_repo, "intake", "Fix it", *args)
    assert result.exit_code == code
    assert needle in result.output
    assert commit_count(factory_repo) == count
    assert not (factory_repo / "factory/artifacts").exists()


def test_status_is_a_table_ordered_by_state(ledger: Ledger) -> None:
    root = ledger.repo.root
    result = run(root, "status")
    assert result.exit_code == 0 and result.output.startswith("no artifacts yet")
    a, b = new_artifact(ledger, "First"), new_artifact(ledger, "Second")
    append_next(ledger, a)
    abandon(ledger, b, "dropped")
    result = run(root, "status")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0] == "artifacts (2: 1 idea, 1 abandoned)"
    assert lines[1].split() == ["ARTIFACT", "STATE", "STAGE", "STATUS", "AGE", "LAST", "EVENT",
                                "TITLE"]
    assert lines[2].split()[:4] == [a, "idea", "scout", "running"]
    assert "stage_started" in lines[2] and lines[2].endswith("First")
    assert lines[3].split()[:4] == [b, "abandoned", "-", "abandoned"] and "Second" in lines[3]
    # columns line up under their headers
    assert lines[2].index("idea") == lines[1].index("STATE")
    assert lines[4] == "lines" and lines[5].split()[:2] == ["LINE", "STATE"]
    data = as_json(run(root, "status", "--json"))
    by_id = {s["artifact"]: s for s in data["artifacts"]}
    assert (by_id[a]["state"], by_id[a]["stage"], by_id[a]["status"]) == ("idea", "scout", "running")
    assert by_id[a]["events"] == 1 and by_id[a]["cell"] == f"{a}.scout.0001"
    assert (by_id[b]["state"], by_id[b]["last_event"], by_id[b]["problem"]) == (
        "abandoned", "abandoned", None)


def test_show_text_json_and_bad_ids(ledger: Ledger) -> None:
    root = ledger.repo.root
    a = new_intake(ledger, title="alpha one", demand="gh:x/y#1", consumers=["erik"],
                      acceptance=["works", "is fast"]).artifact
    b = new_artifact(ledger, "alpha two")
    append_next(ledger, a)
    result = run(root, "show", a[:9])  # an unambiguous prefix
    assert result.exit_code == 0
    assert result.output.splitlines()[:2] == [
        f"{a}: alpha one", f"  state idea  stage scout (running)  cell {a}.scout.0001"]
    assert "    [1] is fast" in result.output and "#1   stage_started" in result.output
    data = as_json(run(root, "show", a, "--json"))
    assert data["artifact"] == a and data["attempts"] == {"scout": 1}
    assert [e["kind"] for e in data["events"]] == ["stage_started"]
    assert data["events"][0]["file"].startswith(f"factory/artifacts/{fanned(a)}/0001-stage_started-")
    result = run(root, "show", "alpha")
    assert result.exit_code == 2 and "ambiguous" in result.output
    assert a in result.output and b in result.output
    for bad in ("../factory", "/etc/passwd", "a/b"):
        for command in ("show", "log"):
            result = run(root, command, bad)
            assert result.exit_code == 2 and "is not an artifact id" in result.output
    result = run(root, "show", "zzz")
    assert result.exit_code == 2 and "no artifact matches 'zzz'" in result.output


def test_log_reads_git_history(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    root = ledger.repo.root
    aid = new_artifact(ledger)
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Cell Runner")
    monkeypatch.setenv("GIT_AUTHOR_DATE", "2026-02-03T04:05:06+00:00")
    append_next(ledger, aid)
    result = run(root, "log", aid)
    assert result.exit_code == 0
    lines = result.output.splitlines()
    commits = git(root, "log", "--format=%H", "-2").split()[::-1]
    assert len(lines) == 2
    assert lines[0].startswith(f"{commits[0][:10]}  2026-01-02T03:04:05+00:00  Factory Test")
    assert "#0     intake " in lines[0] and lines[0].endswith("intake: Fix login timeout")
    assert lines[1].startswith(f"{commits[1][:10]}  2026-02-03T04:05:06+00:00  Cell Runner")
    assert "#1     stage_started " in lines[1]
    data = as_json(run(root, "log", aid, "--json"))
    assert [e["commit"] for e in data] == commits
    assert data[1]["trailers"]["Factory-Event"] == ["stage_started"]
    assert data[1]["author"] == "Cell Runner <test@factory.invalid>"


def test_cli_subprocess_end_to_end(factory_repo: Path) -> None:
    proc = cli("intake", "Fix login timeout", *INTAKE, cwd=factory_repo)
    assert proc.returncode == 0, proc.stderr
    aid = proc.stdout.split()[0]
    proc = cli("status", "--json", cwd=factory_repo / "factory")  # any path inside the repo
    assert [s["artifact"] for s in json.loads(proc.stdout)["artifacts"]] == [aid]
    proc = cli("verify", cwd=factory_repo)
    assert (proc.returncode, proc.stdout) == (0, "ledger ok: 1 artifact(s)\n")
    proc = cli("show", "nope", cwd=factory_repo)
    assert proc.returncode == 2 and proc.stderr.startswith("error: no artifact matches")
    assert "Traceback" not in proc.stderr


def test_typos_get_did_you_mean(ledger: Ledger) -> None:
    root = ledger.repo.root
    aid = new_artifact(ledger)
    result = run(root, "statsu")
    assert result.exit_code == 2 and "did you mean status" in result.output
    typo = aid[:-1] + ("0" if aid[-1] != "0" else "1")
    result = run(root, "show", typo)
    assert result.exit_code == 2 and f"did you mean {aid}?" in result.output


def test_json_errors_are_json_on_stdout(ledger: Ledger) -> None:
    result = CliRunner().invoke(main, ["show", "nope", "--json", "--repo", str(ledger.repo.root)])
    assert result.exit_code == 2
    data = json.loads(result.stdout)
    assert data["ok"] is False and data["exit_code"] == 2 and "no artifact matches" in data["error"]
    assert "error: no artifact matches" in result.stderr


def test_a_cli_run_freezes_the_collector_before_python_tears_down(tmp_path: Path) -> None:
    """The command group registers gc.freeze at exit once; a plain import does not."""
    probe = ("import atexit, gc, sys\n"
             "atexit.register(lambda: print('frozen', gc.get_freeze_count() > 0))\n"
             "from gptme_factory.cli import main\n"
             "if sys.argv[1] == 'run':\n"
             "    main(['verify', '--help'], standalone_mode=False)\n"
             "    main(['status', '--help'], standalone_mode=False)\n")
    for arg, want in (("run", "frozen True"), ("import", "frozen False")):
        proc = subprocess.run([sys.executable, "-c", probe, arg], capture_output=True,
                              text=True, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.splitlines()[-1] == want
