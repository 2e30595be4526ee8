"""Wiring a brain repo for gptme: gptme.toml, the factory-run skill and the lessons.

`wire(ledger)` is what `gptme-factory init` does after creating the ledger:

- merges `[env] TOOL_MODULES` (with `gptme.tools` and `gptme_factory.plugin.tools`) into the repo's
  gptme.toml, keeping every other key, value and comment (tomlkit), and adds the plugin to a
  `[plugins] enabled` allowlist if the file has one: gptme 0.35.1's CLI loads a plugin's
  tools only through TOOL_MODULES;
- installs `skills/factory-run/SKILL.md` and `lessons/factory/*.md` from the package;
- commits those files in one ledger commit (plumbing, under the ledger lock, so the user's
  other staged and unstaged work is untouched) and says what changed. Idempotent.

A file the user changed is never overwritten. `factory/installed.yaml` records the digest of
the version installed last; a file still matching it (or the shipped version) is ours:
`upgrade=True` replaces it with the new shipped version. A gptme.toml with uncommitted
changes is merged on disk but left out of the commit.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ..ledger import yamlio
from ..ledger.store import Ledger

GPTME_TOML = "gptme.toml"
RECORD_FILE = "installed.yaml"
TOOL_MODULES = ("gptme.tools", "gptme_factory.plugin.tools")
# Where the factory's tools lived before 0.2 (`init` replaces it in an existing gptme.toml).
OLD_TOOL_MODULE = "gptme_factory.tools"
PLUGIN_NAME = "gptme_factory"
DATA_DIRS = ("skills", "lessons")


@dataclass
class WiringReport:
    """What `wire` did: one (path, what happened) per file looked at, and the commit."""

    changes: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    commit: str | None = None

    @property
    def changed(self) -> list[str]:
        """Paths written (committed or not)."""
        return [p for p, what in self.changes if what.startswith(("created", "updated", "merged"))]

    def to_json(self) -> dict[str, Any]:
        """Plain data for --json."""
        return {"changes": [{"path": p, "what": w} for p, w in self.changes],
                "notes": self.notes, "commit": self.commit}


def digest(raw: bytes) -> str:
    """sha256 of a file's bytes."""
    return hashlib.sha256(raw).hexdigest()


# -- shipped files ----------------------------------------------------------------------


def data_root() -> Path:
    """Where the shipped skills/ and lessons/ are: the wheel's _data, else the source tree."""
    try:
        packaged = Path(str(resources.files("gptme_factory").joinpath("_data")))
        if (packaged / "skills").is_dir():
            return packaged
    except (ModuleNotFoundError, TypeError):  # pragma: no cover - odd importers
        pass
    return Path(__file__).resolve().parents[2]


def shipped_files() -> dict[str, bytes]:
    """Repo-relative destination -> content of every skill and lesson file the package ships."""
    root = data_root()
    out: dict[str, bytes] = {}
    for top in DATA_DIRS:
        base = root / top
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*")):
            if path.is_file() and not path.name.startswith(".") and "__pycache__" not in path.parts:
                out[f"{top}/{path.relative_to(base).as_posix()}"] = path.read_bytes()
    return out


# -- gptme.toml -------------------------------------------------------------------------


def merge_gptme_toml(text: str | None) -> tuple[str, list[str]]:
    """gptme.toml text with the factory's settings merged in, and what was changed."""
    import tomlkit

    doc = tomlkit.parse(text) if text and text.strip() else tomlkit.document()
    did: list[str] = []
    env = doc.get("env")
    if env is None:
        table = tomlkit.table()
        table.add(tomlkit.comment("gptme-factory: load the factory tools in the gptme CLI. "
                                  "TOOL_MODULES replaces gptme's default, so keep gptme.tools."))
        table.add("TOOL_MODULES", ",".join(TOOL_MODULES))
        if len(doc.body):
            doc.add(tomlkit.nl())
        doc.add("env", table)
        did.append(f"[env] TOOL_MODULES = {','.join(TOOL_MODULES)!r}")
    else:
        current = env.get("TOOL_MODULES")
        parts = [p.strip() for p in str(current or "").split(",") if p.strip()]
        wanted = [p for p in parts if p != OLD_TOOL_MODULE]
        if TOOL_MODULES[0] not in wanted:
            wanted.insert(0, TOOL_MODULES[0])
        for mod in TOOL_MODULES[1:]:
            if mod not in wanted:
                wanted.append(mod)
        if wanted != parts:
            value = tomlkit.string(",".join(wanted))
            if current is not None and hasattr(env, "item"):
                old = env.item("TOOL_MODULES")
                value.trivia.comment = old.trivia.comment
                value.trivia.comment_ws = old.trivia.comment_ws
            env["TOOL_MODULES"] = value
            added = ", ".join(m for m in wanted if m not in parts)
            dropped = f" (replacing {OLD_TOOL_MODULE})" if OLD_TOOL_MODULE in parts else ""
            did.append(f"[env] TOOL_MODULES: added {added}{dropped}")
    plugins = doc.get("plugins")
    enabled = plugins.get("enabled") if plugins is not None else None
    if enabled and PLUGIN_NAME not in [str(e) for e in enabled]:
        enabled.append(PLUGIN_NAME)
        did.append(f"[plugins] enabled: added {PLUGIN_NAME}")
    out = tomlkit.dumps(doc)
    if not out.endswith("\n"):
        out += "\n"
    return out, did


def tool_modules_ok(text: str) -> bool:
    """True if gptme.toml text loads both gptme's and the factory's tools."""
    import tomlkit
    from tomlkit.exceptions import TOMLKitError

    try:
        data = tomlkit.parse(text).unwrap()
    except TOMLKitError:
        return False
    env = data.get("env")
    value = env.get("TOOL_MODULES", "") if isinstance(env, dict) else ""
    parts = {p.strip() for p in str(value).split(",")}
    return all(m in parts for m in TOOL_MODULES)


# -- installing -------------------------------------------------------------------------


def _read_record(ledger: Ledger) -> dict[str, str]:
    path = ledger.dir / RECORD_FILE
    if not path.is_file():
        return {}
    try:
        data = yamlio.loads(path.read_bytes(), f"{ledger.rel}/{RECORD_FILE}")
    except Exception:  # noqa: BLE001 - a broken record only means "nothing is known to be ours"
        return {}
    files = data.get("files")
    return {str(k): str(v) for k, v in files.items()} if isinstance(files, dict) else {}


def _record_bytes(files: dict[str, str]) -> bytes:
    return yamlio.dumps({"kind": "installed_files", "schema_version": 1,
                         "files": dict(sorted(files.items()))})


def _is_dirty(ledger: Ledger, rel: str) -> bool:
    out = ledger.repo.git("status", "--porcelain=v1", "--untracked-files=all", "--", rel)
    return bool(out.strip())


def _describe(paths: list[str]) -> str:
    parts = [GPTME_TOML] if GPTME_TOML in paths else []
    for top, noun in (("skills/", "skill file"), ("lessons/", "lesson")):
        n = sum(p.startswith(top) for p in paths)
        if n:
            parts.append(f"{n} {noun}{'s' if n > 1 else ''}")
    return ", ".join(parts) or "record of installed files"


def wire(ledger: Ledger, *, upgrade: bool = False) -> WiringReport:
    """Merge gptme.toml, install the skill and lessons, commit; see the module docstring."""
    report = WiringReport()
    root = ledger.repo.root
    to_commit: dict[str, bytes] = {}
    with ledger.locked():
        # gptme.toml
        toml_path = root / GPTME_TOML
        old = toml_path.read_text("utf-8") if toml_path.is_file() else None
        merged, did = merge_gptme_toml(old)
        if did:
            what = ("created" if old is None else "merged") + ": " + "; ".join(did)
            if old is not None and _is_dirty(ledger, GPTME_TOML):
                toml_path.write_text(merged, "utf-8")
                report.changes.append((GPTME_TOML, what + " (not committed: it has "
                                       "uncommitted changes of yours; commit it yourself)"))
            else:
                to_commit[GPTME_TOML] = merged.encode("utf-8")
                report.changes.append((GPTME_TOML, what))
        # skill and lessons
        record = _read_record(ledger)
        new_record = dict(record)
        for rel, content in shipped_files().items():
            want = digest(content)
            path = root / rel
            if not path.exists():
                if rel in record:
                    report.changes.append((rel, "skipped: you deleted it (delete "
                                           f"its line in {ledger.rel}/{RECORD_FILE} to reinstall)"))
                    continue
                to_commit[rel] = content
                new_record[rel] = want
                report.changes.append((rel, "created"))
                continue
            have = digest(path.read_bytes())
            if have == want:
                new_record[rel] = want
                continue
            if have == record.get(rel):
                if upgrade:
                    to_commit[rel] = content
                    new_record[rel] = want
                    report.changes.append((rel, "updated to the shipped version"))
                else:
                    report.changes.append((rel, "outdated: `gptme-factory init --upgrade` "
                                           "updates it"))
            else:
                report.changes.append((rel, "kept: it differs from every version the factory "
                                       "installed (your changes win)"))
        if new_record != record:
            to_commit[f"{ledger.rel}/{RECORD_FILE}"] = _record_bytes(new_record)
        if to_commit:
            detail = _describe([p for p in to_commit if not p.startswith(f"{ledger.rel}/")])
            with ledger.transaction(f"wire {detail}") as tx:
                tx.marker = "wire"
                tx.files.update(to_commit)
            report.commit = ledger.repo.head()
    return report
