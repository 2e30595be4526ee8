"""The factory's configuration: lines, stages, roles, contracts, gates and budgets.

`factory/factory.yaml` holds a `FactoryConfig`. `default_config()` is what `init` writes: the
default line intake -> scout -> build -> verify -> package -> measure. Custom roles, lines and
contracts (extending a built-in one) are declared in the same file; `load_config` checks every
cross-reference and names the offending key.

`targets` is the registry of project repositories the factory builds for (`TargetConfig`: a
local clone, its remote and GitHub slug, the base branch, how to set up its environment and
its test commands; gptme_factory/targets/ works with them). The brain repo itself is the
built-in target `brain`, used when neither the intake, its line nor `default_target` names one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field, ValidationError

from ..errors import ConfigError
from .contracts import BUILTIN_CONTRACTS, FIELD_TYPE_NAMES, Contract, build_contract
from .records import Budget, EvidenceMode, Name, Record, ShortText, format_validation_error
from .syncconfig import SyncConfig

GateKind = Literal["contract", "plan", "reproduce", "patch", "fix", "evidence", "package",
                   "outcome"]
# Gates whose handoff names a commit on the artifact's branch, in the target.
COMMIT_GATES = ("reproduce", "patch", "fix")
# Gates that accept a build: the change itself (a patch, or a fix on top of a reproduction).
BUILD_GATES = ("patch", "fix")
GptodoType = Literal["general", "explore", "plan", "execute"]

# States an artifact can be in. Stages produce one of the "progress" states when they pass.
PROGRESS_STATES = ("idea", "designed", "patched", "verified", "published", "measured")
FINAL_STATES = ("closed", "rejected", "abandoned")


class RoleConfig(Record):
    """A cell role: which contract it hands over and how it may touch the repo."""

    contract: Name
    description: ShortText
    read_only: bool = Field(description="Read-only roles never get a writable worktree.")
    gptodo_type: GptodoType = "general"


BUILTIN_ROLES: dict[str, RoleConfig] = {
    "scout": RoleConfig(
        contract="scout_memo",
        description="Reads the code and plans the change and its verification.",
        read_only=True,
        gptodo_type="explore",
    ),
    "builder": RoleConfig(
        contract="builder_patch",
        description="Makes the change on its own branch and commits it.",
        read_only=False,
        gptodo_type="execute",
    ),
    "reproducer": RoleConfig(
        contract="reproduction",
        description="Commits a test that reproduces the reported bug, and no fix.",
        read_only=False,
        gptodo_type="execute",
    ),
    "verifier": RoleConfig(
        contract="verifier_report",
        description="Runs the checks on the exact commit and reports evidence.",
        read_only=True,
        gptodo_type="general",
    ),
    "packager": RoleConfig(
        contract="release_package",
        description="Writes the changelog, release notes, PR text and announcement.",
        read_only=True,
        gptodo_type="plan",
    ),
    "analyst": RoleConfig(
        contract="outcome_report",
        description="Measures adoption per consumer and names the successor.",
        read_only=True,
        gptodo_type="explore",
    ),
}


class StageConfig(Record):
    """One stage of a line."""

    name: Name
    role: Name
    contract: Name | None = Field(default=None, description="Defaults to the role's contract.")
    gate: GateKind = "contract"
    produces: Name = Field(description="Artifact state after the gate passes.")
    attempts: int = Field(default=3, ge=1, le=20, description="Attempt budget for the stage.")
    repairs: int = Field(default=2, ge=0, le=20, description="Invalid handoffs tolerated.")
    approval: bool = Field(default=False, description="A person approves before moving on.")
    checks: list[ShortText] = Field(default_factory=list, description="Gate commands (verify).")
    check_timeout_s: float = Field(default=600, gt=0)
    budget: Budget | None = None


class LineConfig(Record):
    """A production line: ordered stages."""

    description: str = ""
    stages: list[StageConfig] = Field(min_length=1)
    idle_after_days: int = Field(default=30, ge=1)
    target: Name | None = Field(default=None, description="Target of its intakes by default.")
    evidence: EvidenceMode | None = Field(
        default=None, description="fail-to-pass: verified needs a check that fails at the "
        "base and passes at the built commit; pass-to-pass (docs, refactors): every check "
        "must pass, none need fail first. Default: fail-to-pass on a line with a build stage.")

    def evidence_mode(self) -> EvidenceMode:
        """What evidence `verified` needs on this line (see `evidence`)."""
        if self.evidence is not None:
            return self.evidence
        return "fail-to-pass" if any(st.gate in BUILD_GATES for st in self.stages) \
            else "pass-to-pass"


BRAIN_TARGET = "brain"
"""The built-in target: the brain repo itself (what an intake naming no target works on)."""

_REMOTE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_BRANCH_RE = re.compile(r"^(?!-)(?!.*(?:\.\.|//|@\{|\.lock$|/$|\.$))[A-Za-z0-9._/+-]{1,200}$")
_SLUG_RE = re.compile(r"^[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}$")


def _check_remote(value: str) -> str:
    if not _REMOTE_RE.match(value):
        raise ValueError("a git remote name: letters, digits, '.', '_' and '-' (like origin)")
    return value


def _check_branch(value: str) -> str:
    if not _BRANCH_RE.match(value):
        raise ValueError("a branch name such as main or release/2.x (no spaces, '..' or "
                         "leading '-')")
    return value


def _check_slug(value: str) -> str:
    if not _SLUG_RE.match(value):
        raise ValueError("a GitHub repository as OWNER/NAME (for example gptme/gptme)")
    return value


def _check_relpath(value: str) -> str:
    parts = value.split("/")
    if value.startswith("/") or "\\" in value or any(p in ("", ".", "..") for p in parts):
        raise ValueError("a plain path relative to the project's root (like uv.lock)")
    return value


RemoteName = Annotated[str, AfterValidator(_check_remote)]
BranchName = Annotated[str, AfterValidator(_check_branch)]
Slug = Annotated[str, AfterValidator(_check_slug)]
RelPath = Annotated[str, AfterValidator(_check_relpath)]


class TargetConfig(Record):
    """A project repository the factory builds for: its clone, remote, base and checks."""

    path: ShortText = Field(
        description="The local clone: an absolute path, or relative to the brain repo's root.")
    remote: RemoteName | None = Field(
        default=None, description="The clone's remote: the base is fetched from it, and "
        "branches are pushed to it (none: a project without a remote).")
    url: ShortText | None = Field(default=None, description="The remote's URL (evidence names it).")
    slug: Slug | None = Field(default=None, description="GitHub OWNER/NAME, for pull requests.")
    base: BranchName = Field(description="The branch builders start from and PRs go to.")
    setup: list[ShortText] = Field(
        default_factory=list, description="Commands that make the project's environment in "
        "$FACTORY_ENV (run once, in a checkout, while setup_inputs are unchanged).")
    setup_inputs: list[RelPath] = Field(
        default_factory=list, description="Files whose content decides the environment "
        "(pyproject.toml, uv.lock, package-lock.json, ...).")
    links: list[RelPath] = Field(
        default_factory=list, description="Paths the setup makes inside the checkout "
        "(node_modules) that every later checkout shares from the environment.")
    checks: list[ShortText] = Field(
        default_factory=list, description="The project's own test commands (required checks).")


class FieldSpec(Record):
    """An extra field of a custom contract."""

    type: Literal["string", "integer", "number", "boolean", "list[string]"]
    description: ShortText
    required: bool = True


class ContractConfig(Record):
    """A custom contract extending a built-in one."""

    extends: Name
    fields: dict[Name, FieldSpec] = Field(default_factory=dict)


class FactoryConfig(Record):
    """Contents of factory/factory.yaml."""

    kind: Literal["factory_config"] = "factory_config"
    schema_version: Literal[1] = 1
    default_line: Name = "default"
    lines: dict[Name, LineConfig]
    roles: dict[Name, RoleConfig] = Field(default_factory=dict)
    contracts: dict[Name, ContractConfig] = Field(default_factory=dict)
    budget: Budget = Budget(timeout_s=1800, max_tokens=2_000_000, max_cost_usd=5.0)
    max_concurrent_cells: int = Field(default=4, ge=1, le=64)
    stall_after_s: float = Field(default=300, gt=0)
    self_names: list[ShortText] | None = Field(
        default=None, description="Consumer names that mean the factory itself (self-play)."
    )
    targets: dict[Name, TargetConfig] = Field(
        default_factory=dict, description="Project repositories the factory builds for.")
    default_target: Name | None = Field(
        default=None, description="Target of an intake that names none (default: brain).")
    sync: SyncConfig | None = Field(
        default=None, description="Share this ledger with other clones through a git remote.")

    def role(self, name: str) -> RoleConfig:
        """Look up a custom or built-in role."""
        return self.roles.get(name) or BUILTIN_ROLES[name]

    def line(self, name: str) -> LineConfig:
        """Look up a line by name."""
        try:
            return self.lines[name]
        except KeyError:
            known = ", ".join(sorted(self.lines))
            raise ConfigError(f"unknown line {name!r}: factory.yaml declares {known}") from None

    def stage(self, line: str, stage: str) -> StageConfig:
        """Look up a stage of a line."""
        for st in self.line(line).stages:
            if st.name == stage:
                return st
        raise ConfigError(f"line {line!r} has no stage {stage!r}")

    def contract_name(self, st: StageConfig) -> str:
        """The contract a stage's handoff must satisfy."""
        return st.contract or self.role(st.role).contract

    def contract_model(self, name: str) -> type[Contract]:
        """The pydantic model of a built-in or custom contract."""
        if name in BUILTIN_CONTRACTS:
            return BUILTIN_CONTRACTS[name]
        spec = self.contracts[name]
        fields: dict[str, tuple[str, str, bool]] = {
            k: (v.type, v.description, v.required) for k, v in spec.fields.items()
        }
        return build_contract(name, spec.extends, fields)


def default_line() -> LineConfig:
    """The default line from PRODUCT.md: the scout's plan fixes the validation contract."""
    stages = [
        StageConfig(name="scout", role="scout", gate="plan", produces="designed"),
        StageConfig(name="build", role="builder", gate="patch", produces="patched"),
        StageConfig(name="verify", role="verifier", gate="evidence", produces="verified"),
        StageConfig(name="package", role="packager", gate="package", produces="published"),
        StageConfig(name="measure", role="analyst", gate="outcome", produces="measured"),
    ]
    return LineConfig(description="idea to measured outcome", stages=stages)


def bugfix_line() -> LineConfig:
    """The bugfix line: an issue's bug reproduced by a failing test, then fixed on top of it."""
    stages = [
        StageConfig(name="scout", role="scout", gate="plan", produces="designed"),
        StageConfig(name="reproduce", role="reproducer", gate="reproduce", produces="reproduced"),
        StageConfig(name="build", role="builder", gate="fix", produces="patched"),
        StageConfig(name="verify", role="verifier", gate="evidence", produces="verified"),
        StageConfig(name="package", role="packager", gate="package", produces="published"),
        StageConfig(name="measure", role="analyst", gate="outcome", produces="measured"),
    ]
    return LineConfig(description="a reported bug: reproduced, fixed, verified, shipped, "
                      "confirmed", stages=stages, evidence="fail-to-pass")


BUILTIN_LINES = {"default": default_line, "bugfix": bugfix_line}
"""Line definitions `init --line NAME` and `line add NAME` install."""


def default_config() -> FactoryConfig:
    """What `init` writes: the default line."""
    return FactoryConfig(lines={"default": default_line()})


def add_builtin_lines(data: dict[str, Any], names: Sequence[str]) -> list[str]:
    """Add the built-in lines `names` to a factory.yaml mapping (in place); the ones added.

    A line the file already defines is kept as it is; an unknown name is a ConfigError that
    lists the built-in ones.
    """
    unknown = [n for n in names if n not in BUILTIN_LINES]
    if unknown:
        raise ConfigError(f"unknown built-in line {unknown[0]!r}: the built-in lines are "
                          f"{', '.join(BUILTIN_LINES)}")
    lines = data.setdefault("lines", {})
    if not isinstance(lines, dict):
        raise ConfigError("factory.yaml: `lines` must be a mapping of line names to lines")
    added = []
    for name in dict.fromkeys(names):
        if name not in lines:
            lines[name] = BUILTIN_LINES[name]().model_dump(mode="json", exclude_none=True)
            added.append(name)
    return added


def check_config(cfg: FactoryConfig) -> list[str]:
    """Cross-reference problems as `key: message` lines (empty when consistent)."""
    problems: list[str] = []
    if cfg.default_line not in cfg.lines:
        problems.append(f"default_line: {cfg.default_line!r} is not one of lines")
    for name, c in cfg.contracts.items():
        if name in BUILTIN_CONTRACTS:
            problems.append(f"contracts.{name}: shadows a built-in contract; pick another name")
        if c.extends not in BUILTIN_CONTRACTS:
            known = ", ".join(BUILTIN_CONTRACTS)
            problems.append(f"contracts.{name}.extends: unknown contract {c.extends!r} ({known})")
        for fname in c.fields:
            base = BUILTIN_CONTRACTS.get(c.extends)
            if base is not None and fname in base.model_fields:
                problems.append(f"contracts.{name}.fields.{fname}: already defined by {c.extends}")
            elif hasattr(BaseModel, fname) or fname.startswith("model_"):
                problems.append(f"contracts.{name}.fields.{fname}: reserved name; pick another")
    problems += _target_problems(cfg)
    contracts = set(BUILTIN_CONTRACTS) | set(cfg.contracts)
    for rname, r in cfg.roles.items():
        if r.contract not in contracts:
            problems.append(f"roles.{rname}.contract: unknown contract {r.contract!r}")
    roles = set(BUILTIN_ROLES) | set(cfg.roles)
    for lname, line in cfg.lines.items():
        seen: set[str] = set()
        gates: list[str] = []
        for i, st in enumerate(line.stages):
            key = f"lines.{lname}.stages.{i}"
            if st.name in seen:
                problems.append(f"{key}.name: duplicate stage {st.name!r}")
            seen.add(st.name)
            if st.role not in roles:
                problems.append(f"{key}.role: unknown role {st.role!r} ({', '.join(sorted(roles))})")
            if st.contract is not None and st.contract not in contracts:
                problems.append(f"{key}.contract: unknown contract {st.contract!r}")
            if st.produces in ("idea", *FINAL_STATES):
                problems.append(f"{key}.produces: {st.produces!r} is reserved")
            problems += _gate_problems(cfg, key, st, gates)
            gates.append(st.gate)
    return problems


def _target_problems(cfg: FactoryConfig) -> list[str]:
    """Targets named but not declared, and the reserved name."""
    problems: list[str] = []
    known = [BRAIN_TARGET, *sorted(cfg.targets)]
    if BRAIN_TARGET in cfg.targets:
        problems.append(f"targets.{BRAIN_TARGET}: {BRAIN_TARGET!r} is the built-in target (the "
                        "brain repo itself); give the project another name")
    for name, t in cfg.targets.items():
        if t.slug and not t.remote:
            problems.append(f"targets.{name}.slug: a GitHub slug needs a remote to push to "
                            f"(set targets.{name}.remote)")
    named: list[tuple[str, str | None]] = [("default_target", cfg.default_target)]
    named += [(f"lines.{n}.target", line.target) for n, line in cfg.lines.items()]
    for key, named_target in named:
        if named_target is not None and named_target not in known:
            problems.append(f"{key}: unknown target {named_target!r} ({', '.join(known)}); "
                            "register it with `gptme-factory target add`")
    return problems


# Gates that judge the handoff itself need a contract of the right family.
_GATE_CONTRACTS = {"plan": "scout_memo", "reproduce": "reproduction", "patch": "builder_patch",
                   "fix": "builder_patch", "evidence": "verifier_report",
                   "outcome": "outcome_report"}


def base_contract(cfg: FactoryConfig, name: str) -> str | None:
    """The built-in contract `name` is or extends (None for an unknown name)."""
    if name in BUILTIN_CONTRACTS:
        return name
    custom = cfg.contracts.get(name)
    return custom.extends if custom else None


def _gate_problems(cfg: FactoryConfig, key: str, st: StageConfig, before: list[str]) -> list[str]:
    """A stage whose gate could never pass, named at load rather than at the first advance."""
    role = cfg.roles.get(st.role) or BUILTIN_ROLES.get(st.role)
    contract = st.contract or (role.contract if role else None)
    wanted = _GATE_CONTRACTS.get(st.gate)
    base = base_contract(cfg, contract) if contract else None
    if wanted and base is not None and base != wanted:
        return [f"{key}.gate: a {st.gate} gate needs a {wanted} handoff, but the stage's "
                f"contract is {contract}"]
    built = [i for i, g in enumerate(before) if g in BUILD_GATES]
    if st.gate == "package" and built and "evidence" not in before[built[-1]:]:
        return [f"{key}.gate: a package gate after a build stage needs an evidence "
                "(verify) stage between them"]
    if st.gate == "fix" and "reproduce" not in before:
        return [f"{key}.gate: a fix gate builds on a reproduction: put a reproduce stage "
                "before it (or use a patch gate)"]
    return []


def parse_config(data: dict[str, object], source: str) -> FactoryConfig:
    """Validate factory.yaml contents; raise ConfigError naming each bad key."""
    try:
        cfg = FactoryConfig.model_validate(data)
    except ValidationError as exc:
        lines = "\n".join(f"  {source}: {p}" for p in format_validation_error(exc))
        raise ConfigError(f"invalid factory config:\n{lines}") from None
    problems = check_config(cfg)
    if problems:
        lines = "\n".join(f"  {source}: {p}" for p in problems)
        raise ConfigError(f"invalid factory config:\n{lines}")
    return cfg


__all__ = ["BRAIN_TARGET", "FIELD_TYPE_NAMES", "FactoryConfig", "TargetConfig", "default_config",
           "parse_config"]
