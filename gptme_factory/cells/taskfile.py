"""gptodo task files for cells: `tasks/<cell>.md`, so `gptodo list` shows factory work.

A task file is YAML frontmatter between `---` lines plus a Markdown body. The factory writes
it itself, with a real YAML round-trip through yamlio (never by editing text), in the form
gptodo and the brain repo's pre-commit task validator accept: required `state` and `created`
(ISO string), `priority` one of high/medium/low, `tags` a list, no nulls. The file is working
state, not a ledger record: it is written to the brain's working tree and never committed by
the factory.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import InvalidRecord
from ..ledger import yamlio

TASKS_DIR = "tasks"
_STATES = ("backlog", "todo", "active", "ready_for_review", "waiting", "done", "cancelled")


def task_path(root: Path, cell: str) -> Path:
    """Where the task file of `cell` lives in the brain repo."""
    return root / TASKS_DIR / f"{cell}.md"


def render(meta: dict[str, Any], body: str) -> bytes:
    """Frontmatter plus body, as gptodo reads it."""
    return b"---\n" + yamlio.dumps(meta) + b"---\n\n" + body.strip().encode("utf-8") + b"\n"


def parse(raw: bytes, source: str) -> tuple[dict[str, Any], str]:
    """Split a task file into (frontmatter, body); InvalidRecord if it is not one."""
    text = raw.decode("utf-8", "replace")
    if not text.startswith("---\n"):
        raise InvalidRecord(source, ["a task file starts with a `---` frontmatter line"])
    end = text.find("\n---\n", 3)
    if end < 0:
        raise InvalidRecord(source, ["the frontmatter has no closing `---` line"])
    meta = yamlio.loads(text[4 : end + 1].encode("utf-8"), source)
    return meta, text[end + 5 :].lstrip("\n")


def problems(meta: dict[str, Any]) -> list[str]:
    """What gptodo or the task pre-commit validator would reject, as `field: message`."""
    out: list[str] = []
    if meta.get("state") not in _STATES:
        out.append(f"state: must be one of {', '.join(_STATES)}")
    created = meta.get("created")
    try:
        datetime.fromisoformat(str(created))
    except ValueError:
        out.append("created: must be an ISO date or datetime string")
    if meta.get("priority") not in (None, "high", "medium", "low"):
        out.append("priority: must be high, medium or low")
    if "tags" in meta and not isinstance(meta["tags"], list):
        out.append("tags: must be a list")
    if "waiting_for" in meta and not isinstance(meta["waiting_for"], str):
        out.append("waiting_for: must be a string")
    out += [f"{k}: null values are not allowed" for k, v in meta.items() if v is None]
    return out


def _write(path: Path, raw: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(raw)
    os.replace(tmp, path)


def write_task(root: Path, cell: str, *, title: str, body: str, created: datetime,
               tags: list[str], extra: dict[str, Any] | None = None) -> Path:
    """Write the `active` task file of a cell and check it reads back valid."""
    meta: dict[str, Any] = {"state": "active", "created": created.isoformat(),
                            "priority": "medium", "tags": tags}
    meta.update({k: v for k, v in (extra or {}).items() if v is not None})
    path = task_path(root, cell)
    raw = render(meta, f"# {title}\n\n{body}")
    back, _ = parse(raw, str(path))
    bad = problems(back)
    if bad:
        raise InvalidRecord(str(path), bad)
    _write(path, raw)
    return path


def set_state(path: Path, state: str, **fields: Any) -> None:
    """Move a task file to `state` (and set `fields`), keeping everything else as it was."""
    try:
        meta, body = parse(path.read_bytes(), str(path))
    except (OSError, InvalidRecord):
        return  # a person removed or rewrote it: the ledger is the record, not this file
    meta["state"] = state
    meta.update({k: v for k, v in fields.items() if v is not None})
    _write(path, render(meta, body))
