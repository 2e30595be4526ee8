"""Garbage collection: what finished cells leave behind, removed on request (`gc`).

A cell is reaped as it ends (its worktree goes then), but a killed factory, a crash, an older
version or plain time leave things a brain repo does not need:

- worktrees in the git dir of cells that are no longer running, and gate checkouts of
  advances that died (`.git/factory-worktrees/`) — the brain's and every target clone's;
- builder branches `factory/<cell>` of finished cells, except the accepted build of an
  artifact still in progress (its verifier and packager need that commit), in the brain
  and in every target clone (a published branch stays on the target's remote);
- per-cell gptodo task files in `tasks/` (written by versions before 0.2), if git does not
  track them;
- runtime files (`factory/.runtime/`) of cells that are not running: prompts, progress notes,
  repair counters, scripted scratch files, output files.

Nothing in the ledger is touched, and nothing of a running cell. `dry_run` lists only.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field

from ..errors import FactoryError
from ..ledger.config import COMMIT_GATES
from ..ledger.gitstore import GitRepo
from ..ledger.records import parse_cell_id
from ..ledger.store import Ledger
from ..line.transitions import load
from ..targets import registry
from . import reaper, taskfile, worktrees

RUNTIME_PER_CELL = ("cells", "progress", "repairs", "scripted", "output")


@dataclass
class Cleanup:
    """What `collect_garbage` removed (or would remove, on a dry run)."""

    worktrees: list[str] = field(default_factory=list)
    branches: list[str] = field(default_factory=list)
    task_files: list[str] = field(default_factory=list)
    runtime: list[str] = field(default_factory=list)
    dry_run: bool = False

    @property
    def total(self) -> int:
        """How many things."""
        return len(self.worktrees) + len(self.branches) + len(self.task_files) + len(self.runtime)


def _cell_of(name: str) -> str:
    """The cell a runtime file or worktree is named after (`<cell>` or `<cell>.<suffix>`)."""
    parts = name.split(".")
    return ".".join(parts[:3]) if len(parts) >= 3 else name


def _kept_builds(ledger: Ledger) -> dict[str, set[str]]:
    """Artifact -> the cells whose build is still needed (accepted, artifact not final)."""
    kept: dict[str, set[str]] = {}
    for aid in ledger.artifact_ids():
        try:
            _, view = load(ledger, aid)
        except FactoryError:
            kept[aid] = set(view_cells(ledger, aid))  # damaged: keep everything of it
            continue
        if view.is_final:
            continue
        kept[aid] = {g.cell for st, g in view.gates.items()
                     if any(s.name == st and s.gate in COMMIT_GATES for s in view.line.stages)}
        if view.cell:
            kept[aid].add(view.cell)
    return kept


def view_cells(ledger: Ledger, aid: str) -> list[str]:
    """The cells a (possibly damaged) artifact names, read tolerantly."""
    try:
        chain = ledger.read(aid, tolerant=True)
    except FactoryError:
        return []
    return [getattr(e.event, "cell", "") for e in chain.events if getattr(e.event, "cell", "")]


def collect_garbage(ledger: Ledger, *, dry_run: bool = False) -> Cleanup:
    """Remove what finished cells left behind; see the module docstring."""
    out = Cleanup(dry_run=dry_run)
    repo = ledger.repo
    live = {r.cell for r in reaper.live(ledger)}
    with ledger.locked():
        kept = _kept_builds(ledger)
        _sweep_repo(ledger, repo, "", live, kept, out)
        for name in sorted(ledger.config.targets):
            try:
                target = registry.resolve(ledger, name)
            except FactoryError:
                continue  # its clone is not on this machine: nothing of it to collect here
            _sweep_repo(ledger, target.repo, f"{name}:", live, kept, out)
        tasks = repo.root / taskfile.TASKS_DIR
        tracked = set(repo.git("ls-files", "-z", "--", taskfile.TASKS_DIR).decode()
                      .split("\0")) if tasks.is_dir() else set()
        for path in sorted(tasks.glob("*.md")) if tasks.is_dir() else []:
            rel = ledger.relpath(path)
            try:
                meta, _ = taskfile.parse(path.read_bytes(), rel)
            except FactoryError:
                continue
            if "factory_cell" in meta and rel not in tracked:
                out.task_files.append(rel)
                if not dry_run:
                    path.unlink()
        for sub in RUNTIME_PER_CELL:
            folder = ledger.runtime_dir / sub
            for path in sorted(folder.iterdir()) if folder.is_dir() else []:
                cell = _cell_of(path.name.removesuffix(".json"))
                if cell in live or "." not in cell:
                    continue
                out.runtime.append(ledger.relpath(path))
                if not dry_run:
                    if path.is_dir():
                        shutil.rmtree(path, ignore_errors=True)
                    else:
                        path.unlink(missing_ok=True)
        if not dry_run:
            repo.git("worktree", "prune")
    return out


def _sweep_repo(ledger: Ledger, repo: GitRepo, label: str, live: set[str],
                kept: dict[str, set[str]], out: Cleanup) -> None:
    """Worktrees and builder branches of finished cells in one repo (the brain or a target)."""
    base = repo.worktree_base()
    for path in sorted(base.iterdir()) if base.is_dir() else []:
        if path.name.startswith("verify-") or path.name not in live:
            shown = (ledger.relpath(path) if not label and path.is_relative_to(ledger.repo.root)
                     else path.name)
            out.worktrees.append(f"{label}{shown}")
            if not out.dry_run:
                worktrees.discard(repo, path)
    for branch in repo.branches(worktrees.BRANCH_PREFIX):
        cell = branch.removeprefix(worktrees.BRANCH_PREFIX)
        try:
            aid, _ = parse_cell_id(cell)
        except ValueError:
            continue  # not a factory cell's branch: not ours to remove
        if cell in live or cell in kept.get(aid, set()):
            continue
        out.branches.append(f"{label}{branch}")
        if not out.dry_run:
            repo.delete_branch(branch)
    if label and not out.dry_run:
        repo.git("worktree", "prune")


__all__ = ["Cleanup", "collect_garbage"]
