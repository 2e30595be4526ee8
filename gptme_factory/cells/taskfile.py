"""gptodo task files for artifacts that wait for a person: `tasks/factory-<artifact>.md`.

Cells are the factory's own work and stay out of the user's task queue (they show in `gptodo
sessions` and `gptme-factory status`). But an artifact that needs a person — blocked (attempts,
a contract violation, its environment) or waiting for a review — is the user's work: it gets a
task file with `state: waiting` and `waiting_for` saying what is needed, so `gptodo status`
shows it among the waiting tasks (and `ready`/`next` do not offer it as something to start).
When the artifact moves on, the task is set to `done`. Each change is its own commit (a task
file is not a ledger file), made through the ledger's writer lock.

A task file is YAML frontmatter between `---` lines plus a Markdown body, written with a real
YAML round-trip through yamlio (never by editing text), in the form gptodo and the brain
repo's pre-commit task validator accept: required `state` and `created` (ISO string),
`priority` one of high/medium/low, `tags` a list, `waiting_for` a string, no nulls.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..ledger.store import Ledger
    from ..line.replay import ArtifactView

from ..errors import InvalidRecord
from ..ledger import yamlio

TASKS_DIR = "tasks"
_STATES = ("backlog", "todo", "active", "ready_for_review", "waiting", "done", "cancelled")


def task_path(root: Path, artifact: str) -> Path:
    """Where the needs-a-person task of `artifact` lives in the brain repo."""
    return root / TASKS_DIR / f"factory-{artifact}.md"


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


def render_task(view: ArtifactView, waiting_for: str, created: datetime,
                state: str = "waiting") -> bytes:
    """The task file's bytes for an artifact that waits for a person."""
    aid = view.intake.artifact
    meta: dict[str, Any] = {"state": state, "created": created.isoformat(),
                            "priority": "high", "tags": ["factory", "needs-person"],
                            "waiting_for": waiting_for[:500], "factory_artifact": aid}
    body = (f"# {view.intake.title}\n\nThe factory's artifact `{aid}` (line "
            f"`{view.intake.line}`, state `{view.state}`) waits for a person.\n\n"
            f"- needed: {waiting_for}\n- see: `gptme-factory show {aid}`\n\n"
            "The ledger is the record; this file only asks for the decision.")
    raw = render(meta, body)
    bad = problems(parse(raw, f"tasks/factory-{aid}.md")[0])
    if bad:
        raise InvalidRecord(f"tasks/factory-{aid}.md", bad)
    return raw


def sync_person_task(ledger: Ledger, artifact: str) -> str | None:
    """Keep `tasks/factory-<artifact>.md` in step with whether a person is needed.

    Writes (and commits) a waiting task when one is needed, sets an open one to done when not;
    returns what changed, or None.
    """
    from ..line.transitions import load

    path = task_path(ledger.repo.root, artifact)
    rel = ledger.relpath(path)
    with ledger.locked():
        _, view = load(ledger, artifact)
        wanted = view.needs_person()
        current: dict[str, Any] | None = None
        if path.is_file():
            try:
                current = parse(path.read_bytes(), rel)[0]
            except InvalidRecord:
                current = None  # rewritten by hand: leave it to the person
                return None
        if wanted is not None:
            if current and current.get("state") == "waiting" and \
                    current.get("waiting_for") == wanted[:500]:
                return None
            raw = render_task(view, wanted, ledger.clock())
            what = f"needs a person: {wanted}"
        elif current and current.get("state") == "waiting":
            raw = render_task(view, str(current.get("waiting_for", "")),
                              datetime.fromisoformat(str(current["created"])), state="done")
            what = "no longer needs a person"
        else:
            return None
        with ledger.transaction(f"task: {artifact} {what}") as tx:
            tx.marker = "task"
            tx.files[rel] = raw
        return what
