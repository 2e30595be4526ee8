"""Pre-flight: before a cell is spawned, check that it could run at all.

- The model the cell will use (the spawn option, else gptme's own default) must have a usable
  provider (`envcheck.preflight_model`: a key in the environment or gptme's config, or the
  offline `mock/echo`), unless the backend does not run gptme (a `command` template of another
  harness).
- From the verify stage on, the line's planned checks (the stage's own, the target's and the
  scout memo's verification plan) must find their programs and modules
  (`envcheck.unresolved_commands`, from the target's clone): a check that cannot run would
  be an environment failure at the gate anyway. Not for a target with set-up commands: its
  checks run in its own environment, which the gate makes (and whose failures it reports).

A failure raises EnvironmentNotReady — one line naming what to set or install — before
anything is recorded: no stage starts and no attempt is spent. The cell's environment is
this process's (gptodo passes on PATH, HOME, the provider keys and GPTME_MODEL).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..envcheck import EnvironmentFailure, preflight_model, unresolved_commands
from ..errors import EnvironmentNotReady
from ..ledger.config import StageConfig
from ..ledger.store import Ledger
from ..line.gates import planned_checks
from ..line.replay import ArtifactView
from ..targets.registry import of_intake
from .backends.command_backend import DEFAULT_TEMPLATE, ENV_TEMPLATE


def _runs_gptme(backend: str, command: str | None) -> bool:
    if backend != "command":
        return True
    template = command or os.environ.get(ENV_TEMPLATE) or DEFAULT_TEMPLATE
    return template.split()[0] in ("gptme", "python", "python3")


def model_problem(ledger: Ledger, model: str | None, backend: str = "gptodo",
                  command: str | None = None) -> EnvironmentFailure | None:
    """Why a gptme cell with `model` could not start here (None when it could, or not gptme)."""
    if not _runs_gptme(backend, command):
        return None
    return preflight_model(model, os.environ, workspace=ledger.repo.root)


CHECKING_GATES = ("plan", "reproduce", "fix", "evidence")


def command_problems(ledger: Ledger, view: ArtifactView,
                     stage: StageConfig) -> list[EnvironmentFailure]:
    """The contract checks a checking stage's gate will run that could not run here.

    A plan gate runs the line's and the target's checks at the base; later gates the whole
    contract.
    """
    if stage.gate not in CHECKING_GATES:
        return []
    target = of_intake(ledger, view.intake)
    if target.config is not None and target.config.setup:
        return []  # its own environment decides, at the gate
    return unresolved_commands(planned_checks(view, stage, target.checks),
                               Path(target.repo.root), os.environ)


def check(ledger: Ledger, view: ArtifactView, stage: StageConfig, *, model: str | None,
          backend: str = "gptodo", command: str | None = None) -> None:
    """Raise EnvironmentNotReady if the cell for `stage` could not run; records nothing."""
    aid = view.intake.artifact
    problem = model_problem(ledger, model, backend, command)
    if problem is not None:
        raise EnvironmentNotReady(
            f"cannot start a cell for {aid} ({stage.name}): {problem.cause} — fix: "
            f"{problem.fix}; nothing was recorded", problem)
    problems = command_problems(ledger, view, stage)
    if problems:
        first = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise EnvironmentNotReady(
            f"the {stage.name} checks of {aid} could not run here: {first.cause}{more} — fix: "
            f"{first.fix}; nothing was recorded", first)
