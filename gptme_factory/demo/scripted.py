"""Scripted cells: real gptme agents whose actions are written in advance (tests, offline demo).

gptme's offline model `mock/echo` answers with the last user message. A cell prompt that
carries a `shell` block therefore makes the real agent run that block with its real shell
tool — in the cell's worktree, through the same tmux/gptodo launch as any cell — so the whole
factory (briefs, worktrees, progress, submit, budgets, logs, gates) is exercised with no
model key. The actions are also written into the cell's brief ("Scripted actions"), so the
ledger shows exactly what each scripted cell was told to do.

How it ends: gptodo runs `gptme -n` with streaming on, where every step echoes the same
prompt and runs the block again. The block is guarded by a marker file so it acts once, and
the run ends after one step when `GPTME_MAX_STEPS=1` is in the cell's environment
(`SCRIPTED_ENV`: start the tmux server from an environment that has it, e.g. with a private
`TMUX_TMPDIR`). Without it the factory stops the cell a grace period after its handoff.

`plan(name)` gives the per-role scripts for the sample project (`sample.py`): `sample` (every
stage passes), `sample-rework` (the first build is wrong, the verifier's failure sends it
back, the second build is right) and `bugfix` (the bugfix line: the reproducer commits a
failing test of the reported input, the builder fixes it on top).
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..cells.brief import BriefContext
from ..cells.spawn import SpawnOptions
from ..ledger import yamlio
from ..ledger.store import Ledger
from .sample import (
    BROKEN_SOURCE,
    CHECK_COMMAND,
    DEMAND,
    FIXED_SOURCE,
    NEW_TEST,
    REPRO_FAILURE,
    REPRO_TEST,
    REPRO_TEST_COMMAND,
    REPRO_TEST_FILE,
    SAMPLE_DIR,
    bugfix_plan,
    verification_plan,
)

if TYPE_CHECKING:
    from ..cells.foreman import Stopped

SCRIPTED_MODEL = "mock/echo"
SCRIPTED_ENV = {"GPTME_MAX_STEPS": "1", "GPTME_TIKTOKEN_TIMEOUT": "0"}
_EOF = "FACTORY_EOF"

q = shlex.quote


def cli() -> str:
    """The factory CLI as a scripted cell calls it: `gptme-factory` when it is on PATH."""
    return "gptme-factory" if shutil.which("gptme-factory") else f"{q(sys.executable)} -m gptme_factory"


def _scratch(ctx: BriefContext, name: str) -> str:
    return f"{ctx.runtime_dir}/scripted/{ctx.cell}.{name}"


def write_file(path: str, text: str, append: bool = False) -> str:
    """Shell lines writing `text` to `path` verbatim (a quoted here-document)."""
    bad = [ln for ln in text.splitlines() if ln.strip() == _EOF or ln.lstrip().startswith("```")]
    if bad:
        raise ValueError(f"text cannot be embedded in a scripted shell block: {bad[0]!r}")
    op = ">>" if append else ">"
    return f"cat {op} {q(path)} <<'{_EOF}'\n{text.rstrip(chr(10))}\n{_EOF}"


def progress(ctx: BriefContext, note: str) -> str:
    """Shell line reporting a progress note."""
    return f"{cli()} progress --repo {q(ctx.brain)} --cell {ctx.cell} {q(note)}"


def submit(ctx: BriefContext, handoff: Mapping[str, Any], *, name: str = "handoff",
           subst: Mapping[str, str] | None = None, check: bool = True) -> str:
    """Shell lines writing a handoff file and submitting it.

    `subst` maps placeholders (e.g. `@HEAD@`) to shell expressions filled in at run time.
    """
    path = _scratch(ctx, f"{name}.yaml")
    text = yamlio.dumps(dict(handoff)).decode("utf-8")
    lines = [f"mkdir -p {q(str(path).rsplit('/', 1)[0])}"]
    if subst:
        for key in subst:
            text = text.replace(f"'{key}'", key)
        sed = " ".join(f'-e "s|{k}|{v}|g"' for k, v in subst.items())
        lines.append(write_file(path + ".in", text))
        lines.append(f"sed {sed} {q(path + '.in')} > {q(path)}")
    else:
        lines.append(write_file(path, text))
    lines.append(f"{cli()} submit --repo {q(ctx.brain)} --cell {ctx.cell} {q(path)}"
                 + ("" if check else " || true"))
    return "\n".join(lines)


def as_prompt(ctx: BriefContext, actions: str) -> str:
    """The prompt addition: the actions as one shell block that acts only once."""
    marker = _scratch(ctx, "ran")
    body = "\n".join([
        "(",
        "set -e",
        f"test ! -e {q(marker)} || {{ echo 'scripted actions already ran'; exit 0; }}",
        f"mkdir -p {q(marker.rsplit('/', 1)[0])}",
        f"touch {q(marker)}",
        f"cd {q(ctx.workdir)}",
        actions.strip(),
        ")",
    ])
    return ("This cell is scripted: run the block below once, exactly as written.\n\n"
            f"```shell\n{body}\n```\n")


# -- the sample project's line ------------------------------------------------------------


def scout_memo(ctx: BriefContext) -> dict[str, Any]:
    """The sample scout's memo."""
    return {
        "kind": "scout_memo", "artifact": ctx.artifact,
        "files": [{"path": f"{SAMPLE_DIR}/durations.py", "why": "parse_duration lives here"},
                  {"path": f"{SAMPLE_DIR}/test_durations.py", "why": "its tests"}],
        "constraints": ["keep accepting single units such as 90s and 5m"],
        "approach": "parse (number, unit) pairs with a regex, reject leftovers, sum them",
        "verification_plan": verification_plan(),
        "risks": ["inputs such as '2m30' must still be rejected"],
        "criteria": [{"criterion": 0, "plan": "new test_compound"},
                     {"criterion": 1, "plan": "the existing tests keep passing"}],
    }


def scout(ctx: BriefContext, memo: dict[str, Any] | None = None) -> str:
    """Scripted scout: look at the code, report, submit the memo."""
    return "\n".join([
        progress(ctx, "reading sample/durations.py"),
        f"grep -n 'def parse_duration' {SAMPLE_DIR}/durations.py",
        progress(ctx, "plan ready: regex over (number, unit) pairs; verify with unittest"),
        submit(ctx, memo or scout_memo(ctx)),
    ])


def reproducer(ctx: BriefContext) -> str:
    """Scripted reproducer: commit a test of the reported input (no fix), submit it."""
    path = f"{SAMPLE_DIR}/{REPRO_TEST_FILE}"
    handoff = {
        "kind": "reproduction", "artifact": ctx.artifact, "status": "success",
        "branch": ctx.branch, "base": ctx.base_commit, "head": "@HEAD@",
        "summary": "parse_duration('2m30s') as the issue reports it; it raises ValueError",
        "files_changed": [path], "tests_added": [f"{REPRO_TEST_FILE}::test_compound_timeout"],
        "checks": [REPRO_TEST_COMMAND], "failure": REPRO_FAILURE,
    }
    return "\n".join([
        progress(ctx, "writing the reproduction"),
        write_file(path, REPRO_TEST),
        f"git add {path}",
        "git -c user.name='factory cell' -c user.email=cell@factory.invalid "
        "commit -q -m 'test: reproduce the compound timeout bug'",
        progress(ctx, "committed the reproduction"),
        submit(ctx, handoff, subst={"@HEAD@": "$(git rev-parse HEAD)"}),
    ])


def builder(ctx: BriefContext, source: str) -> str:
    """Scripted builder: change, add a test, commit on its branch, submit the patch."""
    files = [f"{SAMPLE_DIR}/durations.py", f"{SAMPLE_DIR}/test_durations.py"]
    patch = {
        "kind": "builder_patch", "artifact": ctx.artifact, "status": "success",
        "branch": ctx.branch, "base": ctx.base_commit, "head": "@HEAD@",
        "summary": "parse compound durations such as 2m30s", "files_changed": files,
        "tests_added": ["test_compound"],
        "claims": [{"criterion": 0, "claim": "compound parsing", "evidence": "test_compound"},
                   {"criterion": 1, "claim": "old behaviour kept", "evidence": "existing tests"}],
        "notes_for_verifier": f"run `{CHECK_COMMAND}`",
    }
    return "\n".join([
        progress(ctx, "rewriting parse_duration"),
        write_file(f"{SAMPLE_DIR}/durations.py", source),
        write_file(f"{SAMPLE_DIR}/test_durations.py", NEW_TEST, append=True),
        "git add " + " ".join(files),
        "git -c user.name='factory cell' -c user.email=cell@factory.invalid "
        "commit -q -m 'feat: parse compound durations'",
        progress(ctx, "committed the change and test_compound"),
        submit(ctx, patch, subst={"@HEAD@": "$(git rev-parse HEAD)"}),
    ])


def _planned(ctx: BriefContext) -> list[str]:
    cmds: list[str] = list(ctx.checks)  # required by the line and the target
    for _, _, handoff in ctx.earlier:
        cmds += [str(c["command"]) for c in handoff.get("verification_plan", [])]
    return list(dict.fromkeys(cmds)) or [CHECK_COMMAND]


def verifier(ctx: BriefContext) -> str:
    """Scripted verifier: run every planned check, report real exit codes, submit."""
    cmds = _planned(ctx)
    n = len(ctx.intake.get("acceptance", [])) or 1

    def report(verdict: str) -> dict[str, Any]:
        return {
            "kind": "verifier_report", "artifact": ctx.artifact, "commit": ctx.commit or "HEAD",
            "checks": [{"command": c, "exit_code": f"@CODE{i}@"} for i, c in enumerate(cmds)],
            "verdict": verdict,
            "failure_summary": "" if verdict == "pass" else "checks fail: see the factory's run",
            "criteria": [{"criterion": i, "verdict": verdict, "evidence": "the planned checks"}
                         for i in range(n)],
        }

    subst = {f"@CODE{i}@": f"$code{i}" for i in range(len(cmds))}
    lines = [progress(ctx, f"running {len(cmds)} planned check(s)"), "ok=1"]
    for i, c in enumerate(cmds):
        lines.append(f"code{i}=0; ( {c} ) > /dev/null 2>&1 || code{i}=$?")
        lines.append(f'[ "$code{i}" -eq 0 ] || ok=0')
    lines += [
        'if [ "$ok" -eq 1 ]; then',
        progress(ctx, "every check passed"),
        submit(ctx, report("pass"), name="pass", subst=subst),
        "else",
        progress(ctx, "a check failed"),
        submit(ctx, report("fail"), name="fail", subst=subst),
        "fi",
    ]
    return "\n".join(lines)


def packager(ctx: BriefContext) -> str:
    """Scripted packager: the release texts."""
    return submit(ctx, {
        "kind": "release_package", "artifact": ctx.artifact, "change_type": "feat",
        "version_bump": "minor", "changelog_entry": "parse_duration accepts 2m30s and 1h2m3s",
        "release_notes": "## Compound durations\n\n`--timeout 2m30s` now works.",
        "pr_title": "feat: compound durations", "pr_description": "Fixes the demand in the intake.",
        "announcement": "Durations like 2m30s now work."})


def analyst(ctx: BriefContext) -> str:
    """Scripted analyst: adoption unknown for every consumer, line terminal."""
    return submit(ctx, {
        "kind": "outcome_report", "artifact": ctx.artifact,
        "adoption": [{"consumer": c, "status": "unknown", "evidence": "not asked yet"}
                     for c in ctx.intake.get("consumers", [])],
        "terminal": "the demand is met; nothing follows"})


@dataclass(frozen=True)
class SamplePlan:
    """Per-role scripts for the sample project; the first `broken_builds` builds are wrong."""

    broken_builds: int = 0

    def __call__(self, ctx: BriefContext) -> str:
        """The prompt addition for the cell described by `ctx`."""
        if ctx.role == "builder":
            actions = builder(ctx, BROKEN_SOURCE if ctx.attempt <= self.broken_builds
                              else FIXED_SOURCE)
        else:
            make = {"scout": scout, "verifier": verifier, "packager": packager,
                    "analyst": analyst}.get(ctx.role)
            actions = make(ctx) if make else f"echo 'no scripted actions for role {ctx.role}'"
        return as_prompt(ctx, actions)


@dataclass(frozen=True)
class BugfixPlan:
    """Per-role scripts for the sample's demand on the bugfix line: reproduce, then fix."""

    def __call__(self, ctx: BriefContext) -> str:
        """The prompt addition for the cell described by `ctx`."""
        if ctx.role == "scout":
            actions = scout(ctx, {**scout_memo(ctx), "verification_plan": bugfix_plan()})
        elif ctx.role == "reproducer":
            actions = reproducer(ctx)
        else:
            return SamplePlan(0)(ctx)
        return as_prompt(ctx, actions)


PLANS: dict[str, Callable[[BriefContext], str]] = {
    "sample": SamplePlan(0),
    "sample-rework": SamplePlan(1),
    "bugfix": BugfixPlan(),
}


def plan(name: str) -> Callable[[BriefContext], str]:
    """A named scripted plan (for `--scripted NAME`)."""
    from ..errors import UsageError

    try:
        return PLANS[name]
    except KeyError:
        raise UsageError(f"unknown scripted plan {name!r}: {', '.join(PLANS)}") from None


def prepare_sample(ledger: Ledger, by: str | None = None) -> str:
    """Write and commit the sample project in the brain repo and intake its demand."""
    from .sample import write_sample_project

    paths = write_sample_project(ledger.repo.root)
    ledger.repo.git("add", "--", *paths)
    ledger.repo.git("commit", "-q", "-m", "chore: add the sample project", "--", *paths)
    from ..line.intake import intake

    return intake(ledger, **DEMAND, by=by).artifact


@contextmanager
def scripted_environment(brain: Path) -> Iterator[Path]:
    """Run scripted cells with `SCRIPTED_ENV`, on a tmux server that has it.

    gptodo's cells inherit the environment of the tmux server, not of the process spawning
    them, so scripted cells get a server of their own: `TMUX_TMPDIR` is kept when the caller
    set one (tests do), else it is a short per-brain directory under the temp dir (stable, so
    a resumed run finds the same server). The server is not killed on exit: cells outlive an
    interrupted foreman, and tmux exits by itself when its last session ends.
    """
    saved = {k: os.environ.get(k) for k in (*SCRIPTED_ENV, "TMUX_TMPDIR", "TMUX")}
    tmpdir = os.environ.get("TMUX_TMPDIR")
    if not tmpdir:
        key = hashlib.sha256(str(brain.resolve()).encode()).hexdigest()[:10]
        tmpdir = str(Path(tempfile.gettempdir()) / f"gf-tmux-{key}")
    Path(tmpdir).mkdir(parents=True, exist_ok=True)
    os.environ.update(SCRIPTED_ENV)
    os.environ["TMUX_TMPDIR"] = tmpdir
    os.environ.pop("TMUX", None)
    try:
        yield Path(tmpdir)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_scripted(ledger: Ledger, artifact: str, plan_name: str = "sample", *,
                 until: str | None = None, publish: str | None = None,
                 opts: SpawnOptions | None = None, **kwargs: Any) -> list[Stopped]:
    """Drive one artifact through its line with the scripted cells of `plan_name`, offline.

    Cells run the plan's actions on `mock/echo` in `scripted_environment`, and a release
    package is published as a note so the line can reach `measured`.
    """
    from ..cells.foreman import run

    opts = opts or SpawnOptions()
    opts.script = plan(plan_name)
    opts.model = opts.model or SCRIPTED_MODEL
    kwargs.setdefault("poll_s", 0.5)
    with scripted_environment(ledger.repo.root):
        return run(ledger, [artifact], until=until, publish=publish or "note", opts=opts,
                   **kwargs)
