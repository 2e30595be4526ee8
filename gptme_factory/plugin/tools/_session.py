"""The `session.start` hook: a few lines telling the agent what the factory is doing.

Says which artifacts are active and which cells are running in the brain repo gptme works
in. Silent when the workspace is not a git repo, has no ledger, or nothing is active; never
raises (a broken ledger is one line pointing at `gptme-factory verify`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Generator
from pathlib import Path
from typing import Any

from gptme.message import Message

logger = logging.getLogger(__name__)


def briefing_for(workspace: Path | str) -> str:
    """The briefing text for a workspace ("" when there is nothing to say)."""
    from ...errors import FactoryError, NotAFactory, NotAGitRepo
    from ...ledger.store import Ledger
    from ...views.status import load_summaries
    from ..settings import settings
    from ._base import brain_path
    from ._render import briefing

    try:
        root, in_cell = brain_path(os.environ.get("GPTME_FACTORY_REPO") or workspace)
        if in_cell:
            return ""  # a cell has its brief; the board is the operator's business
        ledger = Ledger.open(root, settings.ledger_dir)
    except (NotAFactory, NotAGitRepo):
        return ""
    try:
        summaries = load_summaries(ledger)
    except FactoryError as exc:
        return (f"The factory ledger in {ledger.repo.root} could not be read: "
                f"{str(exc).splitlines()[0]} (run `gptme-factory verify`).")
    return briefing(summaries, f"{ledger.repo.root}/{ledger.rel}")


def session_start(
    logdir: Path, workspace: Path | None, initial_msgs: list[Any], **_: Any
) -> Generator[Message, None, None]:
    """The `session.start` hook gptme calls."""
    from ..settings import settings

    if not settings.session_start:
        return
    try:
        text = briefing_for(workspace or Path.cwd())
    except Exception:  # noqa: BLE001 - a hook must never break the session
        logger.exception("gptme-factory: session briefing failed")
        return
    if text:
        yield Message("system", f"<factory>\n{text}\n</factory>")
