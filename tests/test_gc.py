"""`gc`: stale worktrees, finished cells' branches, old task files and runtime leftovers go;
the ledger, running cells and the builds still needed stay."""

from __future__ import annotations

from click.testing import CliRunner

from gptme_factory.cells import state as cellstate
from gptme_factory.cells.gc import collect_garbage
from gptme_factory.cells.state import CellRecord
from gptme_factory.cli import main
from gptme_factory.ledger.store import Ledger
from gptme_factory.line import engine
from gptme_factory.line.verify import verify_ledger
from tests.conftest import git
from tests.flow_helpers import sample_artifact, to_package
from tests.ledger_helpers import git_state


def test_gc_removes_leftovers_and_keeps_what_is_needed(ledger: Ledger) -> None:
    root = ledger.repo.root
    aid = sample_artifact(ledger)
    head = to_package(ledger, aid)  # a real build branch, accepted, artifact in progress
    [kept_branch] = [b for b in ledger.repo.branches("factory/") if ".build." in b]
    done = sample_artifact(ledger, title="Done already")
    engine.finish(ledger, done, "abandoned", "not needed")
    stale = f"factory/{done}.build.0bad"
    git(root, "branch", stale, head)
    # a live cell (a runtime record) and its files; a dead cell's leftovers
    live = f"{aid}.package.1111"
    cellstate.save(ledger.runtime_dir, CellRecord(
        cell=live, artifact=aid, stage="package", role="packager", backend="command",
        started_at="2026-01-02T03:04:05+00:00", workdir=str(root), timeout_s=60))
    for sub, name in (("progress", f"{live}.json"), ("progress", f"{done}.build.0bad.json"),
                      ("cells", f"{done}.build.0bad.prompt.md"),
                      ("scripted", f"{done}.build.0bad.handoff.yaml")):
        (ledger.runtime_dir / sub).mkdir(parents=True, exist_ok=True)
        (ledger.runtime_dir / sub / name).write_text("x\n")
    wt = ledger.repo.worktree_base() / f"{done}.build.0bad"
    ledger.repo.worktree_add(wt, head)
    (root / "tasks").mkdir()
    old = root / "tasks" / f"{done}.build.0bad.md"
    old.write_text("---\nstate: active\ncreated: '2026-01-02'\nfactory_cell: x\n---\n\n# old\n")
    mine = root / "tasks" / "my-own-task.md"
    mine.write_text("---\nstate: todo\ncreated: '2026-01-02'\n---\n\n# mine\n")
    before_head = git(root, "rev-parse", "HEAD")

    dry = collect_garbage(ledger, dry_run=True)
    assert dry.branches == [stale] and dry.task_files == [f"tasks/{old.name}"]
    assert len(dry.worktrees) == 1 and sorted(dry.runtime) == sorted([
        f"factory/.runtime/progress/{done}.build.0bad.json",
        f"factory/.runtime/cells/{done}.build.0bad.prompt.md",
        f"factory/.runtime/scripted/{done}.build.0bad.handoff.yaml"])
    assert wt.exists() and old.exists() and stale in ledger.repo.branches("factory/")

    state = git_state(root)
    result = CliRunner().invoke(main, ["gc", "--repo", str(root)])
    assert result.exit_code == 0, result.output
    assert f"removed branch {stale}" in result.output and "removed 6 item(s)" in result.output
    assert not wt.exists() and not old.exists() and mine.exists()
    assert ledger.repo.branches("factory/") == [kept_branch]  # the accepted build stays
    assert (ledger.runtime_dir / "progress" / f"{live}.json").exists()  # a live cell's
    assert git(root, "rev-parse", "HEAD") == before_head and verify_ledger(ledger) == []
    assert git_state(root)["diff"] == state["diff"]
    again = CliRunner().invoke(main, ["gc", "--repo", str(root)])
    assert again.output.strip() == "nothing to remove"
