"""The vendored upstream fixes under tests/data/upstream/ are what their manifest says.

For every fix in the manifest, on a clone of the bundle, with real git and real
subprocesses: the regression check fails on the test-only twin (the base plus the fix's
test files) for the documented reason, passes at the fix, the project's full suite passes
at the fix, and the manifest's file lists are exactly `git diff --name-only base fix`.
Tests that need the bundle skip, saying how to rebuild it, when it is absent.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gptme_factory import yamlio
from tests.conftest import git

DATA = Path(__file__).parent / "data" / "upstream"
MANIFEST = DATA / "more-itertools.yaml"
HEX40 = re.compile(r"^[0-9a-f]{40}$")
FIX_KEYS = {
    "id", "fix_commit", "base_commit", "subject", "author", "check", "full_suite",
    "twin_fails_with", "source_files", "test_files", "issue", "pull_request", "commit_url",
}
CHECK_TIMEOUT = 120
SUITE_TIMEOUT = 600


def load_manifest() -> dict[str, Any]:
    """The manifest as a dict (through the project's one YAML module)."""
    return yamlio.loads(MANIFEST.read_bytes(), str(MANIFEST))


MANIFEST_DATA = load_manifest()
FIXES: list[dict[str, Any]] = MANIFEST_DATA["fixes"]


def run(cmd: str, cwd: Path, timeout: int) -> subprocess.CompletedProcess[str]:
    """Run a manifest command in `cwd` with this interpreter's `python3` first on PATH."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    for var in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONWARNINGS"):
        env.pop(var, None)
    return subprocess.run(
        shlex.split(cmd), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def clone_bundle(dest: Path) -> Path:
    """Clone the vendored bundle into `dest`, or skip when it is not there."""
    bundle = DATA / MANIFEST_DATA["bundle"]
    if not bundle.is_file():
        pytest.skip(f"{bundle.name} is absent: rebuild it as tests/data/upstream/README.md says")
    subprocess.run(
        ["git", "clone", "-q", str(bundle), str(dest)], check=True, capture_output=True, text=True
    )
    return dest


def test_manifest_entries_are_complete_and_consistent() -> None:
    assert MANIFEST_DATA["kind"] == "upstream_fixes"
    assert MANIFEST_DATA["schema_version"] == 1
    assert HEX40.match(MANIFEST_DATA["bundle_head"])
    assert len(FIXES) >= 4
    ids = [fix["id"] for fix in FIXES]
    assert len(ids) == len(set(ids)), "fix ids must be unique"
    for fix in FIXES:
        assert set(fix) == FIX_KEYS, fix["id"]
        assert HEX40.match(fix["fix_commit"]) and HEX40.match(fix["base_commit"]), fix["id"]
        assert fix["commit_url"].endswith("/commit/" + fix["fix_commit"]), fix["id"]
        assert fix["source_files"] and fix["test_files"], fix["id"]
        assert not set(fix["source_files"]) & set(fix["test_files"]), fix["id"]
        assert all(path.startswith("tests/") for path in fix["test_files"]), fix["id"]
        assert {"url", "reporter", "summary"} <= set(fix["issue"]), fix["id"]
        # The check runs one test, and that test lives in a file the fix changed.
        argv = shlex.split(fix["check"])
        assert argv[:3] == ["python3", "-m", "unittest"], fix["id"]
        test_id = argv[-1]
        module_file = "/".join(test_id.split(".")[:2]) + ".py"
        assert module_file in fix["test_files"], f"{fix['id']}: {test_id} not in the test files"
        assert shlex.split(fix["full_suite"])[:3] == ["python3", "-m", "unittest"], fix["id"]


def test_bundles_are_marked_binary_for_git() -> None:
    attributes = (DATA / ".gitattributes").read_text().splitlines()
    assert "*.bundle binary" in attributes


@pytest.mark.slow
def test_bundle_is_standalone_with_the_recorded_head_and_licence(tmp_path: Path) -> None:
    repo = clone_bundle(tmp_path / "clone")
    assert git(repo, "rev-parse", "HEAD").strip() == MANIFEST_DATA["bundle_head"]
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD").strip() == "master"
    # A complete history: the clone has no shallow boundary and reaches the root commit.
    assert git(repo, "rev-parse", "--is-shallow-repository").strip() == "false"
    assert git(repo, "rev-list", "--max-parents=0", "HEAD").strip()
    licence = DATA / MANIFEST_DATA["license_file"]
    assert licence.read_text() == git(repo, "show", "HEAD:LICENSE")
    assert "MIT" in MANIFEST_DATA["license"]
    assert "Permission is hereby granted, free of charge" in licence.read_text()


@pytest.mark.slow
@pytest.mark.parametrize("fix", FIXES, ids=[fix["id"] for fix in FIXES])
def test_fix_fails_as_twin_and_passes_at_the_fix(fix: dict[str, Any], tmp_path: Path) -> None:
    repo = clone_bundle(tmp_path / "clone")
    base, head = fix["base_commit"], fix["fix_commit"]
    assert git(repo, "rev-parse", f"{head}^1").strip() == base, "base must be the fix's parent"
    changed = git(repo, "diff", "--name-only", base, head).split()
    assert sorted(changed) == sorted(fix["source_files"] + fix["test_files"])

    # The test-only twin: the base plus the fix's test files, committed.
    git(repo, "checkout", "-q", "--detach", base)
    git(repo, "checkout", head, "--", *fix["test_files"])
    git(repo, "commit", "-q", "-m", f"test-only twin of {fix['id']}")
    assert sorted(git(repo, "diff", "--name-only", base, "HEAD").split()) == sorted(
        fix["test_files"]
    )
    where = run("python3 -c 'import more_itertools; print(more_itertools.__file__)'", repo, 60)
    assert Path(where.stdout.strip()).resolve().is_relative_to(repo.resolve()), where.stdout

    twin = run(fix["check"], repo, CHECK_TIMEOUT)
    twin_out = twin.stdout + twin.stderr
    assert twin.returncode == 1, twin_out
    assert "Ran 1 test" in twin_out and "FAILED (" in twin_out, twin_out
    assert fix["twin_fails_with"] in twin_out, twin_out
    assert "ModuleNotFoundError" not in twin_out and "ImportError" not in twin_out, twin_out

    git(repo, "checkout", "-q", "--detach", head)
    fixed = run(fix["check"], repo, CHECK_TIMEOUT)
    fixed_out = fixed.stdout + fixed.stderr
    assert fixed.returncode == 0, fixed_out
    assert "Ran 1 test" in fixed_out and "\nOK" in fixed_out, fixed_out

    suite = run(fix["full_suite"], repo, SUITE_TIMEOUT)
    suite_out = suite.stdout + suite.stderr
    assert suite.returncode == 0, suite_out[-4000:]
    ran = re.search(r"^Ran (\d+) tests?", suite_out, re.MULTILINE)
    assert ran and int(ran.group(1)) > 100, suite_out[-4000:]
