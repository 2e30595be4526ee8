"""`doctor`: checks that a brain repo is wired for the factory, and says how to fix each gap.

Each check returns a `Check` (name, ok, what was found, how to fix it). The checks cover what
a gptme session needs: the ledger is valid, gptme.toml loads the tools, the gptme plugin is
discoverable and enabled, the tool module loads (with IPython for its functions), the skill
and lessons are installed and parse with gptme's own parser, and gptme, gptodo and tmux are
on PATH. gptme is imported lazily here (this is a diagnostic adapter, not core).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import FactoryError
from ..ledger.store import Ledger
from .wiring import GPTME_TOML, PLUGIN_NAME, TOOL_MODULES, shipped_files, tool_modules_ok

SKILL_PATH = "skills/factory-run/SKILL.md"


@dataclass(frozen=True)
class Check:
    """One doctor check."""

    name: str
    ok: bool
    detail: str
    fix: str = ""

    def to_json(self) -> dict[str, Any]:
        """Plain data for --json."""
        return asdict(self)


def _pip() -> str:
    return f"{sys.executable} -m pip install"


def check_ledger(repo: str) -> Check:
    """The repo is a git repo with a valid factory ledger."""
    from ..line.verify import verify

    try:
        ledger = Ledger.open(repo)
        found = verify(ledger)  # what changed since the last clean verify
        problems = found.problems
    except FactoryError as exc:
        return Check("ledger", False, str(exc).splitlines()[0],
                     "run `gptme-factory init` in the brain repo")
    if problems:
        return Check("ledger", False, f"{len(problems)} integrity problem(s), first: {problems[0]}",
                     "run `gptme-factory verify` for the full list and repair the named files")
    listing = ledger.artifact_listing()
    if listing.older:
        first = next(iter(listing.older.values()))[0]
        what = ("every commit rewrites a tree of all of them" if listing.flat
                else "every commit rewrites a bucket that grows with the ledger")
        layouts = " and ".join(name for name, ids in (("flat", listing.flat),
                                                      ("shallow", listing.shallow)) if ids)
        return Check("ledger", False, f"{len(listing.older)} artifact folder(s) in an older "
                     f"layout ({layouts or 'two layouts'}; first: {ledger.rel}/artifacts/{first}/): "
                     f"{what}", "run `gptme-factory migrate` (one commit, no file changes)")
    return Check("ledger", True, f"{ledger.rel}/ valid, {found.artifacts} artifact(s)")


def check_gptme_toml(root: Path) -> Check:
    """gptme.toml loads gptme's and the factory's tools."""
    path = root / GPTME_TOML
    if not path.is_file():
        return Check("gptme.toml", False, f"{path} is missing, so gptme does not load the "
                     "factory tools", "run `gptme-factory init`")
    if not tool_modules_ok(path.read_text("utf-8")):
        return Check("gptme.toml", False, f"[env] TOOL_MODULES must include {', '.join(TOOL_MODULES)}",
                     "run `gptme-factory init` (it merges the value and keeps yours)")
    return Check("gptme.toml", True, f"[env] TOOL_MODULES includes {', '.join(TOOL_MODULES)}")


def check_plugin() -> Check:
    """The `gptme.plugins` entry point resolves to the plugin named gptme_factory."""
    from importlib.metadata import entry_points

    eps = [ep for ep in entry_points(group="gptme.plugins") if ep.name == PLUGIN_NAME]
    if not eps:
        return Check("plugin", False, "no `gptme.plugins` entry point named gptme_factory in "
                     f"{sys.executable}'s environment",
                     f"install gptme-factory next to gptme: `{_pip()} gptme-factory`")
    try:
        obj = eps[0].load()
    except Exception as exc:  # noqa: BLE001 - any import failure is the finding
        return Check("plugin", False, f"the entry point fails to load: {exc}",
                     f"reinstall: `{_pip()} --force-reinstall gptme-factory`")
    from gptme.plugins import GptmePlugin

    if not isinstance(obj, GptmePlugin) or obj.name != PLUGIN_NAME:
        return Check("plugin", False, f"the entry point gives {obj!r}, not the gptme_factory plugin",
                     f"reinstall: `{_pip()} --force-reinstall gptme-factory`")
    return Check("plugin", True, f"entry point {eps[0].value} -> GptmePlugin {obj.name!r}")


def _allowlist(path: Path) -> list[str] | None:
    import tomlkit

    if not path.is_file():
        return None
    try:
        data = tomlkit.parse(path.read_text("utf-8")).unwrap()
    except Exception:  # noqa: BLE001 - a broken config is reported by gptme itself
        return None
    enabled = data.get("plugins", {}).get("enabled") if isinstance(data.get("plugins"), dict) else None
    return [str(e) for e in enabled] if enabled else None


def check_enabled(root: Path) -> Check:
    """No `[plugins] enabled` allowlist (user or project) leaves the plugin out."""
    config_home = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    blocked = []
    for path in (config_home / "gptme" / "config.toml", root / GPTME_TOML):
        enabled = _allowlist(path)
        if enabled is not None and PLUGIN_NAME not in enabled:
            blocked.append(str(path))
    if blocked:
        return Check("plugin enabled", False, f"[plugins] enabled in {', '.join(blocked)} "
                     "does not list gptme_factory (hooks and /factory stay off)",
                     f'add "{PLUGIN_NAME}" to [plugins] enabled in ' + " and ".join(blocked))
    return Check("plugin enabled", True, "no allowlist excludes gptme_factory")


def check_tools() -> Check:
    """The tool module loads and the functions can run through ipython."""
    try:
        from .tools import tool
    except Exception as exc:  # noqa: BLE001 - any import failure is the finding
        return Check("tools", False, f"gptme_factory.plugin.tools fails to import: {exc}",
                     f"reinstall: `{_pip()} --force-reinstall gptme-factory`")
    names = [f.name for f in tool.functions or []]
    try:
        import IPython  # noqa: F401
    except ImportError:
        return Check("tools", False, "IPython is missing: the `ipython` tool that runs the "
                     "factory functions cannot load", f"`{_pip()} ipython`")
    return Check("tools", True, f"tool {tool.name!r} with {len(names)} functions; ipython available")


def check_skill(root: Path) -> Check:
    """The factory-run skill and the lessons are installed and parse with gptme's parser."""
    from gptme.lessons.parser import parse_lesson

    skill = root / SKILL_PATH
    if not skill.is_file():
        return Check("skill", False, f"{SKILL_PATH} is missing", "run `gptme-factory init`")
    problems = []
    parsed = 0
    for rel in shipped_files():
        path = root / rel
        if not path.is_file():
            problems.append(f"{rel} missing")
            continue
        try:
            lesson = parse_lesson(path)
        except Exception as exc:  # noqa: BLE001 - a parse failure is the finding
            problems.append(f"{rel}: {exc}")
            continue
        parsed += 1
        if lesson.metadata.status != "active":
            problems.append(f"{rel}: status {lesson.metadata.status} (gptme skips it)")
        if rel == SKILL_PATH and lesson.metadata.name != "factory-run":
            problems.append(f"{rel}: name is {lesson.metadata.name!r}, not 'factory-run'")
    if problems:
        return Check("skill", False, "; ".join(problems[:3]),
                     "run `gptme-factory init` (or `init --upgrade` for outdated files)")
    return Check("skill", True, f"factory-run skill and {parsed - 1} lesson(s) parse")


def check_program(name: str, fix: str, version_args: tuple[str, ...] | None = ("--version",)
                  ) -> Check:
    """An executable is on PATH (and answers its version flag, or has package metadata)."""
    path = shutil.which(name)
    if path is None:
        return Check(name, False, f"{name} is not on PATH", fix)
    if version_args is None:
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version as dist_version

        try:
            return Check(name, True, f"{path} ({name} {dist_version(name)})")
        except PackageNotFoundError:
            return Check(name, True, path)
    try:
        proc = subprocess.run([path, *version_args], capture_output=True, text=True, timeout=30,
                              check=False)
        first = (proc.stdout or proc.stderr).strip().splitlines()[:1]
    except (OSError, subprocess.TimeoutExpired):
        first = []
    return Check(name, True, f"{path}" + (f" ({first[0]})" if first else ""))


def check_model(root: Path | None, model: str | None) -> Check:
    """The model cells will use (`[plugin] model`, else gptme's default) has a usable provider."""
    from ..envcheck import preflight_model

    problem = preflight_model(model, os.environ, workspace=root)
    shown = model or os.environ.get("GPTME_MODEL") or "gptme's default"
    if problem is None:
        return Check("model", True, f"{shown}: a provider is usable")
    return Check("model", False, f"{shown}: {problem.cause}", problem.fix)


def run_checks(repo: str = ".", model: str | None = None) -> list[Check]:
    """Every check, in order."""
    checks = [check_ledger(repo)]
    root: Path | None
    try:
        from ..ledger.gitstore import GitRepo

        root = GitRepo.discover(repo).root
    except FactoryError:
        root = None
    steps: list[Callable[[], Check]] = [check_plugin, check_tools]
    if root is not None:
        steps = [lambda: check_gptme_toml(root), *steps, lambda: check_enabled(root),
                 lambda: check_skill(root)]
    checks += [step() for step in steps]
    checks.append(check_program("gptme", f"`{_pip()} gptme`"))
    checks.append(check_program("gptodo", f"`{_pip()} gptodo`", None))
    checks.append(check_program("tmux", "install tmux (apt-get install tmux, brew install tmux)",
                                ("-V",)))
    checks.append(check_model(root, model))
    return checks


def render(checks: list[Check]) -> str:
    """Human-readable doctor report."""
    lines = []
    for c in checks:
        lines.append(f"{'ok  ' if c.ok else 'FAIL'}  {c.name}: {c.detail}")
        if not c.ok and c.fix:
            lines.append(f"      fix: {c.fix}")
    bad = sum(not c.ok for c in checks)
    lines.append(f"{bad} problem(s)" if bad else "all good")
    return "\n".join(lines)
