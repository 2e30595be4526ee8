"""Demand from the trackers agents already use: a GitHub issue or a gptodo task file.

`from_issue` reads `gh issue view N --repo OWNER/REPO --json title,body,author,url`;
`from_task` reads `tasks/<name>.md` (YAML frontmatter + Markdown body). Both return an
`IntakeDraft` — title, problem, demand, consumers and acceptance criteria — that the caller
completes (explicit options win) and passes to `line.intake.intake`. `target_of_demand`
names the target whose GitHub slug is the demand issue's repository.

Acceptance criteria come from the body: the list items of a section whose heading starts with
"Acceptance" (`## Acceptance criteria`, `### Acceptance`, or a line `Acceptance criteria:`), or,
when there is no such section, every checkbox item (`- [ ] ...`, `- [x] ...`) in the body.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UsageError
from ..ledger import yamlio
from ..ledger.config import FactoryConfig
from ..targets.registry import by_slug
from .ghcli import Gh, parse_issue_ref

_HEADING_RE = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_LABEL_RE = re.compile(r"^\s*(?:\*\*|__)?acceptance(?: criteria)?(?:\*\*|__)?\s*:?\s*(?:\*\*|__)?\s*$",
                       re.IGNORECASE)
_ITEM_RE = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+(?:\[[ xX]\]\s+)?(.+?)\s*$")
_CHECKBOX_RE = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+\[[ xX]\]\s+(.+?)\s*$")
_TASK_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
MAX_PROBLEM = 20_000


@dataclass
class IntakeDraft:
    """Intake fields read from a tracker; any of them may still be overridden."""

    title: str
    demand: str
    problem: str = ""
    consumers: list[str] = field(default_factory=list)
    acceptance: list[str] = field(default_factory=list)


def parse_acceptance(body: str) -> list[str]:
    """Acceptance criteria from a Markdown body (see the module docstring)."""
    lines = body.splitlines()
    in_section = False
    section_level = 0
    found: list[str] = []
    saw_section = False
    for line in lines:
        heading = _HEADING_RE.match(line)
        if heading:
            level, text = len(heading.group(1)), heading.group(2)
            if in_section and level <= section_level:
                in_section = False
            if text.lower().startswith("acceptance"):
                in_section, section_level, saw_section = True, level, True
            continue
        if _LABEL_RE.match(line):
            in_section, section_level, saw_section = True, 7, True
            continue
        if in_section:
            m = _ITEM_RE.match(line)
            if m:
                found.append(m.group(1))
            elif section_level == 7 and not line.strip() and found:
                in_section = False  # a bare "Acceptance:" label ends at the list's end
    if saw_section and found:
        return found
    return [m.group(1) for line in lines if (m := _CHECKBOX_RE.match(line))]


def from_issue(spec: str, gh: Gh) -> IntakeDraft:
    """An intake draft from GitHub issue `OWNER/REPO#N` through gh."""
    ref = parse_issue_ref(spec)
    if ref is None:
        raise UsageError(f"--from-issue {spec!r}: expected OWNER/REPO#N (for example acme/app#42)")
    if not gh.ready():
        raise UsageError(
            f"cannot read issue {ref}: {gh.why_not_ready()}; give the intake by hand with "
            f"TITLE --demand gh:{ref} --consumer ... --accept ..."
        )
    data = gh.issue(ref, "title,body,author,url")
    author = data.get("author") or {}
    login = author.get("login") if isinstance(author, dict) else None
    body = str(data.get("body") or "")
    url = data.get("url")
    problem = body.strip()
    if url:
        problem = f"{problem}\n\n(from {url})".strip()
    return IntakeDraft(
        title=" ".join(str(data.get("title") or f"Issue {ref}").split())[:500],
        demand=f"gh:{ref}",
        problem=problem[:MAX_PROBLEM],
        consumers=[str(login)] if login else [],
        acceptance=parse_acceptance(body),
    )


def target_of_demand(cfg: FactoryConfig, demand: str) -> str | None:
    """The target registered with the GitHub repository of a `gh:OWNER/REPO#N` demand."""
    ref = parse_issue_ref(demand)
    return by_slug(cfg, ref.slug) if ref else None


def task_path(repo_root: Path, task: str) -> Path:
    """The file of gptodo task `task`: a path, or a name under the repo's tasks/."""
    candidate = Path(task)
    if candidate.suffix == ".md" and (candidate.is_file() or (repo_root / candidate).is_file()):
        return candidate if candidate.is_file() else repo_root / candidate
    name = task.removesuffix(".md")
    if not _TASK_NAME_RE.match(name):
        raise UsageError(f"--from-task {task!r}: expected a task name (tasks/<name>.md) or a path")
    path = repo_root / "tasks" / f"{name}.md"
    if not path.is_file():
        raise UsageError(f"no task file {path.relative_to(repo_root)}: check the name "
                         "(`gptodo list`)")
    return path


def split_frontmatter(text: str, source: str) -> tuple[dict[str, object], str]:
    """(frontmatter mapping, body) of a Markdown file with optional `---` YAML frontmatter."""
    if not text.startswith("---"):
        return {}, text
    parts = re.split(r"^---[ \t]*$", text, maxsplit=2, flags=re.MULTILINE)
    if len(parts) < 3:
        return {}, text
    meta = yamlio.loads(parts[1].encode("utf-8"), source) if parts[1].strip() else {}
    return meta, parts[2].lstrip("\n")


def from_task(repo_root: Path, task: str) -> IntakeDraft:
    """An intake draft from a gptodo task file.

    Title: frontmatter `title`, else the first `# ` heading, else the file name. Consumers:
    frontmatter `consumers` (a list or a string), else `requested_by`. Demand: `task:<name>`.
    """
    path = task_path(repo_root, task)
    text = path.read_text("utf-8")
    meta, body = split_frontmatter(text, path.name)
    title = str(meta.get("title") or "")
    lines = body.splitlines()
    if not title:
        for i, line in enumerate(lines):
            if line.startswith("# "):
                title = line[2:].strip()
                del lines[i]
                break
    title = title or path.stem.replace("-", " ")
    raw = meta.get("consumers") or meta.get("requested_by") or []
    if isinstance(raw, str):
        consumers = [raw]
    elif isinstance(raw, list):
        consumers = [str(c) for c in raw if c]
    else:
        consumers = []
    return IntakeDraft(
        title=" ".join(title.split())[:500],
        demand=f"task:{path.stem}",
        problem="\n".join(lines).strip()[:MAX_PROBLEM],
        consumers=[c for c in consumers if c.strip()],
        acceptance=parse_acceptance(body),
    )


def intake_fields(
    repo_root: Path,
    *,
    issue: str | None = None,
    task: str | None = None,
    title: str | None = None,
    demand: str | None = None,
    consumers: list[str] | None = None,
    acceptance: list[str] | None = None,
    problem: str = "",
    gh: Gh | None = None,
) -> IntakeDraft:
    """The intake's fields: a tracker's draft with explicit values winning."""
    if issue and task:
        raise UsageError("give --from-issue or --from-task, not both")
    if issue:
        draft: IntakeDraft | None = from_issue(issue, gh or Gh(repo_root))
    elif task:
        draft = from_task(repo_root, task)
    else:
        draft = None
    if draft is None and not (title and title.strip()):
        raise UsageError("intake needs a TITLE (or --from-issue OWNER/REPO#N, --from-task TASK)")
    if draft is not None and not (consumers or draft.consumers):
        raise UsageError(f"{draft.demand} names no consumer: add --consumer NAME")
    if draft is not None and not (acceptance or draft.acceptance):
        raise UsageError(
            f"{draft.demand} has no acceptance criteria (no checkbox list and no 'Acceptance' "
            "section in its body): add them there, or pass --accept TEXT"
        )
    return IntakeDraft(
        title=title or (draft.title if draft else ""),
        demand=demand or (draft.demand if draft else ""),
        consumers=list(consumers or (draft.consumers if draft else [])),
        acceptance=list(acceptance or (draft.acceptance if draft else [])),
        problem=problem or (draft.problem if draft else ""),
    )
