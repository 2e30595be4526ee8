"""What `target add` can tell from a clone, each guess said in words.

- remote: `origin`, else the only remote, else none (a local-only project); its URL, and the
  GitHub OWNER/NAME when the URL is GitHub's (https or ssh).
- base branch: the remote's default branch (its `refs/remotes/R/HEAD`, else `git ls-remote
  --symref`), else the clone's current branch.
- test command: a Makefile `test` target (`make test`), else `npm test` for a package.json
  with a test script, else pytest or unittest for a Python project (pyproject.toml,
  setup.py, requirements*.txt).
- set-up: for Python, a venv in `$FACTORY_ENV` with the project and its test extra installed
  (pyproject) or its requirements; for npm, `npm ci` (or `npm install`) with `node_modules`
  shared between checkouts; the lock and manifest files found are the set-up inputs.

Files are read from the clone's working tree: these are guesses for a person to check
(`target show`), not facts the factory relies on.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..ledger.gitstore import GitRepo

_GITHUB_RE = re.compile(r"github\.com[:/]([A-Za-z0-9_.-]+)/([A-Za-z0-9_.-]+?)(?:\.git)?/?$")
_MAKE_TEST_RE = re.compile(r"^test\s*:(?!=)", re.MULTILINE)
_PY_INPUTS = ("pyproject.toml", "setup.py", "setup.cfg", "uv.lock", "poetry.lock", "pdm.lock",
              "Pipfile.lock")
_NODE_LOCKS = ("package-lock.json", "npm-shrinkwrap.json", "yarn.lock", "pnpm-lock.yaml")
VENV = 'python3 -m venv "$FACTORY_ENV"'
PIP = '"$FACTORY_ENV/bin/python" -m pip install -q'


def github_slug(url: str | None) -> str | None:
    """OWNER/NAME of a GitHub remote URL (https or ssh), else None."""
    m = _GITHUB_RE.search(url or "")
    return f"{m.group(1)}/{m.group(2)}" if m else None


@dataclass
class Detection:
    """What a clone suggests; `said` is (field, sentence) per guess."""

    root: Path
    remote: str | None = None
    url: str | None = None
    slug: str | None = None
    base: str | None = None
    checks: list[str] = field(default_factory=list)
    setup: list[str] = field(default_factory=list)
    setup_inputs: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    said: list[tuple[str, str]] = field(default_factory=list)

    def guesses(self, given: frozenset[str] = frozenset()) -> list[str]:
        """The sentences about fields not `given` explicitly."""
        return [text for what, text in self.said if what not in given]


def detect_remote(repo: GitRepo, d: Detection, remote: str | None = None,
                  timeout_s: float = 30) -> None:
    """Fill in the remote, its URL and slug, and the base branch."""
    names = repo.remotes()
    if remote is None:
        remote = "origin" if "origin" in names else names[0] if len(names) == 1 else None
        if remote is None and names:
            d.said.append(("remote", f"remote: none chosen among {', '.join(names)} "
                           "(pass --remote NAME)"))
        elif remote is None:
            d.said.append(("remote", "remote: none (a local-only project: the base is a local "
                           "branch and nothing is pushed)"))
        else:
            d.said.append(("remote", f"remote: {remote} (the clone's "
                           + ("origin)" if remote == "origin" else "only remote)")))
    d.remote = remote
    if remote is not None:
        d.url = repo.remote_url(remote)
        d.slug = github_slug(d.url)
        if d.slug:
            d.said.append(("slug", f"GitHub repository: {d.slug} (from {remote}'s URL)"))
        d.base = repo.remote_default_branch(remote, timeout_s=timeout_s)
        if d.base:
            d.said.append(("base", f"base branch: {d.base} ({remote}'s default branch)"))
    if d.base is None:
        d.base = repo.branch()
        if d.base:
            d.said.append(("base", f"base branch: {d.base} (the clone's current branch; "
                           "check it)"))


def _read(path: Path) -> str:
    try:
        return path.read_text("utf-8")
    except (OSError, UnicodeDecodeError):
        return ""


def _pyproject(root: Path) -> dict[str, Any]:
    text = _read(root / "pyproject.toml")
    if not text:
        return {}
    import tomlkit

    try:
        data = tomlkit.parse(text).unwrap()
    except Exception:  # noqa: BLE001 - a broken pyproject.toml is a guess we cannot make
        return {}
    return data if isinstance(data, dict) else {}


def _uses_pytest(root: Path, py: dict[str, Any]) -> bool:
    tool = py.get("tool") or {}
    if isinstance(tool, dict) and "pytest" in tool:
        return True
    if any((root / f).exists() for f in ("pytest.ini", "conftest.py", "tests/conftest.py")):
        return True
    if "[pytest]" in _read(root / "tox.ini") or "[tool:pytest]" in _read(root / "setup.cfg"):
        return True
    return "pytest" in json.dumps(py.get("project", {}).get("optional-dependencies", {}))


def _test_extra(py: dict[str, Any]) -> str | None:
    extras = (py.get("project") or {}).get("optional-dependencies") or {}
    for name in ("test", "tests", "testing", "dev"):
        if name in extras:
            return name
    return None


def detect_commands(root: Path, d: Detection) -> None:
    """Fill in the test command, the set-up commands and their inputs."""
    makefile = next((root / m for m in ("Makefile", "makefile", "GNUmakefile")
                     if (root / m).is_file()), None)
    if makefile is not None and _MAKE_TEST_RE.search(_read(makefile)):
        d.checks.append("make test")
        d.said.append(("checks", f"test command: make test ({makefile.name} has a test "
                       "target)"))
    package = root / "package.json"
    if package.is_file():
        _detect_node(root, package, d)
    elif any((root / f).is_file() for f in ("pyproject.toml", "setup.py")) or list(
            root.glob("requirements*.txt")):
        _detect_python(root, d)
    if not d.setup:
        d.said.append(("setup", "set-up: none found (checks run in the factory's own "
                       "environment)"))
    if not d.checks:
        d.said.append(("checks", "test command: none found (pass --check COMMAND)"))


def _detect_node(root: Path, package: Path, d: Detection) -> None:
    try:
        scripts = json.loads(_read(package) or "{}").get("scripts") or {}
    except (ValueError, AttributeError):
        scripts = {}
    if not d.checks and isinstance(scripts, dict) and "test" in scripts:
        d.checks.append("npm test")
        d.said.append(("checks", "test command: npm test (package.json has a test script)"))
    lock = next((f for f in _NODE_LOCKS if (root / f).is_file()), None)
    d.setup.append("npm ci" if lock in ("package-lock.json", "npm-shrinkwrap.json")
                   else "npm install")
    d.setup_inputs += ["package.json", *([lock] if lock else [])]
    d.links.append("node_modules")
    d.said.append(("setup", f"set-up: {d.setup[-1]}, node_modules shared between checkouts "
                   f"(inputs: {', '.join(d.setup_inputs)})"))


def _detect_python(root: Path, d: Detection) -> None:
    py = _pyproject(root)
    pytest = _uses_pytest(root, py)
    extra = _test_extra(py)
    src = (root / "src").is_dir()
    if not d.checks:
        runner = "python -m pytest" if pytest else "python -m unittest"
        d.checks.append(f"PYTHONPATH=src {runner}" if src else runner)
        why = "pytest is configured" if pytest else "no pytest configuration found"
        d.said.append(("checks", f"test command: {d.checks[-1]} ({why}"
                       + ("; src layout: the checkout's src/ first" if src else "") + ")"))
    d.setup.append(VENV)
    requirements = sorted(p.name for p in root.glob("requirements*.txt"))
    if py or (root / "setup.py").is_file():
        d.setup.append(f"{PIP} \".[{extra}]\"" if extra else f"{PIP} .")
    for req in requirements:
        d.setup.append(f"{PIP} -r {req}")
    if pytest and not extra and not requirements:
        d.setup.append(f"{PIP} pytest")
    d.setup_inputs += [f for f in _PY_INPUTS if (root / f).is_file()] + requirements
    what = ("the project" + (f" and its {extra} extra" if extra else "")
            if py or (root / "setup.py").is_file() else "the requirements")
    d.said.append(("setup", f"set-up: a venv in $FACTORY_ENV with {what} "
                   f"(inputs: {', '.join(d.setup_inputs)})"))


def detect(repo: GitRepo, *, remote: str | None = None, commands: bool = True,
           timeout_s: float = 30) -> Detection:
    """Everything `target add` can guess about the clone of `repo`."""
    d = Detection(root=repo.root)
    detect_remote(repo, d, remote, timeout_s)
    if commands:
        detect_commands(repo.root, d)
    return d
