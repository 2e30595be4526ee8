"""Outcomes: what the line ships and what it is worth.

- `packaging`: render a release package to files and publish it (PR, release, note).
- `measure`: the outcome report (adoption per consumer); `costs` and `metrics`: cost roll-ups
  and the line's numbers (throughput, lead time, yield, rework, adoption).
- `demand`: intake drafts from GitHub issues and gptodo tasks; `selfplay`: the self-play rule.
- `ghcli`: the only module that runs `gh`.

Built on `gptme_factory.line`; knows nothing of cells.
"""
