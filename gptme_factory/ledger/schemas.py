"""JSON Schemas of handoff contracts, as pasted into briefs and printed by `schema`."""

from __future__ import annotations

from typing import Any

from ..errors import NotAFactory, NotAGitRepo, UsageError
from .config import BUILTIN_ROLES, FactoryConfig
from .contracts import BUILTIN_CONTRACTS


def contract_schema(config: FactoryConfig | None, name: str) -> dict[str, Any]:
    """JSON Schema of a built-in or (with a config) custom contract."""
    if config is not None and (name in config.contracts or name in BUILTIN_CONTRACTS):
        return config.contract_model(name).model_json_schema()
    if name in BUILTIN_CONTRACTS:
        return BUILTIN_CONTRACTS[name].model_json_schema()
    raise UsageError(f"unknown contract {name!r}")


def schema_for(role_or_contract: str, repo: str | None = None) -> dict[str, Any]:
    """Schema for a role (its contract) or a contract name; custom ones need the repo."""
    config: FactoryConfig | None = None
    if repo is not None:
        try:
            from .store import Ledger

            config = Ledger.open(repo).config
        except (NotAFactory, NotAGitRepo):
            config = None
    roles = dict(BUILTIN_ROLES)
    contracts = set(BUILTIN_CONTRACTS)
    if config is not None:
        roles.update(config.roles)
        contracts |= set(config.contracts)
    if role_or_contract in roles:
        return contract_schema(config, roles[role_or_contract].contract)
    if role_or_contract in contracts:
        return contract_schema(config, role_or_contract)
    known = ", ".join(sorted(roles)) + "; contracts: " + ", ".join(sorted(contracts))
    raise UsageError(f"unknown role or contract {role_or_contract!r}: roles are {known}")
