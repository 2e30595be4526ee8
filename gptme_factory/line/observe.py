"""Observing contract checks at one commit of a target, with a per-machine cache of runs.

A `Bench` stands at one commit: `runs(check)` are the runs of that check the factory made
there earlier on this machine (the cache), `run(check)` runs it once more — in a clean,
throw-away checkout of the commit (targets/checkouts.py), in the target's environment
(targets/envs.py), made on the first run that needs it and removed by `close()` — and
`ensure(check, n)` runs it until it has `n` runs. So a base side observed at the planning
gate costs nothing at the verify gate, and rework does not re-run it.

The cache lives in `factory/.runtime/evidence/<target>/<commit>/<key>.json` (gitignored:
another machine observes for itself), `key` hashing the check's command and cwd and the
environment's key at that commit. A cached run counts only while it says the same under the
check's time limit now: a run that finished within the limit, or one that timed out under a
limit at least as long. Runs the machine could not make (envcheck.classify_check: a missing
program or module) raise `CannotRun` and are never cached; neither are timed-out runs,
which say nothing about the code.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from ..envcheck import EnvironmentFailure, classify_check
from ..errors import FactoryError
from ..ledger.records import CheckResult, ContractCheck
from ..ledger.runtime import write_json
from ..ledger.store import Ledger
from ..targets import envs
from ..targets.checkouts import checkout
from ..targets.registry import Target
from .checks import run_check
from .validation import identity

CACHE_DIR = "evidence"


class CannotRun(FactoryError):
    """A check could not run on this machine (not a verdict on the code)."""

    def __init__(self, failure: EnvironmentFailure, command: str,
                 results: list[CheckResult]) -> None:
        super().__init__(failure.summary())
        self.failure = failure
        self.command = command
        self.results = results


def cache_root(ledger: Ledger) -> Path:
    """Where observed runs are kept on this machine."""
    return ledger.runtime_dir / CACHE_DIR


class Bench:
    """Runs of contract checks at one commit of a target: cached ones, and fresh ones."""

    def __init__(self, ledger: Ledger, target: Target, commit: str, *, label: str,
                 setup_timeout_s: float) -> None:
        self.ledger, self.target, self.commit, self.label = ledger, target, commit, label
        self.setup_timeout_s = setup_timeout_s
        self.env_key = envs.env_key(target, commit)
        self.tree = target.repo.tree_of(commit)
        self._stack: ExitStack | None = None
        self._path: Path | None = None
        self._env: envs.TargetEnv | None = None
        self.fresh: list[CheckResult] = []  # every run made here, in order

    # -- the cache ----------------------------------------------------------------------

    def _file(self, check: ContractCheck) -> Path:
        key = hashlib.sha256(f"{identity(check)} {self.env_key or '-'}".encode()).hexdigest()
        return (cache_root(self.ledger) / self.target.name / self.commit
                / f"{key[:24]}.json")

    def _load(self, check: ContractCheck) -> list[dict[str, Any]]:
        try:
            data = json.loads(self._file(check).read_text())
        except (OSError, ValueError):
            return []
        runs = data.get("runs") if isinstance(data, dict) else None
        return [r for r in runs if isinstance(r, dict)] if isinstance(runs, list) else []

    def _store(self, check: ContractCheck, result: CheckResult, timeout_s: float) -> None:
        path = self._file(check)
        runs = self._load(check)
        runs.append({"exit_code": result.exit_code, "duration_s": result.duration_s,
                     "timeout_s": timeout_s, "output_tail": result.output_tail})
        write_json(path, {"command": check.command, "cwd": check.cwd, "env": self.env_key,
                          "tree": self.tree, "runs": runs})

    def runs(self, check: ContractCheck, timeout_s: float) -> list[CheckResult]:
        """The cached runs that still hold under `timeout_s`."""
        out = []
        for r in self._load(check):
            code, took = r.get("exit_code"), r.get("duration_s")
            if not isinstance(code, int) or not isinstance(took, (int, float)):
                continue
            if took > timeout_s:
                continue
            out.append(CheckResult(command=check.command, exit_code=code, duration_s=took,
                                   output_tail=str(r.get("output_tail") or "")))
        return out

    # -- running ------------------------------------------------------------------------

    def _checkout(self) -> tuple[Path, envs.TargetEnv]:
        if self._path is None or self._env is None:
            stack = ExitStack()
            try:
                path = stack.enter_context(checkout(self.target.repo, self.commit, self.label))
                self._env = stack.enter_context(envs.activated(
                    self.ledger.runtime_dir, self.target, path, self.commit, run=run_check,
                    timeout_s=self.setup_timeout_s))
            except BaseException:
                stack.close()
                raise
            self._stack, self._path = stack, path
        return self._path, self._env

    @property
    def env(self) -> envs.TargetEnv | None:
        """The environment the fresh runs used (None: nothing ran here)."""
        return self._env

    def run(self, check: ContractCheck, timeout_s: float) -> CheckResult:
        """Run `check` once more, fresh; CannotRun when the machine, not the code, failed."""
        path, env = self._checkout()
        cwd = path if check.cwd == "." else path / check.cwd
        if not cwd.is_dir():
            # The directory is the code's: a commit without it fails the check.
            result = CheckResult(command=check.command, exit_code=1, duration_s=0.0,
                                 output_tail=f"no directory {check.cwd} at this commit")
        else:
            result = run_check(check.command, cwd, timeout_s, env.variables())
        self.fresh.append(result)
        if not result.timed_out and result.exit_code != 0:
            found = classify_check(check.command, result.exit_code, result.output_tail)
            if found is not None:
                raise CannotRun(found, check.command, list(self.fresh))
        if not result.timed_out:
            self._store(check, result, timeout_s)
        return result

    def ensure(self, check: ContractCheck, n: int, timeout_s: float) -> list[CheckResult]:
        """At least `n` runs of `check`, cached ones first.

        A run that times out ends it: a check slower than its limit is not run again.
        """
        runs = self.runs(check, timeout_s)
        while len(runs) < n:
            result = self.run(check, timeout_s)
            runs.append(result)
            if result.timed_out:
                break
        return runs

    def close(self) -> None:
        """Remove the checkout (if one was made)."""
        if self._stack is not None:
            self._stack.close()
        self._stack = self._path = None

    def __enter__(self) -> Bench:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
