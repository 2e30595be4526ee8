"""The per-target environment: made once by the target's set-up commands, reused after.

A target's checks run in its own environment, not the factory's. The environment is a
directory, `factory/.runtime/envs/<target>/<key>` in the brain (gitignored), made by running
the target's `setup` commands in a checkout of the commit being checked, with `FACTORY_ENV`
naming the directory (e.g. `python3 -m venv "$FACTORY_ENV"`, then `"$FACTORY_ENV/bin/python"
-m pip install -q .`). `key` hashes the set-up commands, the `links` and the blob ids of the
`setup_inputs` at that commit (pyproject.toml, uv.lock, package-lock.json, ...): while they
are unchanged the environment is reused, and a change (a new dependency in the lock file)
makes a new one. A target without set-up commands (and the brain) has none: its checks run
in the factory's own environment, as before.

Checks then run with `FACTORY_ENV`, `$FACTORY_ENV/bin` first on `PATH` and, for a venv,
`VIRTUAL_ENV`. `links` are paths the set-up makes inside the checkout (`node_modules`):
they are moved into the environment and every later checkout gets a symlink to them.

Making one is serialized per target by a `flock` (the second gate waits, then reuses it);
a `<key>.ready` file beside the directory marks it complete, so a set-up that was killed
half-way is discarded and redone. While a gate uses an environment it holds a shared lock on
`<key>.use`; older environments beyond the newest few are removed only when nobody uses them.
A set-up command that fails raises `SetupFailed`, carrying an `EnvironmentFailure`: the
machine or the target's config is at fault, not the build.

The commands are run by the caller's runner (line/checks.run_check), so this module needs
nothing above the ledger.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ..envcheck import EnvironmentFailure, classify_check
from ..envcheck.failure import failure
from ..errors import TargetError
from ..ledger.records import CheckResult
from .registry import Target

ENVS_DIR = "envs"
KEEP = 3  # environments kept per target (the newest), besides any in use

Runner = Callable[[str, Path, float, Mapping[str, str] | None], CheckResult]


class SetupFailed(TargetError):
    """A target's set-up command failed: its environment could not be made."""

    def __init__(self, message: str, failure: EnvironmentFailure,
                 results: list[CheckResult]) -> None:
        super().__init__(message)
        self.failure = failure
        self.results = results


@dataclass(frozen=True)
class TargetEnv:
    """The environment a target's checks run in (path None: the factory's own)."""

    target: str
    path: Path | None
    key: str | None
    made: bool = False
    setup: list[CheckResult] = field(default_factory=list)

    def variables(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The process environment for a check: `base` (os.environ) with this env first."""
        env = dict(os.environ if base is None else base)
        return env if self.path is None else _with_env(env, self.path)


def _with_env(env: dict[str, str], path: Path) -> dict[str, str]:
    env["FACTORY_ENV"] = str(path)
    env["PATH"] = f"{path / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    if (path / "pyvenv.cfg").is_file():
        env["VIRTUAL_ENV"] = str(path)
        env.pop("PYTHONHOME", None)
    return env


def env_key(target: Target, commit: str) -> str | None:
    """The environment's key at `commit` (None when the target has no set-up)."""
    cfg = target.config
    if cfg is None or not cfg.setup:
        return None
    blobs = target.repo.blob_ids(commit, list(cfg.setup_inputs))
    spec = {"setup": list(cfg.setup), "links": list(cfg.links),
            "inputs": {p: blobs.get(p) for p in cfg.setup_inputs}}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def envs_dir(runtime_dir: Path, target: str) -> Path:
    """Where a target's environments are kept."""
    return runtime_dir / ENVS_DIR / target


@contextmanager
def _flock(path: Path, how: int) -> Iterator[int]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, how)
        yield fd
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


@contextmanager
def activated(runtime_dir: Path, target: Target, checkout: Path, commit: str, *,
              run: Runner, timeout_s: float) -> Iterator[TargetEnv]:
    """The target's environment for checks on `commit` in `checkout`, made if needed."""
    key = env_key(target, commit)
    if key is None:
        yield TargetEnv(target.name, None, None)
        return
    root = envs_dir(runtime_dir, target.name)
    root.mkdir(parents=True, exist_ok=True)
    path = root / key
    results: list[CheckResult] = []
    with _flock(root / ".lock", fcntl.LOCK_EX):
        ready = root / f"{key}.ready"
        made = not ready.is_file()
        if made:
            results = _make(target, path, checkout, run, timeout_s)
            tmp = ready.with_name(f".{ready.name}.{os.getpid()}")
            tmp.write_text(json.dumps({
                "target": target.name, "commit": commit, "setup": [r.command for r in results],
                "made_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}))
            os.replace(tmp, ready)
        else:
            os.utime(ready)  # last used: what pruning keeps
        use = os.open(root / f"{key}.use", os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(use, fcntl.LOCK_SH)  # before the lock goes: nobody prunes it in between
        if made:
            _prune(root, key)
    try:
        _link(target, path, checkout)
        yield TargetEnv(target.name, path, key, made, results)
    finally:
        fcntl.flock(use, fcntl.LOCK_UN)
        os.close(use)


def _make(target: Target, path: Path, checkout: Path, run: Runner,
          timeout_s: float) -> list[CheckResult]:
    """Run the set-up commands into `path`; SetupFailed (and nothing left) if one fails."""
    assert target.config is not None
    shutil.rmtree(path, ignore_errors=True)  # what a killed set-up left behind
    path.mkdir(parents=True)
    env = _with_env(dict(os.environ), path)
    results: list[CheckResult] = []
    name = target.name
    fix = (f"fix targets.{name}.setup in factory.yaml (`gptme-factory target show {name}`), "
           "or what the project needs on this machine, then run advance again")
    for cmd in target.config.setup:
        res = run(cmd, checkout, timeout_s, env)
        results.append(res)
        if res.exit_code == 0 and not res.timed_out:
            continue
        shutil.rmtree(path, ignore_errors=True)
        found = classify_check(cmd, res.exit_code, res.output_tail)
        how = "timed out" if res.timed_out else f"exited {res.exit_code}"
        last = res.output_tail.strip().splitlines()[-1:] or ["no output"]
        why = found or failure("setup_failed",
                               f"the set-up of target {name} failed: `{cmd}` {how}: {last[0]}",
                               fix)
        raise SetupFailed(f"target {name!r}: its environment could not be made: "
                          f"{why.summary()}", why, results)
    for link in target.config.links:
        src = checkout / link
        if not src.exists() or src.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
            why = failure("setup_failed", f"the set-up of target {name} made no {link} in the "
                          "checkout", f"fix targets.{name}.links or targets.{name}.setup")
            raise SetupFailed(f"target {name!r}: {why.summary()}", why, results)
        dest = path / "links" / link
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(src), str(dest))
    return results


def _link(target: Target, path: Path, checkout: Path) -> None:
    """Give the checkout the environment's shared paths (symlinks; tracked files win)."""
    assert target.config is not None
    for link in target.config.links:
        here = checkout / link
        if here.exists() or here.is_symlink():
            continue
        here.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(path / "links" / link, here)


def _prune(root: Path, keep: str) -> None:
    """Remove environments beyond the newest KEEP (and `keep`) that nobody uses now."""
    ready = sorted(root.glob("*.ready"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in ready[KEEP:]:
        key = old.name.removesuffix(".ready")
        if key == keep:
            continue
        fd = os.open(root / f"{key}.use", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue  # in use by a running gate
        try:
            old.unlink(missing_ok=True)
            shutil.rmtree(root / key, ignore_errors=True)
            (root / f"{key}.use").unlink(missing_ok=True)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def made_envs(runtime_dir: Path, target: str) -> list[dict[str, str]]:
    """The complete environments of a target, newest first (for `target show`)."""
    root = envs_dir(runtime_dir, target)
    out = []
    for ready in sorted(root.glob("*.ready"), key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            info = json.loads(ready.read_text())
        except (OSError, ValueError):
            info = {}
        out.append({"key": ready.name.removesuffix(".ready"),
                    "path": str(root / ready.name.removesuffix(".ready")),
                    "made_at": str(info.get("made_at", "")),
                    "commit": str(info.get("commit", ""))})
    return out
