"""The offline demo: a whole production line in a temporary workspace, no model key needed.

`run_demo` creates three repositories side by side: the brain (its own git identity,
`init`ed: ledger and gptme wiring), the sample project (sample.py) as its own clone, and
that project's bare "upstream" remote, standing in for github.com/acme/deploy-bot. The
project is registered as a target of the brain, the sample DEMAND (an issue of that repo)
is taken in — it picks the target by its slug — and the line is driven — scout, build,
verify, package, measure — with scripted cells: the real `gptme` CLI on the offline
`mock/echo` model, spawned through real gptodo and tmux by the cells engine. Builders work in
a worktree of the project on a branch from upstream's `main`; the verify gate runs the
project's tests in a checkout of the built commit, in the project's own environment (a venv
made once); packaging pushes the branch to the upstream and renders the PR text, and the
exact `gh pr create --repo acme/deploy-bot ...` is printed (there is no GitHub here).
While it runs the board is shown live; afterwards the typed handoffs and the `git log` audit
trail are printed. Output goes through a `rich` console (plain lines when not a terminal).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import FactoryError
from ..ledger import yamlio
from ..ledger.store import Ledger
from .sample import CHECK_COMMAND, DEMAND, write_sample_project

DEMO_IDENTITY = ("gptme-factory demo", "demo@gptme-factory.invalid")
ABOUT = """# Demo agent

A throwaway brain repo made by `gptme-factory demo`. The factory ledger lives in `factory/`;
the sample project the artifact changes is its own repository, registered as target
`deploy-bot` (see `gptme-factory target show deploy-bot`).
"""
SAMPLE_TARGET = "deploy-bot"
SAMPLE_SLUG = "acme/deploy-bot"  # the demand's repo; the bare upstream stands in for it
SAMPLE_SETUP = 'python3 -m venv --without-pip "$FACTORY_ENV"'  # offline: nothing to install


@dataclass
class DemoRepo:
    """The demo's brain repo, its ledger, the sample target and the artifact it drives."""

    root: Path
    ledger: Ledger
    artifact: str
    project: Path | None = None
    upstream: Path | None = None


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True,
                          text=True).stdout


def _identity(root: Path) -> None:
    _git(root, "config", "user.name", DEMO_IDENTITY[0])
    _git(root, "config", "user.email", DEMO_IDENTITY[1])
    _git(root, "config", "commit.gpgsign", "false")


def create_brain(root: Path) -> None:
    """A git brain repo with a local identity and an ABOUT.md, committed."""
    root.mkdir(parents=True, exist_ok=True)
    _git(root, "init", "-q", "-b", "master")
    _identity(root)
    (root / "ABOUT.md").write_text(ABOUT)
    _git(root, "add", "ABOUT.md")
    _git(root, "commit", "-q", "-m", "chore: the demo agent's brain repo")


def create_sample_target(clone: Path, upstream: Path, branch: str = "main") -> None:
    """The sample project as its own repository, pushed to a bare "upstream" remote."""
    upstream.mkdir(parents=True, exist_ok=True)
    _git(upstream, "init", "-q", "--bare", "-b", branch)
    clone.mkdir(parents=True, exist_ok=True)
    _git(clone, "init", "-q", "-b", branch)
    _identity(clone)
    (clone / "README.md").write_text("# deploy-bot\n\nThe sample project of `gptme-factory demo`.\n")
    paths = write_sample_project(clone)
    _git(clone, "add", "README.md", *paths)
    _git(clone, "commit", "-q", "-m", "feat: parse durations")
    _git(clone, "remote", "add", "origin", str(upstream))
    _git(clone, "push", "-q", "-u", "origin", branch)


def register_sample_target(ledger: Ledger, clone: Path) -> Any:
    """Register the sample project as target `deploy-bot` (detected remote and base)."""
    from ..ledger.config import TargetConfig
    from ..ledger.gitstore import GitRepo
    from ..targets import registry
    from ..targets.detect import detect

    found = detect(GitRepo.discover(clone), commands=False)
    cfg = TargetConfig(path=registry.stored_path(ledger, clone), remote=found.remote,
                       url=found.url, slug=SAMPLE_SLUG, base=found.base or "main",
                       setup=[SAMPLE_SETUP], checks=[CHECK_COMMAND])
    return registry.add(ledger, SAMPLE_TARGET, cfg)


def prepare(root: Path) -> DemoRepo:
    """Create the brain and the sample target, `init` and wire the brain, intake the demand.

    The project and its upstream are made next to the brain (`root.parent`).
    """
    from ..line.intake import intake as record_intake
    from ..outcomes.demand import target_of_demand
    from ..plugin.wiring import wire

    project, upstream = root.parent / SAMPLE_TARGET, root.parent / "upstream" / f"{SAMPLE_TARGET}.git"
    create_brain(root)
    create_sample_target(project, upstream)
    ledger, _ = Ledger.init(root)
    wire(ledger)
    register_sample_target(ledger, project)
    intake = record_intake(ledger, **DEMAND,
                           target=target_of_demand(ledger.config, str(DEMAND["demand"])))
    return DemoRepo(root, ledger, intake.artifact, project, upstream)


# -- the live board ---------------------------------------------------------------------


def board_rows(ledger: Ledger, artifact: str) -> list[dict[str, str]]:
    """One row per stage of the artifact: status, cell, elapsed, latest progress."""
    from ..ledger.runtime import last_progress
    from ..views.summary import load_view

    view = load_view(ledger, artifact)
    now = datetime.now(timezone.utc)
    current = view.stage.name if view.stage else None
    rows = []
    for st in view.line.stages:
        cells = [c for c in view.cells.values() if c.stage == st.name]
        cell = cells[-1] if cells else None
        if st.name in view.gates or (st.name in view.stage_passed_at and st.name != current):
            status = "passed"
        elif st.name == current:
            status = view.status if not view.is_final else view.state
        else:
            status = "waiting" if not view.is_final else "-"
        elapsed = left = ""
        note = ""
        if cell is not None:
            end = cell.finished_at or (now if status == "running" else None)
            if end is not None:
                spent = (end - cell.started_at).total_seconds()
                elapsed = f"{spent:.0f}s"
                budget = (cell.budget or {}).get("timeout_s")
                if status == "running" and budget:
                    left = f"{max(0.0, budget - spent):.0f}s"
            progress = last_progress(ledger, cell.cell)
            note = progress[0] if progress else (cell.last_progress or "")
        rows.append({"stage": st.name, "role": st.role, "status": status,
                     "attempts": str(view.attempts.get(st.name, 0)),
                     "cell": cell.cell.rsplit(".", 1)[-1] if cell else "", "elapsed": elapsed,
                     "left": left, "progress": note[:60]})
    return rows


def board_table(ledger: Ledger, artifact: str, title: str) -> Any:
    """The live board as a rich Table."""
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for col in ("stage", "role", "status", "attempts", "cell", "elapsed", "left", "progress"):
        table.add_column(col)
    try:
        rows = board_rows(ledger, artifact)
    except FactoryError as exc:
        table.add_row("?", "", f"unreadable: {exc}", "", "", "", "", "")
        return table
    styles = {"passed": "green", "running": "yellow", "submitted": "cyan", "blocked": "red"}
    for r in rows:
        style = styles.get(r["status"], "")
        table.add_row(*(r[k] for k in ("stage", "role")),
                      f"[{style}]{r['status']}[/]" if style else r["status"],
                      *(r[k] for k in ("attempts", "cell", "elapsed", "left", "progress")))
    return table


def board_line(ledger: Ledger, artifact: str) -> str:
    """The board on one line, for logs and non-terminal output."""
    try:
        rows = board_rows(ledger, artifact)
    except FactoryError as exc:
        return f"board unreadable: {exc}"
    return "  ".join(f"{r['stage']}:{r['status']}" for r in rows)


class LiveBoard:
    """Shows the board while the line runs: a rich Live table, or a line per change."""

    def __init__(self, console: Any, ledger: Ledger, artifact: str) -> None:
        self.console, self.ledger, self.artifact = console, ledger, artifact
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._live: Any = None
        self._last = ""
        self.started = time.monotonic()

    def _title(self) -> str:
        return f"{self.artifact}  ({time.monotonic() - self.started:.0f}s)"

    def __enter__(self) -> LiveBoard:
        if self.console.is_terminal:
            from rich.live import Live

            self._live = Live(get_renderable=lambda: board_table(self.ledger, self.artifact,
                                                                 self._title()),
                              console=self.console, refresh_per_second=2)
            self._live.__enter__()
        else:
            self._thread = threading.Thread(target=self._log_changes, daemon=True)
            self._thread.start()
        return self

    def _log_changes(self) -> None:
        while not self._stop.wait(0.5):
            self.tick()

    def say(self, message: str) -> None:
        """A foreman event, printed above the live board (or between board lines)."""
        self.console.print(f"[{time.monotonic() - self.started:5.1f}s] {message}",
                           highlight=False, markup=False)

    def tick(self) -> None:
        """Print the board line if it changed (non-terminal mode)."""
        line = board_line(self.ledger, self.artifact)
        if line != self._last:
            self._last = line
            self.console.print(f"[{time.monotonic() - self.started:5.1f}s] {line}",
                               highlight=False)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self.tick()
        if self._live is not None:
            self._live.__exit__(None, None, None)
            self.console.print(board_table(self.ledger, self.artifact, self._title()))


# -- the report -------------------------------------------------------------------------


def handoffs_text(ledger: Ledger, artifact: str) -> str:
    """Every typed handoff of the artifact, as the YAML the ledger holds."""
    from ..views.summary import load_view

    view = load_view(ledger, artifact)
    parts = []
    for stage, handoff in view.handoffs.items():
        body = yamlio.dumps(handoff).decode().rstrip("\n")
        parts.append(f"--- [{stage}] {handoff.get('kind')}\n{body}")
    return "\n".join(parts)


def audit_trail(root: Path) -> str:
    """`git log` of the brain repo: one commit per decision."""
    return _git(root, "log", "--reverse", "--format=%h %s").rstrip("\n")


# -- driving the line -------------------------------------------------------------------


def drive(repo: DemoRepo, say: Callable[[str], None]) -> Any:
    """Run the artifact through the line with scripted cells (the foreman does the work).

    The package is published by pushing the builder's branch to the target's upstream.
    """
    from .scripted import run_scripted

    return run_scripted(repo.ledger, repo.artifact, publish="branch", on_event=say)


def delivery_text(repo: DemoRepo) -> str:
    """What reached the target: the pushed branch, the PR text, the exact `gh` command."""
    from ..ledger.gitstore import GitRepo
    from ..outcomes.ghcli import command_line
    from ..outcomes.packaging import PACKAGES_DIR, gh_args, render
    from ..targets.registry import of_intake
    from ..views.summary import load_view

    view = load_view(repo.ledger, repo.artifact)
    target = of_intake(repo.ledger, view.intake)
    pkg = render(repo.ledger, repo.artifact)
    out = repo.ledger.dir / PACKAGES_DIR
    lines = []
    if repo.upstream is not None:
        bare = GitRepo(repo.upstream, repo.upstream, repo.upstream)
        refs = bare.git("for-each-ref", "--format=%(refname:short) %(objectname:short)",
                        "refs/heads/").decode().strip()
        lines += [f"upstream {repo.upstream} now has:", *(f"  {r}" for r in refs.splitlines())]
    lines += ["", f"pull request text ({repo.ledger.relpath(out / pkg.pr_body)}):", "",
              (out / pkg.pr_body).read_text().rstrip(), "",
              "to open it on GitHub (no gh here, so not run):",
              "  " + command_line(gh_args(target, "pr", pkg, out, base=None))]
    status = target.repo.git("status", "--porcelain").decode().strip()
    branches = target.repo.git("branch", "--format=%(refname:short)").decode().split()
    mine = [b for b in branches if not b.startswith("factory/")]
    lines += ["", f"the project's clone: working tree {'clean' if not status else 'changed!'}, "
              f"own branches {', '.join(mine)} untouched (factory branches: "
              f"{len(branches) - len(mine)})"]
    return "\n".join(lines)


def close_measured(repo: DemoRepo) -> str | None:
    """Close a measured artifact as its outcome report says (successor or terminal)."""
    from ..line import engine
    from ..views.summary import load_view

    view = load_view(repo.ledger, repo.artifact)
    outcome = view.handoffs.get("measure") if view.state == "measured" else None
    if not outcome:
        return None
    successor, terminal = outcome.get("successor"), outcome.get("terminal")
    engine.close(repo.ledger, repo.artifact, successor=successor,
                 terminal=None if successor else terminal)
    return f"successor {successor}" if successor else f"terminal: {terminal}"


@contextmanager
def private_tmux() -> Iterator[None]:
    """Cells get a tmux server of the demo's own (a private TMUX_TMPDIR), stopped at the end."""
    saved = {k: os.environ.get(k) for k in ("TMUX_TMPDIR", "TMUX")}
    tmpdir = tempfile.mkdtemp(prefix="gf-demo-tmux-")
    os.environ["TMUX_TMPDIR"] = tmpdir
    os.environ.pop("TMUX", None)
    try:
        yield
    finally:
        # Every cell has been reaped by now; this stops only the demo's own server.
        subprocess.run(["tmux", "kill-server"], capture_output=True, check=False)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(tmpdir, ignore_errors=True)


def run_demo(console: Any, keep: Path | None = None,
             driver: Callable[[DemoRepo, Callable[[str], None]], Any] | None = None) -> int:
    """The whole demo; returns an exit code (0 when the artifact went through the whole line)."""
    from ..views.summary import load_view

    missing = [p for p in ("gptme", "gptodo", "tmux") if shutil.which(p) is None]
    if missing:
        console.print(f"the demo needs {', '.join(missing)} on PATH "
                      "(`gptme-factory doctor` says how to install them)")
        return 2
    tmp = None
    if keep is not None:
        workspace = keep.resolve()
        if workspace.exists() and any(workspace.iterdir()):
            console.print(f"{workspace} exists and is not empty: pick a new directory for --keep")
            return 2
    else:
        tmp = tempfile.mkdtemp(prefix="gptme-factory-demo-")
        workspace = Path(tmp)
    root = workspace / "brain"
    started = time.monotonic()
    try:
        repo = prepare(root)
        console.print(f"[bold]brain repo[/] {root}  (the ledger, in factory/)")
        console.print(f"[bold]target[/] {SAMPLE_TARGET}: its own clone {repo.project}, remote "
                      f"origin = the bare upstream {repo.upstream} (standing in for "
                      f"github.com/{SAMPLE_SLUG})")
        console.print(f"[bold]intake[/] {repo.artifact}: {DEMAND['title']}\n"
                      f"  demand {DEMAND['demand']} (target {SAMPLE_TARGET}, by its slug); "
                      f"consumers {', '.join(DEMAND['consumers'])}")
        console.print("[bold]running the line[/]: scripted cells, each a real `gptme -n --model "
                      "mock/echo` spawned by gptodo in tmux")
        with private_tmux(), LiveBoard(console, repo.ledger, repo.artifact) as board:
            (driver or drive)(repo, board.say)
        closed = close_measured(repo)
        if closed:
            console.print(f"closed {repo.artifact} ({closed}): done is not a handoff")
        view = load_view(repo.ledger, repo.artifact)
        console.print(f"\n[bold]typed handoffs[/] (validated, in "
                      f"{repo.ledger.artifact_rel(repo.artifact)}/)")
        console.print(handoffs_text(repo.ledger, repo.artifact), highlight=False, markup=False)
        if view.published:
            console.print(f"\n[bold]delivered to the target[/] ({SAMPLE_TARGET})")
            console.print(delivery_text(repo), highlight=False, markup=False)
        console.print("\n[bold]audit trail[/] (git log of the brain: one commit per decision)")
        console.print(audit_trail(root), highlight=False, markup=False)
        elapsed = time.monotonic() - started
        console.print(f"\n{repo.artifact}: [bold]{view.state}[/] in {elapsed:.0f}s"
                      + (f"; kept in {workspace}" if keep else ""))
        if view.state != "closed":
            # the cause the factory itself observed, never only a cell's claim
            why = view.blocked_reason or view.final_reason or view.retry_note or view.status
            stage = view.stage.name if view.stage else "-"
            console.print(f"the line stopped at {stage} ({view.status}): {why}",
                          highlight=False, markup=False)
        return 0 if view.state == "closed" else 1
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
