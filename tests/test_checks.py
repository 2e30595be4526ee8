"""Verification commands: exit codes, bounded output, timeouts that kill the whole tree."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gptme_factory.line.checks import TAIL_LINES, passed, run_check, run_checks, tail


def test_exit_code_output_and_cwd(tmp_path: Path) -> None:
    (tmp_path / "marker").write_text("here\n")
    r = run_check("cat marker; echo to-stderr >&2; exit 4", tmp_path, 10)
    assert (r.exit_code, r.timed_out, r.output_tail) == (4, False, "here\nto-stderr")
    assert not passed(r)
    ok = run_check("true", tmp_path, 10)
    assert passed(ok) and ok.output_tail == "" and ok.duration_s < 5


def test_stdin_is_closed(tmp_path: Path) -> None:
    r = run_check("cat", tmp_path, 5)  # would wait for input forever if stdin were inherited
    assert passed(r) and r.duration_s < 4


def test_only_a_bounded_tail_is_kept(tmp_path: Path) -> None:
    r = run_check("seq 1 200000; exit 7", tmp_path, 30)
    lines = r.output_tail.splitlines()
    assert r.exit_code == 7 and len(lines) == TAIL_LINES and lines[-1] == "200000"
    assert tail("x" * 10_000, chars=100) == "x" * 100
    assert tail("a\nb\nc\n\n", lines=2) == "b\nc"


def test_timeout_kills_the_whole_tree_and_is_a_failure(tmp_path: Path) -> None:
    start = time.monotonic()
    r = run_check("trap '' TERM; (sleep 30; echo late > late.txt) & echo started; sleep 30",
                  tmp_path, 1.0)
    assert time.monotonic() - start < 10
    assert r.timed_out and r.exit_code is None and not passed(r)
    assert r.output_tail == "started\n\n[timed out after 1 s and was killed]"
    time.sleep(0.2)
    assert not (tmp_path / "late.txt").exists()


def test_background_children_do_not_hold_the_check(tmp_path: Path) -> None:
    start = time.monotonic()
    r = run_check("(sleep 30; touch late.txt) & echo done", tmp_path, 20)
    assert (r.exit_code, r.output_tail, r.timed_out) == (0, "done", False)
    assert time.monotonic() - start < 5
    time.sleep(0.2)
    assert not (tmp_path / "late.txt").exists()  # killed with the rest of its group


@pytest.mark.slow
def test_a_detached_descendant_cannot_hang_the_gate(tmp_path: Path) -> None:
    start = time.monotonic()
    r = run_check("setsid sleep 4 & sleep 0.3; echo done", tmp_path, 20)
    assert time.monotonic() - start < 3.9
    assert r.exit_code == 0 and r.output_tail.startswith("done")
    assert "stopped reading" in r.output_tail


def test_run_checks_runs_every_command(tmp_path: Path) -> None:
    results = run_checks(["exit 1", "echo second"], tmp_path, 10)
    assert [r.exit_code for r in results] == [1, 0]
    assert results[1].output_tail == "second"
