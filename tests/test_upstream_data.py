"""The vendored upstream fixes under tests/data/upstream/ are what their manifest says.

The bundle holds one commit per more-itertools PyPI release (built from the sdists by
tests/data/upstream/build_bundle.py, which never runs here). On a clone of it, with real git
and real subprocesses: the history is exactly the manifest's releases, each commit naming its
sdist and hash, with the vendored licence in every one; and for every fix the regression
check fails on the test-only twin (the base release plus the fix release's regression test
file) for the documented reason, passes at the fix release, the project's full suite passes
there, and the manifest's file lists are exactly `git diff --name-only base fix`.
Tests that need the bundle skip, saying how to rebuild it, when it is absent.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from tests.conftest import git

DATA = Path(__file__).parent / "data" / "upstream"
MANIFEST = DATA / "more-itertools.yaml"
HEX40 = re.compile(r"^[0-9a-f]{40}$")
HEX64 = re.compile(r"^[0-9a-f]{64}$")
TOP_KEYS = {
    "kind", "schema_version", "project", "upstream", "license", "license_file", "bundle",
    "bundle_ref", "bundle_head", "build_script", "history", "python", "releases", "fixes",
}
RELEASE_KEYS = {"version", "commit", "sdist", "sha256"}
FIX_KEYS = {
    "id", "base_release", "fix_release", "base_commit", "fix_commit", "subject", "check",
    "full_suite", "regression_test_file", "twin_fails_with", "fixed_in", "source_files",
    "test_files", "other_files", "release_also_changed", "issue", "pull_request",
    "upstream_author", "upstream_commit", "upstream_commit_url",
}
# A twin that fails only because the newer test file cannot even load or finds no function
# proves nothing about the bug; these must not appear in its output.
NOT_THE_BUG = ("ModuleNotFoundError", "ImportError", "AttributeError")
CHECK_TIMEOUT = 120
SUITE_TIMEOUT = 600


def load_manifest() -> dict[str, Any]:
    """The manifest as a dict (PyYAML directly, so this test does not follow package moves)."""
    data = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{MANIFEST} must hold a mapping"
    return data


def load_build_script() -> ModuleType:
    """build_bundle.py as a module, imported without running it."""
    path = DATA / "build_bundle.py"
    spec = importlib.util.spec_from_file_location("upstream_build_bundle", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MANIFEST_DATA = load_manifest()
RELEASES: list[dict[str, Any]] = MANIFEST_DATA["releases"]
FIXES: list[dict[str, Any]] = MANIFEST_DATA["fixes"]
COMMIT_OF = {release["version"]: release["commit"] for release in RELEASES}


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


def git_bytes(repo: Path, *args: str) -> bytes:
    """Run git in `repo` and return its stdout unchanged (raises on failure)."""
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True).stdout


def clone_bundle(dest: Path) -> Path:
    """Clone the vendored bundle into `dest`, or skip when it is not there."""
    bundle = DATA / MANIFEST_DATA["bundle"]
    if not bundle.is_file():
        pytest.skip(f"{bundle.name} is absent: rebuild it as tests/data/upstream/README.md says")
    subprocess.run(
        ["git", "clone", "-q", str(bundle), str(dest)], check=True, capture_output=True, text=True
    )
    git(dest, "config", "user.name", "twin")
    git(dest, "config", "user.email", "twin@example.invalid")
    return dest


def test_manifest_releases_match_the_build_script() -> None:
    assert set(MANIFEST_DATA) == TOP_KEYS
    assert MANIFEST_DATA["kind"] == "upstream_fixes"
    assert MANIFEST_DATA["schema_version"] == 2
    assert (DATA / MANIFEST_DATA["build_script"]).is_file()
    versions = [release["version"] for release in RELEASES]
    assert len(versions) == len(set(versions)), "release versions must be unique"
    for release in RELEASES:
        assert set(release) == RELEASE_KEYS, release
        assert HEX40.match(release["commit"]) and HEX64.match(release["sha256"]), release
        assert release["sdist"] == f"more-itertools-{release['version']}.tar.gz", release
    assert len(set(COMMIT_OF.values())) == len(RELEASES), "one commit per release"
    assert MANIFEST_DATA["bundle_head"] == RELEASES[-1]["commit"]
    # The script that builds the bundle downloads exactly these releases, in this order.
    script = load_build_script()
    assert [(r["version"], r["sha256"]) for r in RELEASES] == list(script.RELEASES)
    assert script.BUNDLE_NAME == MANIFEST_DATA["bundle"]
    assert script.LICENSE_NAME == MANIFEST_DATA["license_file"]


def test_manifest_fixes_are_complete_and_consistent() -> None:
    versions = [release["version"] for release in RELEASES]
    assert len(FIXES) >= 4
    ids = [fix["id"] for fix in FIXES]
    assert len(ids) == len(set(ids)), "fix ids must be unique"
    for fix in FIXES:
        name = fix["id"]
        assert set(fix) == FIX_KEYS, name
        # The fix is a release and its base is the release right before it.
        assert fix["fix_commit"] == COMMIT_OF[fix["fix_release"]], name
        assert fix["base_commit"] == COMMIT_OF[fix["base_release"]], name
        assert versions.index(fix["base_release"]) == versions.index(fix["fix_release"]) - 1
        assert HEX40.match(fix["upstream_commit"]), name
        assert fix["upstream_commit_url"].endswith("/commit/" + fix["upstream_commit"]), name
        assert {"url", "reporter", "summary"} <= set(fix["issue"]), name
        assert fix["twin_fails_with"].strip() and fix["release_also_changed"].strip(), name
        # Every changed file is in exactly one list, by where it lives.
        assert fix["source_files"] and fix["test_files"], name
        assert all(p.startswith("more_itertools/") for p in fix["source_files"]), name
        assert all(p.startswith("tests/") for p in fix["test_files"]), name
        assert not any(
            p.startswith(("more_itertools/", "tests/")) for p in fix["other_files"]
        ), name
        assert set(fix["fixed_in"]) <= set(fix["source_files"]), name
        # The check runs one test, and that test lives in the regression test file.
        argv = shlex.split(fix["check"])
        assert argv[:3] == ["python3", "-m", "unittest"], name
        module_file = "/".join(argv[-1].split(".")[:2]) + ".py"
        assert module_file == fix["regression_test_file"], name
        assert fix["regression_test_file"] in fix["test_files"], name
        assert shlex.split(fix["full_suite"])[:3] == ["python3", "-m", "unittest"], name


def test_bundles_are_marked_binary_for_git() -> None:
    attributes = (DATA / ".gitattributes").read_text().splitlines()
    assert "*.bundle binary" in attributes


def test_bundle_is_the_release_history_with_the_licence(tmp_path: Path) -> None:
    repo = clone_bundle(tmp_path / "clone")
    assert git(repo, "rev-parse", "HEAD").strip() == MANIFEST_DATA["bundle_head"]
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD").strip() == "master"
    assert git(repo, "rev-parse", "--is-shallow-repository").strip() == "false"
    verify = subprocess.run(
        ["git", "bundle", "verify", str(DATA / MANIFEST_DATA["bundle"])],
        cwd=repo, capture_output=True, text=True, check=True,
    )
    assert "complete history" in verify.stdout + verify.stderr
    # Linear, oldest first, exactly the manifest's releases.
    log = git(repo, "log", "--reverse", "--format=%H %P", "master").splitlines()
    assert [line.split()[0] for line in log] == [r["commit"] for r in RELEASES]
    assert all(len(line.split()) == (1 if i == 0 else 2) for i, line in enumerate(log))
    licence = (DATA / MANIFEST_DATA["license_file"]).read_bytes()
    assert "MIT" in MANIFEST_DATA["license"]
    assert b"Permission is hereby granted, free of charge" in licence
    for release in RELEASES:
        commit, version = release["commit"], release["version"]
        subject = git(repo, "log", "-1", "--format=%s", commit).strip()
        assert subject == (
            f"more-itertools {version} (PyPI sdist {release['sdist']}, "
            f"sha256 {release['sha256']})"
        )
        assert git(repo, "rev-parse", f"refs/tags/{version}^{{commit}}").strip() == commit
        assert git_bytes(repo, "show", f"{commit}:LICENSE") == licence, version
        init = git(repo, "show", f"{commit}:more_itertools/__init__.py")
        assert f"__version__ = '{version}'" in init or version == "8.0.2", version
        tree = git(repo, "ls-tree", "-r", "--name-only", commit).split()
        assert "PKG-INFO" not in tree and not any(".egg-info/" in p for p in tree), version


@pytest.mark.slow
@pytest.mark.parametrize("fix", FIXES, ids=[fix["id"] for fix in FIXES])
def test_fix_fails_as_twin_and_passes_at_the_fix(fix: dict[str, Any], tmp_path: Path) -> None:
    repo = clone_bundle(tmp_path / "clone")
    base, head = fix["base_commit"], fix["fix_commit"]
    assert git(repo, "rev-parse", f"{head}^1").strip() == base, "base must be the fix's parent"
    changed = git(repo, "diff", "--name-only", base, head).split()
    assert sorted(changed) == sorted(
        fix["source_files"] + fix["test_files"] + fix["other_files"]
    )

    # The test-only twin: the base release plus the fix release's regression test file.
    test_file = fix["regression_test_file"]
    git(repo, "checkout", "-q", "--detach", base)
    git(repo, "checkout", head, "--", test_file)
    git(repo, "commit", "-q", "-m", f"test-only twin of {fix['id']}")
    assert git(repo, "diff", "--name-only", base, "HEAD").split() == [test_file]
    where = run("python3 -c 'import more_itertools; print(more_itertools.__file__)'", repo, 60)
    assert Path(where.stdout.strip()).resolve().is_relative_to(repo.resolve()), where.stdout

    twin = run(fix["check"], repo, CHECK_TIMEOUT)
    twin_out = twin.stdout + twin.stderr
    assert twin.returncode == 1, twin_out
    assert "Ran 1 test" in twin_out and "FAILED (" in twin_out, twin_out
    assert fix["twin_fails_with"] in twin_out, twin_out
    assert not any(word in twin_out for word in NOT_THE_BUG), twin_out

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
