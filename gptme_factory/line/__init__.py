"""The line: how an artifact moves from intake to a measured outcome.

- `replay`: the stage state machine, derived by replaying an artifact's events.
- `transitions`: checking an event against that state and appending it.
- `engine`: stages, gates and people (the API that moves artifacts); `handoffs`: `submit`.
- `gates` and `checks`: evidence-bound verdicts and the commands the factory runs itself.
- `lifecycle`: parking, unparking and archiving a line; `verify`: the whole ledger's integrity.

Built on `gptme_factory.ledger`; knows nothing of cells, processes or presentation.
"""
