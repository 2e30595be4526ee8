"""Views: what people and agents read about the factory (CLI, gptme tool and board alike).

- `summary`: one summary per artifact; `statuscache`: those summaries cached by git content
  ids, so a warm `status` reads nothing; `linestatus`: each line's state and idleness.
- `details`: one artifact's full derived record (`show`); `cellboard`: the running cells.

Read-only: nothing here writes the ledger.
"""
