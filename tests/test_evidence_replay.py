"""The gates on real upstream bug fixes: the real fix is verified, its negative twins are not.

The vendored more-itertools history (tests/data/upstream/, one commit per PyPI release, MIT)
is registered as a target; each fix of its manifest runs through the real engine and gates
(real git, real subprocesses, clean checkouts of the target). A cell's work is a commit made
with git plumbing here: the "fix" is the fix release's tree on top of the base release (or of
the reproduction), the "twin" the base release plus the fix release's regression test file.

Accepted: every real fix through the bugfix line (scout -> reproduce -> build -> verify), and
on the default line (scout -> build -> verify) the four whose regression test is new in the
fix release (the other two change a test that passes at the base: their plan is refused
there, rightly). Refused, each with its sentence: the regression test without the fix (and a
verifier claiming it passes), an unrelated change, an empty change, a plan of `true` or of
`test -f` on a file the base already has, a plan that only runs an unrelated suite, a suite
slower than the check time limit, a flaky check, a "reproduction" that is the fix, and one
that fails for another reason than the issue's.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from gptme_factory.cli import main
from gptme_factory.ledger.config import bugfix_line, default_line
from gptme_factory.ledger.store import Ledger
from gptme_factory.line import engine, transitions
from gptme_factory.line.intake import intake as new_intake
from gptme_factory.line.verify import verify_ledger
from tests.conftest import git
from tests.targets_helpers import register

DATA = Path(__file__).parent / "data" / "upstream"
MANIFEST = yaml.safe_load((DATA / "more-itertools.yaml").read_text(encoding="utf-8"))
FIXES: dict[str, dict[str, Any]] = {f["id"]: f for f in MANIFEST["fixes"]}
SUITE = "python3 -m unittest -q"
TARGET = "more-itertools"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (DATA / "more-itertools.bundle").exists(),
                       reason="tests/data/upstream/more-itertools.bundle is absent: see "
                              "tests/data/upstream/README.md to rebuild it"),
]


@pytest.fixture(autouse=True)
def python3_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """`python3` in a check is this interpreter (its version ran the manifest)."""
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")


def on_target(ledger: Ledger, tmp_path: Path, fix: dict[str, Any], *,
              timeout_s: float = 120) -> tuple[Ledger, Path]:
    """The bundle cloned as target TARGET, its base branch at the fix's base release; lines
    `default` and `bugfix` with the check time limit `timeout_s`."""
    clone = tmp_path / TARGET
    git(tmp_path, "clone", "-q", str(DATA / "more-itertools.bundle"), str(clone))
    git(clone, "remote", "remove", "origin")
    git(clone, "checkout", "-q", "-b", "base", fix["base_commit"])
    register(ledger, TARGET, clone, checks=[SUITE])
    config = ledger.dir / "factory.yaml"
    data = yaml.safe_load(config.read_text())
    lines = {}
    for name, line in (("default", default_line()), ("bugfix", bugfix_line())):
        stages = [st.model_copy(update={"check_timeout_s": timeout_s}) for st in line.stages]
        lines[name] = line.model_copy(update={"stages": stages}).model_dump(
            mode="json", exclude_none=True)
    data["lines"] = lines
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    git(ledger.repo.root, "commit", "-qam", "lines for the upstream fixes")
    return Ledger.open(ledger.repo.root), clone


def commit(clone: Path, tree: str, parent: str, message: str) -> str:
    """A commit of `tree` on top of `parent`, made with git plumbing."""
    return git(clone, "commit-tree", tree, "-p", parent, "-m", message).strip()


def tree_with(clone: Path, base: str, files: dict[str, str]) -> str:
    """The tree of `base` with `files` (path -> the commit to take it from) replaced."""
    index = clone / ".git" / "evidence-index"
    env = {**os.environ, "GIT_INDEX_FILE": str(index)}
    def run(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=clone, env=env, check=True,
                              capture_output=True, text=True).stdout

    run("read-tree", base)
    for path, source in files.items():
        blob = run("rev-parse", f"{source}:{path}").strip()
        run("update-index", "--add", "--cacheinfo", f"100644,{blob},{path}")
    tree = run("write-tree").strip()
    index.unlink()
    return tree


def twin(clone: Path, fix: dict[str, Any], parent: str | None = None) -> str:
    """The base release plus only the fix release's regression test file (no fix)."""
    base = parent or fix["base_commit"]
    tree = tree_with(clone, base, {fix["regression_test_file"]: fix["fix_commit"]})
    return commit(clone, tree, base, f"test: reproduce {fix['id']}")


def changed(clone: Path, base: str, head: str) -> list[str]:
    return sorted(git(clone, "diff", "--name-only", base, head).split())


def intake(ledger: Ledger, fix: dict[str, Any], line: str = "default") -> str:
    issue = fix["issue"]
    number = issue["url"].rsplit("/", 1)[1]
    return new_intake(
        ledger, title=fix["subject"], demand=f"gh:more-itertools/more-itertools#{number}",
        consumers=[issue["reporter"]], problem=" ".join(issue["summary"].split()),
        acceptance=[f"{fix['id']}: the reported bug is gone", "the full suite still passes"],
        line=line, target=TARGET).artifact


def scout(ledger: Ledger, aid: str, plan: list[str]) -> engine.AdvanceResult:
    """Hand over a scout memo planning `plan` (each tied to criterion 0) and judge it."""
    s = engine.start_stage(ledger, aid)
    engine.submit(ledger, s.cell, {
        "kind": "scout_memo", "artifact": aid,
        "files": [{"path": "more_itertools/more.py", "why": "the function lives here"}],
        "approach": "fix the function; the regression test shows it",
        "verification_plan": [{"command": c, "proves": "the bug is gone", "criteria": [0]}
                              for c in plan],
        "criteria": [{"criterion": 0, "plan": "the regression test"},
                     {"criterion": 1, "plan": "the full suite"}]})
    return engine.advance(ledger, aid)


def build(ledger: Ledger, clone: Path, aid: str, head: str | None = None,
          make: Any = None) -> engine.AdvanceResult:
    """Hand over a builder patch of `head` (or of `make(base)`) and judge it."""
    b = engine.start_stage(ledger, aid)
    assert b.base_commit is not None
    head = head or make(b.base_commit)
    engine.submit(ledger, b.cell, {
        "kind": "builder_patch", "artifact": aid, "status": "success",
        "branch": f"factory/{b.cell}", "base": b.base_commit, "head": head,
        "summary": "the fix", "files_changed": changed(clone, b.base_commit, head) or ["x"],
        "claims": [{"criterion": 0, "claim": "fixed", "evidence": "the regression test"},
                   {"criterion": 1, "claim": "kept", "evidence": "the suite"}]})
    return engine.advance(ledger, aid)


def verify(ledger: Ledger, aid: str, head: str,
           codes: dict[str, int] | None = None) -> engine.AdvanceResult:
    """Hand over a report of the whole contract at `head` (exit 0, else `codes[command]`:
    verdict fail) and judge it."""
    _, view = transitions.load(ledger, aid)
    assert view.contract is not None
    codes = codes or {}
    verdict = "fail" if any(codes.values()) else "pass"
    v = engine.start_stage(ledger, aid)
    engine.submit(ledger, v.cell, {
        "kind": "verifier_report", "artifact": aid, "commit": head,
        "checks": [{"command": c.command, "check": c.id, "exit_code": codes.get(c.command, 0)}
                   for c in view.contract.checks],
        "verdict": verdict, "failure_summary": "" if verdict == "pass" else "it fails",
        "criteria": [{"criterion": 0, "verdict": verdict, "evidence": "regression test"},
                     {"criterion": 1, "verdict": verdict, "evidence": "suite"}]})
    return engine.advance(ledger, aid)


def state(ledger: Ledger, aid: str) -> str:
    return transitions.load(ledger, aid)[1].state


# -- the real fixes are verified ----------------------------------------------------------

# The regression test of these fixes is new in the fix release: its check fails at the base.
# The other two change a test that exists at the base, and passes there: on the default line
# their plan is refused (no check can fail; see the negative twins), on the bugfix line the
# reproduction makes it fail first.
FAILS_AT_BASE = ["partition-pred-none", "spy-head-aliasing", "split-before-empty",
                 "iterate-stopiteration"]


def fix_tree(clone: Path, fix: dict[str, Any]) -> str:
    return git(clone, "rev-parse", f"{fix['fix_commit']}^{{tree}}").strip()


@pytest.mark.parametrize("fix_id", FAILS_AT_BASE)
def test_the_real_fix_is_verified(ledger: Ledger, tmp_path: Path, fix_id: str) -> None:
    fix = FIXES[fix_id]
    ledger, clone = on_target(ledger, tmp_path, fix)
    aid = intake(ledger, fix)
    planned = scout(ledger, aid, [fix["check"]])
    assert planned.passed, planned.reasons
    built = build(ledger, clone, aid, make=lambda base: commit(
        clone, fix_tree(clone, fix), base, f"fix: {fix['subject']}"))
    assert built.passed, built.reasons
    assert built.outcome is not None and built.outcome.commit
    res = verify(ledger, aid, built.outcome.commit)
    assert res.passed, res.reasons
    assert state(ledger, aid) == "verified"
    evidence = res.outcome.evidence if res.outcome else None
    assert evidence is not None and evidence.contract_fixed
    verdicts = {r.command: r.verdict for r in evidence.rows}
    assert verdicts == {SUITE: "pass-to-pass", fix["check"]: "fail-to-pass"}
    assert any(n.startswith("fail-to-pass: ") for n in res.outcome.notes)  # type: ignore[union-attr]
    assert verify_ledger(ledger) == []


@pytest.mark.parametrize("fix_id", list(FIXES))
def test_every_real_fix_is_reproduced_then_verified_on_the_bugfix_line(
        ledger: Ledger, tmp_path: Path, fix_id: str) -> None:
    fix = FIXES[fix_id]
    ledger, clone = on_target(ledger, tmp_path, fix)
    aid = intake(ledger, fix, line="bugfix")
    planned = scout(ledger, aid, [fix["check"]])
    assert planned.passed, planned.reasons
    r = engine.start_stage(ledger, aid)
    assert r.base_commit == fix["base_commit"]
    handoff = {"kind": "reproduction", "artifact": aid, "status": "success",
               "branch": f"factory/{r.cell}", "base": fix["base_commit"],
               "summary": "the regression test alone", "checks": [fix["check"]],
               "failure": fix["twin_fails_with"]}
    if fix_id == "partition-pred-none":
        # a "reproduction" that is the fix itself reproduces nothing
        fixed = commit(clone, fix_tree(clone, fix), fix["base_commit"], "the fix")
        engine.submit(ledger, r.cell, {**handoff, "head": fixed, "files_changed": changed(
            clone, fix["base_commit"], fixed)})
        res = engine.advance(ledger, aid)
        assert not res.passed
        assert any(f"`{fix['check']}` passes at the reproduction" in x for x in res.reasons)
        # and one that fails for another reason than the issue's does not count either
        r = engine.start_stage(ledger, aid)
        repro = twin(clone, fix)
        engine.submit(ledger, r.cell, {**handoff, "branch": f"factory/{r.cell}", "head": repro,
                                       "files_changed": [fix["regression_test_file"]],
                                       "failure": "KeyError: 'nothing of the kind'"})
        res = engine.advance(ledger, aid)
        assert not res.passed
        assert any("its output does not show `KeyError: 'nothing of the kind'`" in x
                   for x in res.reasons), res.reasons
        r = engine.start_stage(ledger, aid)
    # the real reproduction: the regression test alone, failing for the issue's reason
    repro = twin(clone, fix)
    engine.submit(ledger, r.cell, {**handoff, "branch": f"factory/{r.cell}", "head": repro,
                                   "files_changed": [fix["regression_test_file"]]})
    res = engine.advance(ledger, aid)
    assert res.passed, res.reasons
    assert any("reproduces: " in n and fix["twin_fails_with"] in n
               for n in res.outcome.notes)  # type: ignore[union-attr]
    # the build starts on the reproduction; the fix release's tree on top of it
    built = build(ledger, clone, aid, make=lambda base: commit(clone, fix_tree(clone, fix),
                                                                base, "fix"))
    assert built.passed, built.reasons
    head = built.outcome.commit  # type: ignore[union-attr]
    assert git(clone, "rev-parse", f"{head}^").strip() == repro
    res = verify(ledger, aid, head)  # type: ignore[arg-type]
    assert res.passed, res.reasons
    assert state(ledger, aid) == "verified"
    rows = {r.command: r.verdict for r in res.outcome.evidence.rows}  # type: ignore[union-attr]
    # from the reproduction: the regression test fails there and passes now
    assert rows[fix["check"]] == "fail-to-pass"
    assert verify_ledger(ledger) == []
    if fix_id == "partition-pred-none":
        # `show` carries the evidence table of every gate that ran checks
        shown = CliRunner().invoke(main, ["show", aid, "--repo", str(ledger.repo.root)])
        assert shown.exit_code == 0, shown.output
        out = shown.output.splitlines()
        i = out.index("  evidence [verify, gate evidence passed]:")
        assert out[i + 1] == (f"    evidence: fail-to-pass; base `{repro[:12]}` (tree "
                              f"`{git(clone, 'rev-parse', repro + '^{tree}').strip()[:12]}`), "
                              f"head `{head[:12]}` (tree "
                              f"`{git(clone, 'rev-parse', f'{head}^{{tree}}').strip()[:12]}`)")
        assert out[i + 2].split() == ["check", "criteria", "base", "head", "duration",
                                      "verdict"]
        table = out[i + 3:i + 5]  # the suite (target-1), then the regression check (plan-1)
        assert all(ln.startswith("    python3 -m unittest -q") for ln in table)
        suite, check = table[0].split(), table[1].split()
        assert suite[-7:-3] == ["exit", "1", "exit", "0"] and suite[-2:] == ["s", "fail-to-pass"]
        assert check[-14:-3] == ["0", "exit", "1", "/", "exit", "1", "exit", "0", "/", "exit", "0"]
        assert check[-2:] == ["s", "fail-to-pass"]
        assert "  evidence [reproduce, gate reproduce passed]:" in out
        assert "  evidence [reproduce, gate reproduce FAILED]:" in out


# -- negative twins -----------------------------------------------------------------------

def test_the_test_without_the_fix_is_not_verified(ledger: Ledger, tmp_path: Path) -> None:
    fix = FIXES["spy-head-aliasing"]
    ledger, clone = on_target(ledger, tmp_path, fix)
    aid = intake(ledger, fix)
    assert scout(ledger, aid, [fix["check"]]).passed
    only_test = twin(clone, fix)
    built = build(ledger, clone, aid, head=only_test)
    assert built.passed  # a real commit with real changes: the patch gate cannot tell
    # a verifier that claims it passes is caught by what the factory saw
    res = verify(ledger, aid, only_test)
    assert not res.passed and state(ledger, aid) != "verified"
    assert (f"the verifier claims `{fix['check']}` exited 0; the factory observed: exited 1"
            in res.reasons)
    # an honest one reports the failure: no fix, back to the build
    res = verify(ledger, aid, only_test, codes={fix["check"]: 1, SUITE: 1})
    assert not res.passed and state(ledger, aid) != "verified"
    assert any(f"`{fix['check']}` failed at commit {only_test[:12]} (it fails at the base "
               "too: not fixed)" in x for x in res.reasons), res.reasons
    assert any(f"`{SUITE}` failed at commit {only_test[:12]} (it passed at the base: a "
               "regression)" in x for x in res.reasons), res.reasons
    assert res.outcome is not None and res.outcome.rework_to == "build"


def test_an_unrelated_or_empty_change_is_not_verified(ledger: Ledger, tmp_path: Path) -> None:
    fix = FIXES["split-before-empty"]
    ledger, clone = on_target(ledger, tmp_path, fix)
    aid = intake(ledger, fix)
    assert scout(ledger, aid, [fix["check"]]).passed
    empty = build(ledger, clone, aid, make=lambda base: base)
    assert not empty.passed and any("no diff between base" in x for x in empty.reasons)
    unrelated = build(ledger, clone, aid, make=lambda base: commit(
        clone, tree_with(clone, base, {"README.rst": fix["fix_commit"]}), base, "docs"))
    assert unrelated.passed
    res = verify(ledger, aid, unrelated.outcome.commit,  # type: ignore[union-attr,arg-type]
                 codes={fix["check"]: 1})
    assert not res.passed and state(ledger, aid) != "verified"
    assert any(f"`{fix['check']}` failed at commit" in x for x in res.reasons)


@pytest.mark.parametrize("plan", ["true", "test -f more_itertools/__init__.py",
                                  "python3 -m unittest -q tests.test_recipes"])
def test_a_plan_whose_checks_cannot_fail_is_refused(ledger: Ledger, tmp_path: Path,
                                                    plan: str) -> None:
    fix = FIXES["split-after-maxsplit"]  # fixed in more.py: the recipes' tests are unrelated
    ledger, _ = on_target(ledger, tmp_path, fix)
    aid = intake(ledger, fix)
    res = scout(ledger, aid, [plan])
    assert not res.passed and state(ledger, aid) == "idea"
    [reason] = res.reasons
    assert reason.startswith("no check of the contract can fail: every one passes at base "
                             f"{fix['base_commit'][:12]} (`{SUITE}`, `{plan}`)")
    _, view = transitions.load(ledger, aid)
    assert view.contract is None  # nothing fixed: nothing can be built on it


def test_a_suite_slower_than_the_limit_is_refused(ledger: Ledger, tmp_path: Path) -> None:
    fix = FIXES["iterate-stopiteration"]  # its suite takes seconds
    ledger, _ = on_target(ledger, tmp_path, fix, timeout_s=0.2)
    aid = intake(ledger, fix)
    res = scout(ledger, aid, [SUITE])
    assert not res.passed and state(ledger, aid) == "idea"
    assert res.reasons[0].startswith(f"`{SUITE}` did not finish within its time limit of "
                                     f"0.2 s at base {fix['base_commit'][:12]}")
    assert "raise lines.default.stages.2.check_timeout_s (stage verify)" in res.reasons[0]


def test_a_flaky_check_is_refused(ledger: Ledger, tmp_path: Path) -> None:
    fix = FIXES["unique-in-window-semantics"]
    ledger, _ = on_target(ledger, tmp_path, fix)
    aid = intake(ledger, fix)
    counter = tmp_path / "runs"
    flaky = ("python3 -c " + shlex.quote(
        f"import pathlib, sys; p = pathlib.Path({str(counter)!r}); "
        "n = int(p.read_text()) if p.exists() else 0; p.write_text(str(n + 1)); "
        "sys.exit((n + 1) % 2)"))
    res = scout(ledger, aid, [flaky])
    assert not res.passed
    assert any(x.startswith(f"`{flaky}` is flaky: exit 1, exit 0 (2 runs) on runs of the "
                            "same commit") for x in res.reasons), res.reasons
    assert counter.read_text() == "2"
