"""Views: what people and agents read about the factory (CLI, gptme tool and board alike).

- `present`: the words shared by the CLI, the tool and the web board (ages, durations, ...).
- `summary`: one summary per artifact (a board card); `statuscache`: those summaries cached
  by git content ids, so a warm `status` reads nothing, by an engine (`Kind`, `Pass`) that
  also keeps `factcache`'s metric facts and report; `status`: what `status` loads;
  `linestatus`: each line's state and idleness.
- `details`: one artifact's full derived record (`show`, the board's artifact page);
  `cellboard`: the running cells.

Read-only: nothing here writes the ledger.
"""
