"""A cell's brief: the one file it reads first, committed with its `cell_spawned` event.

The brief holds everything the cell needs and nothing it must guess: its role and the rules
of that role, the artifact's intake, every earlier handoff on the line, the retry note of a
failed attempt, the JSON Schema its handoff must satisfy, its budget, where it works (and
what survives) — the target project's clone, remote and base when the artifact has one,
apart from the brain that holds the ledger — the checks the verify gate requires, and the
exact commands to report progress and to submit. The prompt handed
to gptme is short and only points at the brief, so it never hits gptodo's prompt-size limit.

Command examples are fenced as `text`, not `shell`: a brief that gptme includes into the
prompt must not read as tool calls to an echoing model.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from typing import Any

from ..ledger import yamlio

ROLE_RULES: dict[str, list[str]] = {
    "scout": [
        "Read the code; change nothing. Your working directory is a throw-away checkout.",
        "Name the files that matter and why, the constraints, a concrete approach and the risks.",
        "Plan verification as shell commands run from the repository root whose exit code "
        "decides, each with the acceptance criteria it shows (`criteria`, 0-based): your "
        "gate runs them at the base now and fixes them as the contract; later gates run "
        "exactly it, and the builder cannot change it.",
        "At least one check tied to a criterion must fail at the base today and pass once the "
        "work is done (a reproduction of the bug, the feature's new test): a plan whose "
        "checks cannot fail (`true`, `test -f` of an existing file) is refused.",
        "Map every acceptance criterion (by 0-based index) to how it will be met and shown.",
    ],
    "reproducer": [
        "Commit a test that reproduces the reported bug, and no fix: the factory runs the "
        "contract's checks at your commit and needs the ones you name to fail there, twice, "
        "printing the `failure` line you give (the error the issue describes).",
        "Commit your work (`git add <the files you changed>` then `git commit`); report `head`, "
        "`base` = the base commit below, and exactly the files changed between them.",
    ],
    "builder": [
        "Make the change on your branch in your working directory, with tests.",
        "Commit your work (`git add <the files you changed>` then `git commit`): only "
        "committed work survives; the working directory is removed when you end. Never "
        "`git add -A`, and do not commit factory or task files.",
        "Report `head` = the commit to verify (`git rev-parse HEAD`), `base` = the base commit "
        "below, and exactly the files changed between them.",
        "A claim of success with no diff is rejected; the verifier, not you, declares done.",
    ],
    "verifier": [
        "Your working directory is a checkout of exactly the commit to verify; change nothing.",
        "Run every check of the contract (and any you add) from the repository root and "
        "report each command exactly as run with its real exit code: the factory reruns them "
        "at the base and at this commit, and rejects a report that drops or changes a "
        "contract check or disagrees with what it observes.",
        "verdict is pass only if every check passed; on fail give the shortest failure summary "
        "the builder can act on.",
    ],
    "packager": [
        "Write the release texts from the verified change: changelog entry, release notes, "
        "PR title and description, announcement draft. Change no code.",
    ],
    "analyst": [
        "Record adoption per named consumer with evidence (or `unknown`), lessons, and name a "
        "successor artifact or declare the line terminal. Change no code.",
    ],
}


@dataclass
class BriefContext:
    """Everything a brief is rendered from."""

    cell: str
    artifact: str
    stage: str
    role: str
    role_description: str
    read_only: bool
    attempt: int
    attempts: int
    contract: str
    schema: dict[str, Any]
    intake: dict[str, Any]
    budget: dict[str, Any]
    brain: str
    workdir: str
    factory_cmd: str
    brief_path: str
    retry_note: str = ""
    earlier: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    base_commit: str | None = None
    branch: str | None = None
    commit: str | None = None
    repairs: int = 2
    runtime_dir: str = ""
    scripted: str = ""
    example: dict[str, Any] = field(default_factory=dict)
    target: dict[str, Any] | None = None  # registry.Target.describe(); None: the brain
    checks: list[str] = field(default_factory=list)  # required at the verify gate


def _fence(text: str, lang: str = "text") -> str:
    longest = max((len(run) for run in text.split("\n") if set(run) == {"`"}), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}{lang}\n{text.rstrip()}\n{ticks}"


def _yaml(data: dict[str, Any]) -> str:
    return yamlio.dumps(data).decode("utf-8")


def commands(ctx: BriefContext) -> dict[str, str]:
    """The exact commands the cell uses to talk to the factory."""
    base = ctx.factory_cmd
    repo = f"--repo {shlex.quote(ctx.brain)}"
    return {
        "progress": f'{base} progress {repo} --cell {ctx.cell} "what you just did or found"',
        "submit": f"{base} submit {repo} --cell {ctx.cell} HANDOFF.yaml",
        "schema": f"{base} schema {ctx.role}",
    }


def _budget_lines(budget: dict[str, Any]) -> list[str]:
    lines = [f"- wall clock: {budget['timeout_s']:g} s, then the factory stops you"]
    if budget.get("max_tokens"):
        lines.append(f"- tokens: {budget['max_tokens']:,} (measured from your gptme log)")
    if budget.get("max_cost_usd") is not None:
        lines.append(f"- money: ${budget['max_cost_usd']:g} (measured from your gptme log)")
    return lines


def _target_lines(target: dict[str, Any]) -> list[str]:
    remote = (f"remote `{target['remote']}` ({target['url'] or 'no URL'})" if target["remote"]
              else "no remote")
    slug = f", GitHub `{target['slug']}`" if target.get("slug") else ""
    return [
        f"- target project: `{target['name']}` — its clone `{target['path']}`, {remote}{slug}, "
        f"base branch `{target['base']}`",
        "- the target is not the brain: your working directory is a worktree of the target's "
        "clone; ledger and factory files never go into it, and the clone's own branches and "
        "working tree are not yours to touch",
    ]


def render_brief(ctx: BriefContext) -> str:
    """The brief, as Markdown."""
    cmds = commands(ctx)
    out: list[str] = [
        f"# Cell brief: {ctx.role} for {ctx.artifact}",
        "",
        f"- cell id: `{ctx.cell}` (stage `{ctx.stage}`, attempt {ctx.attempt} of {ctx.attempts})",
        f"- role: {ctx.role} — {ctx.role_description}",
        f"- hand over: one `{ctx.contract}` (JSON Schema below)",
        f"- brain repo (the ledger): `{ctx.brain}`",
    ]
    if ctx.target:
        out += _target_lines(ctx.target)
    out.append(f"- your working directory: `{ctx.workdir}`")
    if ctx.read_only:
        out.append("- you are read-only: the working directory is a detached, throw-away "
                   "checkout; anything you change there is discarded. Never write into the "
                   "brain repo.")
    else:
        out.append(f"- your branch: `{ctx.branch}`, starting at base commit `{ctx.base_commit}`."
                   " Only committed work survives: the working directory is removed when you "
                   "end, the branch stays.")
    if ctx.commit:
        out.append(f"- the commit under consideration: `{ctx.commit}` (checked out for you)")
    if ctx.checks:
        where = f"target {ctx.target['name']}" if ctx.target else "the line"
        out += ["", f"## Required checks ({where}; the verify gate runs them from the root)",
                "", _fence("\n".join(ctx.checks))]
    out += ["", "## Rules", ""]
    rules = ROLE_RULES.get(ctx.role, [ctx.role_description])
    out += [f"- {r}" for r in rules]
    out += [
        f"- Submit exactly one handoff. An invalid one is answered field by field; fix it and "
        f"submit again ({ctx.repairs} repair(s) allowed, then the violation is recorded).",
        "- Report progress after each meaningful step: it is what people watching the line see.",
        "- Leaving without a valid handoff, or running out of budget, fails the attempt.",
        "",
        "## Budget",
        "",
        *_budget_lines(ctx.budget),
        "",
        "## How to talk to the factory",
        "",
        "Report progress (not committed; the latest note is kept with your handoff):",
        "",
        _fence(cmds["progress"]),
        "",
        "Submit your handoff (YAML or JSON; write the file outside the repository, e.g. in /tmp):",
        "",
        _fence(cmds["submit"]),
        "",
        f"The handoff names `kind: {ctx.contract}` and `artifact: {ctx.artifact}`. Acceptance "
        "criteria are referred to by their 0-based index.",
        "",
    ]
    if ctx.retry_note:
        out += ["## Why the previous attempt failed", "", _fence(ctx.retry_note), ""]
    out += ["## The artifact (intake)", "", _fence(_yaml(ctx.intake), "yaml"), ""]
    for stage, role, handoff in ctx.earlier:
        out += [f"## Earlier handoff: {stage} ({role})", "", _fence(_yaml(handoff), "yaml"), ""]
    if ctx.example:
        out += [f"## An example `{ctx.contract}` for this artifact", "",
                "It validates; replace its contents with your own findings (values in "
                "CAPITALS are yours to fill in).", "", _fence(_yaml(ctx.example), "yaml"), ""]
    out += [f"## JSON Schema of `{ctx.contract}`", "",
            _fence(json.dumps(ctx.schema, indent=1, sort_keys=False), "json"), ""]
    if ctx.scripted:
        out += ["## Scripted actions", "",
                "This cell is scripted (offline demo or test): its prompt carries these "
                "actions as a shell block, which gptme runs.", "",
                _fence(ctx.scripted, "text"), ""]
    return "\n".join(out)


def render_prompt(ctx: BriefContext, brief_abs: str, extra: str = "") -> str:
    """The short prompt handed to gptme: who you are and where the brief is."""
    lines = [
        f"You are factory cell {ctx.cell}, a {ctx.role} working on artifact {ctx.artifact}.",
        f"Read your brief first: {brief_abs}",
        f"Work in {ctx.workdir}. Hand over exactly one {ctx.contract} with "
        f"`{commands(ctx)['submit']}`, report progress with `{ctx.factory_cmd} progress`, "
        "then finish with the `complete` tool.",
    ]
    if extra:
        lines += ["", extra.strip()]
    return "\n".join(lines) + "\n"
