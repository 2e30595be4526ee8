"""Environment failures: a check or a cell that could not run, told apart from a real failure.

When the machine is at fault (a program or module is missing, no model provider is usable)
the factory must not spend a build attempt or start a rework: it blocks the artifact with
the exact cause and the fix. This package owns that judgement, in four parts:

- `classify_check(command, exit_code, output)` (checks.py): a verification command that
  could not start (exit 126/127 with the shell's own line, `<python>: No module named X` for
  `python -m X`).
- `classify_cell_exit(exit_code, output)` (cells.py): a gptme cell that died before working
  because no model or provider is usable (gptme's own exit codes and error lines).
- `preflight_model(model, env, home, workspace=...)` (model.py): before spawning, would the
  model named (or gptme's default) find a usable provider key?
- `unresolved_commands(commands, cwd, env)` (commands.py): before running, would the plan's
  commands find their programs and `-m` modules?

Each returns `EnvironmentFailure` values (failure.py): `kind`, `cause` (one line) and `fix`
(one sentence). Nothing here imports click or rich; gptme is imported lazily, only by the
model pre-flight, for its provider registry.
"""

from __future__ import annotations

from .cells import classify_cell_exit
from .checks import classify_check
from .commands import unresolved_commands
from .failure import EnvironmentFailure, FailureKind
from .model import preflight_model

__all__ = [
    "EnvironmentFailure",
    "FailureKind",
    "classify_cell_exit",
    "classify_check",
    "preflight_model",
    "unresolved_commands",
]
