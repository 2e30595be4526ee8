"""Targets: the project repositories the factory builds for, apart from the brain that holds the ledger.

An artifact's demand lives in a project — the agent framework, a desktop app, a user's
library — each its own clone with its own remote, default branch, environment and pull
requests. factory.yaml registers them (`targets:`, models in ledger/config.py); the brain
repo itself is the built-in target `brain`, so an intake that names none works as before.

- `registry`: a `Target` (the config resolved against its clone), which target an intake
  gets, and adding/removing targets in factory.yaml (one ledger commit each).
- `detect`: what `target add` can tell from a clone: remote, URL, GitHub slug, default
  branch, test and set-up commands — each guess said in words.
- `bases`: the base a stage starts from, fetched from the remote into the factory's own ref
  (`refs/factory/bases/<branch>`), never moving the user's branches; and whether a commit
  reached the target's default branch or a release tag (adoption).
- `checkouts`: detached throw-away checkouts of a target at an exact commit, inside its git
  directory (`factory-worktrees/`), never in a working tree.
- `envs`: the per-target environment, made by the target's set-up commands under
  `factory/.runtime/envs/<target>/<key>` and reused while the set-up inputs are unchanged.

Every git operation goes through ledger/gitstore.py on the target's clone. Nothing here
touches the brain's working tree, or the user's branches and uncommitted work in a clone.
"""
