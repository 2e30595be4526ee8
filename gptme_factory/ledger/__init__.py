"""The ledger: what the factory stores in the brain repo, and how.

- `records`: the persisted vocabulary (intake, artifact and line events); `config` and
  `contracts`: factory.yaml and the typed handoff contracts; `schemas`: their JSON Schemas.
- `yamlio`: the only module that reads and writes YAML; `gitstore`: the only one that runs git.
- `store`: the `Ledger` of one brain repo (paths, writer lock, reading and appending streams).
- `runtime`: gitignored runtime state (progress notes, repair counters).

Nothing here knows how an artifact moves through a line: that is `gptme_factory.line`.
"""
