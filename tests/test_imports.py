"""Import hygiene: what stays light, and which modules may touch the adapters' libraries.

- `gptme-factory --help` imports neither GitPython nor pydantic (nor gptme): checked in a fresh
  interpreter through `sys.modules`.
- A warm `status` (served from the status cache) imports neither pydantic nor PyYAML, nor
  does a warm `metrics` (its report kept under the artifacts' content ids).
- `gptme-factory board --help` imports none of the web stack (jinja2, starlette, uvicorn).
- The core — every module but the adapters (gptme_factory/cli/, web/, plugin/, demo/, and
  __main__.py, which only runs the CLI) — never imports click, rich, gptme or the web stack,
  nor the adapters themselves: checked by parsing every import statement, wherever it sits.
  KNOWN_LAZY lists core modules that reach an adapter library from inside a function only
  (a deliberate, visible exception: at module level they are held to the rule like the rest).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from gptme_factory.line.intake import intake as new_intake

PKG = Path(__file__).resolve().parents[1] / "gptme_factory"
ADAPTER_LIBS = ("click", "rich", "gptme", "jinja2", "starlette", "uvicorn", "sse_starlette")
ADAPTERS = ("cli/", "web/", "plugin/", "demo/", "__main__.py")
KNOWN_LAZY = {
    "cells/backends/subagent_backend.py": "runs cells through gptme's in-process subagent API",
    "envcheck/model.py": "reads gptme's provider/model registry for the model pre-flight",
}

MODULES_AFTER = """
import json, sys
{setup}
from gptme_factory.cli import main
try:
    main({args!r}, prog_name="gptme-factory", standalone_mode=False)
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def modules_after(args: list[str], setup: str = "") -> set[str]:
    """Top-level packages imported by a fresh interpreter running the CLI with `args`."""
    proc = subprocess.run(
        [sys.executable, "-c", MODULES_AFTER.format(args=args, setup=setup)],
        capture_output=True, text=True, check=True,
    )
    return {m.split(".")[0] for m in json.loads(proc.stderr.strip().splitlines()[-1])}


def test_help_imports_neither_gitpython_nor_pydantic() -> None:
    loaded = modules_after(["--help"])
    assert "click" in loaded  # the probe works
    assert not loaded & {"git", "pydantic", "pydantic_core", "gptme"}


def test_board_help_imports_no_web_stack() -> None:
    loaded = modules_after(["board", "--help"])
    assert "click" in loaded
    assert not loaded & {"git", "pydantic", "jinja2", "starlette", "uvicorn", "sse_starlette"}


def test_warm_status_imports_neither_pydantic_nor_yaml(factory_repo: Path) -> None:
    from gptme_factory.ledger.store import Ledger

    ledger = Ledger.open(factory_repo)
    for title in ("One", "Two"):
        new_intake(ledger, title=title, demand="gh:acme/app#1", consumers=["erik"], acceptance=["ok"])
    # A running cell: the board shows it with the config's stall time and cell cap, which a
    # warm run reads from the cache too (a real brain nearly always has a cell running).
    from gptme_factory.cells import state as cellstate

    aid = ledger.artifact_ids()[0]
    cellstate.save(ledger.runtime_dir, cellstate.CellRecord(
        cell=f"{aid}.scout.abcd", artifact=aid, stage="scout", role="scout", backend="command",
        started_at="2026-01-02T03:04:05+00:00", workdir=str(factory_repo), timeout_s=60.0))
    # The cache does not trust directories changed in the last seconds (racy); no wait here.
    setup = "import gptme_factory.views.statuscache as sc; sc.RACY_NS = 0"
    cold = modules_after(["status", "--repo", str(factory_repo)], setup)
    assert "pydantic" in cold  # the first run read the ledger
    warm = modules_after(["status", "--repo", str(factory_repo)], setup)
    assert not warm & {"pydantic", "pydantic_core", "yaml", "git"}



def test_warm_metrics_imports_neither_pydantic_nor_yaml(factory_repo: Path) -> None:
    from gptme_factory.ledger.store import Ledger

    ledger = Ledger.open(factory_repo)
    for title in ("One", "Two"):
        new_intake(ledger, title=title, demand="gh:acme/app#1", consumers=["erik"], acceptance=["ok"])
    setup = "import gptme_factory.views.statuscache as sc; sc.RACY_NS = 0"
    cold = modules_after(["metrics", "--repo", str(factory_repo)], setup)
    assert "pydantic" in cold  # the first run read the ledger and computed the report
    warm = modules_after(["metrics", "--repo", str(factory_repo)], setup)
    assert not warm & {"pydantic", "pydantic_core", "yaml", "git"}
    new_intake(ledger, title="Three", demand="gh:acme/app#1", consumers=["erik"],
               acceptance=["ok"])
    after = modules_after(["metrics", "--repo", str(factory_repo), "--json"], setup)
    assert "pydantic" in after  # one artifact changed: it is read, the report computed again


def _imports(tree: ast.Module, package: str = "gptme_factory") -> list[tuple[ast.stmt, str, bool]]:
    """(node, module name, at module level) for every import statement, wherever it is.

    Relative imports are resolved against `package`, the dotted package of the file
    (`from ..ledger import x` in gptme_factory.cells.spawn gives gptme_factory.ledger;
    `from . import cli` in gptme_factory gives gptme_factory.cli).
    """
    top = {id(n) for n in tree.body}
    found: list[tuple[ast.stmt, str, bool]] = []
    for node in ast.walk(tree):
        at_top = id(node) in top
        if isinstance(node, ast.Import):
            found += [(node, a.name, at_top) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            found.append((node, node.module or "", at_top))
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")
            base = ".".join(parts[: len(parts) - (node.level - 1)])
            if node.module:
                found.append((node, f"{base}.{node.module}", at_top))
            else:
                found += [(node, f"{base}.{a.name}", at_top) for a in node.names]
    return found


def _package_of(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(rel if path.name == "__init__.py" else rel[:-1]).removesuffix(".__init__")


def _forbidden(name: str) -> bool:
    if name.split(".")[0] in ADAPTER_LIBS:
        return True
    inner = name.removeprefix("gptme_factory.") if name.startswith("gptme_factory.") else None
    return inner is not None and inner.split(".")[0] in ("cli", "plugin", "demo", "web")


def core_modules() -> list[Path]:
    return [p for p in sorted(PKG.rglob("*.py"))
            if not p.relative_to(PKG).as_posix().startswith(ADAPTERS)]


def test_the_probe_sees_every_kind_of_import() -> None:
    tree = ast.parse(
        "import click\nfrom rich.table import Table\nfrom .. import cli\n"
        "from ..plugin.tools import x\ndef f():\n    import gptme.tools\n"
    )
    names = {(name, top) for _, name, top in _imports(tree, "gptme_factory.cells")}
    assert {("click", True), ("rich.table", True), ("gptme_factory.cli", True),
            ("gptme_factory.plugin.tools", True), ("gptme.tools", False)} <= names
    assert all(_forbidden(n) for n, _ in names)
    assert not _forbidden("gptme_factory.ledger.store") and not _forbidden("gptmex")


@pytest.mark.parametrize("path", core_modules(), ids=lambda p: p.relative_to(PKG).as_posix())
def test_core_never_imports_click_rich_gptme_or_the_adapters(path: Path) -> None:
    rel = path.relative_to(PKG).as_posix()
    tree = ast.parse(path.read_text("utf-8"), filename=str(path))
    bad = [f"line {node.lineno}: {name}" for node, name, top in _imports(tree, _package_of(path))
           if _forbidden(name) and (top or rel not in KNOWN_LAZY)]
    assert not bad, f"gptme_factory/{rel} imports adapter code: {bad}"


def test_known_lazy_exceptions_still_exist() -> None:
    # Keep the list honest: drop an entry once its module no longer needs it.
    for rel in KNOWN_LAZY:
        tree = ast.parse((PKG / rel).read_text("utf-8"))
        assert any(_forbidden(name) for _, name, _ in _imports(tree)), rel
