"""Cells: bounded subagents that each do one stage of one artifact, and the foreman.

- `spawn`: start a stage and launch its cell; `brief`: the file a cell reads first;
  `worktrees`: where it works; `backends/`: gptodo (tmux), gptme's subagent API, a command.
- `state`: runtime records of launched cells; `taskfile`: their gptodo task files.
- `watch`, `convlog`, `proctree`: observing a cell (elapsed, budget, latest output, cost).
- `reaper`: enforcing budgets and recording how a cell ended; `watchdog`: the per-cell
  guard when nobody runs the foreman; `foreman`: the `run` loop over whole lines.

Built on `gptme_factory.line` and `gptme_factory.outcomes` (publishing).
"""
