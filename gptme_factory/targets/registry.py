"""The target registry: factory.yaml's `targets`, resolved against their clones.

A `Target` is one project repository as the factory uses it: its name, its config (None for
the built-in `brain`), and the `GitRepo` of its local clone. `resolve` finds the clone (a
path relative to the brain's root, or absolute) and refuses one that is missing, is not a
git working tree, or is the brain itself. `choose` decides an intake's target: the one it
names, else its line's, else factory.yaml's `default_target`, else the brain; `by_slug`
finds the target of a GitHub issue.

`add` and `remove` rewrite factory.yaml (validated before anything is written) and commit
it as one ledger commit. YAML comments in factory.yaml do not survive the rewrite.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, NotAGitRepo, TargetError, UsageError
from ..ledger import yamlio
from ..ledger.config import BRAIN_TARGET, FactoryConfig, TargetConfig, parse_config
from ..ledger.gitstore import GitRepo
from ..ledger.records import Intake, TargetRef, check_name
from ..ledger.store import CONFIG_FILE, Ledger


@dataclass(frozen=True)
class Target:
    """A project repository the factory builds for, resolved against its local clone."""

    name: str
    repo: GitRepo
    config: TargetConfig | None  # None: the brain repo itself

    @property
    def is_brain(self) -> bool:
        """True for the built-in target: the brain repo, which also holds the ledger."""
        return self.config is None

    @property
    def remote(self) -> str | None:
        """The clone's remote to fetch the base from and push to (None: local only)."""
        return self.config.remote if self.config else None

    @property
    def base(self) -> str | None:
        """The base branch (None for the brain: builders start from its HEAD)."""
        return self.config.base if self.config else None

    @property
    def slug(self) -> str | None:
        """GitHub OWNER/NAME, when the project lives on GitHub."""
        return self.config.slug if self.config else None

    @property
    def checks(self) -> list[str]:
        """The project's own test commands (required at the verify gate)."""
        return list(self.config.checks) if self.config else []

    def url(self) -> str | None:
        """The remote's URL: as registered, else as the clone has it."""
        if self.config is None:
            return None
        if self.config.url:
            return self.config.url
        return self.repo.remote_url(self.config.remote) if self.config.remote else None

    def ref(self) -> TargetRef | None:
        """How evidence names this target (None for the brain: the ledger's own repo)."""
        if self.config is None:
            return None
        return TargetRef(name=self.name, url=self.url(), slug=self.slug)

    def describe(self) -> dict[str, Any]:
        """Plain facts for a brief, `target show` and --json output."""
        return {"name": self.name, "path": str(self.repo.root), "brain": self.is_brain,
                "remote": self.remote, "url": self.url(), "slug": self.slug, "base": self.base,
                "checks": self.checks,
                "setup": list(self.config.setup) if self.config else [],
                "setup_inputs": list(self.config.setup_inputs) if self.config else [],
                "links": list(self.config.links) if self.config else []}


def clone_path(ledger: Ledger, cfg: TargetConfig) -> Path:
    """Where a target's clone is: `path` as registered, relative to the brain's root."""
    path = Path(os.path.expanduser(cfg.path))
    return path if path.is_absolute() else ledger.repo.root / path


def brain(ledger: Ledger) -> Target:
    """The built-in target: the brain repo itself."""
    return Target(BRAIN_TARGET, ledger.repo, None)


def known(cfg: FactoryConfig) -> list[str]:
    """Every target name, the built-in `brain` first."""
    return [BRAIN_TARGET, *sorted(cfg.targets)]


def resolve(ledger: Ledger, name: str | None) -> Target:
    """The target called `name` (None or `brain`: the brain), with its clone found."""
    if name is None or name == BRAIN_TARGET:
        return brain(ledger)
    cfg = ledger.config.targets.get(name)
    if cfg is None:
        raise TargetError(f"unknown target {name!r} (known: {', '.join(known(ledger.config))}): "
                          f"register it with `gptme-factory target add {name} PATH`")
    path = clone_path(ledger, cfg)
    repo = _open_clone(path, f"target {name!r}")
    if repo.common_dir.resolve() == ledger.repo.common_dir.resolve():
        raise TargetError(f"target {name!r} points at the brain repo ({path}); the brain is the "
                          f"built-in target {BRAIN_TARGET!r}: fix targets.{name}.path")
    return Target(name, repo, cfg)


def _open_clone(path: Path, what: str) -> GitRepo:
    if not path.is_dir():
        raise TargetError(f"{what}: its clone {path} does not exist: clone the project there "
                          "(`git clone URL PATH`), or register the right path with "
                          "`gptme-factory target add NAME PATH`")
    try:
        repo = GitRepo.discover(path)
    except NotAGitRepo:
        raise TargetError(f"{what}: {path} is not a git working tree: point the target at "
                          "the project's clone") from None
    return repo


def of_intake(ledger: Ledger, intake: Intake) -> Target:
    """The target an artifact works on (an intake without one: the brain)."""
    return resolve(ledger, intake.target)


def choose(cfg: FactoryConfig, *, explicit: str | None, line: str) -> str | None:
    """An intake's target name: given, else its line's, else default_target; None = brain."""
    name = explicit or cfg.line(line).target or cfg.default_target
    if name is None or name == BRAIN_TARGET:
        return None
    if name not in cfg.targets:
        raise UsageError(f"unknown target {name!r} (known: {', '.join(known(cfg))}): register "
                         f"it with `gptme-factory target add {name} PATH`")
    return name


def by_slug(cfg: FactoryConfig, slug: str) -> str | None:
    """The target whose GitHub slug is `slug` (case-insensitive), if exactly one is."""
    found = [n for n, t in sorted(cfg.targets.items())
             if t.slug and t.slug.lower() == slug.lower()]
    return found[0] if len(found) == 1 else None


# -- editing factory.yaml ---------------------------------------------------------------


def _config_data(ledger: Ledger) -> dict[str, Any]:
    path = ledger.dir / CONFIG_FILE
    return yamlio.loads(path.read_bytes(), ledger.relpath(path))


def _write_config(ledger: Ledger, data: dict[str, Any], subject: str) -> FactoryConfig:
    """Validate `data` as factory.yaml and commit it (one commit); returns the new config."""
    path = ledger.dir / CONFIG_FILE
    rel = ledger.relpath(path)
    cfg = parse_config(data, rel)  # ConfigError naming the key: nothing written
    with ledger.transaction(subject) as tx:
        tx.marker = "config"
        tx.files[rel] = yamlio.dumps(data)
    ledger.__dict__.pop("config", None)  # the cached property: read the new file next time
    return cfg


def stored_path(ledger: Ledger, clone: Path) -> str:
    """How factory.yaml records a clone: relative to the brain's root when that is shorter."""
    clone = clone.resolve()
    rel = os.path.relpath(clone, ledger.repo.root.resolve())
    return rel if len(rel) < len(str(clone)) else str(clone)


def add(ledger: Ledger, name: str, cfg: TargetConfig, *, replace: bool = False) -> Target:
    """Register (or with `replace`, re-register) target `name`; one commit of factory.yaml."""
    try:
        check_name(name)
    except ValueError as exc:
        raise UsageError(f"target name {name!r}: {exc}") from None
    if name == BRAIN_TARGET:
        raise UsageError(f"{BRAIN_TARGET!r} is the built-in target (the brain repo itself); "
                         "give the project another name")
    data = _config_data(ledger)
    targets = dict(data.get("targets") or {})
    if name in targets and not replace:
        raise UsageError(f"target {name!r} is registered already: `gptme-factory target show "
                         f"{name}`; pass --replace to register it anew")
    targets[name] = cfg.model_dump(mode="json", exclude_none=True, exclude_defaults=True)
    data["targets"] = targets
    probe = Target(name, _open_clone(clone_path(ledger, cfg), f"target {name!r}"), cfg)
    if probe.repo.common_dir.resolve() == ledger.repo.common_dir.resolve():
        raise UsageError(f"{probe.repo.root} is the brain repo, the built-in target "
                         f"{BRAIN_TARGET!r}: a target is another project's clone")
    _write_config(ledger, data, f"add target {name}")
    return resolve(ledger, name)


def remove(ledger: Ledger, name: str, *, open_artifacts: list[str]) -> None:
    """Unregister target `name` (refused while `open_artifacts` still work on it)."""
    data = _config_data(ledger)
    targets = dict(data.get("targets") or {})
    if name not in targets:
        raise UsageError(f"no target {name!r} to remove (known: "
                         f"{', '.join(known(ledger.config))})")
    if open_artifacts:
        shown = ", ".join(open_artifacts[:5]) + (" ..." if len(open_artifacts) > 5 else "")
        raise UsageError(f"target {name!r} is the target of open artifacts ({shown}): close, "
                         "reject or abandon them first")
    if data.get("default_target") == name:
        raise ConfigError(f"default_target is {name!r}: change factory.yaml's default_target "
                          "first")
    for lname, line in (data.get("lines") or {}).items():
        if isinstance(line, dict) and line.get("target") == name:
            raise ConfigError(f"line {lname!r} names target {name!r}: change "
                              f"lines.{lname}.target first")
    del targets[name]
    data["targets"] = targets
    _write_config(ledger, data, f"remove target {name}")
