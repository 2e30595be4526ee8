"""Self-play: work whose only consumers are the factory or the agent itself.

The rule (documented in docs/metrics.md): a consumer name *means the factory itself* when,
compared case-insensitively with surrounding space and a leading `@` removed, it is

- one of the built-in names: `self`, `factory`, `the factory`, `gptme-factory`, `agent`,
  `the agent`;
- the agent's own name, `[agent] name` in the brain repo's `gptme.toml`;
- one of the aliases listed under `self_names:` in `factory/factory.yaml`.

An artifact is **self-play** when every one of its named consumers means the factory itself.
One outside consumer is enough for it not to be. Self-play is not forbidden: intake warns, and
`metrics` reports its share, so a factory that only feeds itself shows up in the numbers.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..ledger.store import Ledger

BUILTIN_SELF_NAMES = ("self", "factory", "the factory", "gptme-factory", "agent", "the agent")


def normalize(name: str) -> str:
    """Compare-form of a consumer name: case-folded, single-spaced, no leading '@'."""
    return " ".join(name.strip().lstrip("@").split()).casefold()


def agent_name(repo_root: Path) -> str | None:
    """`[agent] name` from the brain repo's gptme.toml, if there is one."""
    try:
        text = (repo_root / "gptme.toml").read_text("utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    data = _load_toml(text)
    agent = data.get("agent")
    name = agent.get("name") if isinstance(agent, dict) else None
    return name if isinstance(name, str) and name.strip() else None


def _load_toml(text: str) -> dict[str, Any]:
    try:
        import tomllib  # Python 3.11+
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10: tomlkit comes with gptme
        import tomlkit

        try:
            return dict(tomlkit.parse(text).unwrap())
        except Exception:  # noqa: BLE001 - any parse error means "no agent name"
            return {}
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return {}


def self_names(repo_root: Path, aliases: Iterable[str] = ()) -> frozenset[str]:
    """Every normalized name that means the factory itself, for this brain repo."""
    names = set(BUILTIN_SELF_NAMES) | set(aliases)
    agent = agent_name(repo_root)
    if agent:
        names.add(agent)
    return frozenset(normalize(n) for n in names if n.strip())


def is_self_play(consumers: Iterable[str], names: frozenset[str]) -> bool:
    """True when every consumer means the factory itself (and there is at least one)."""
    normalized = [normalize(c) for c in consumers]
    return bool(normalized) and all(c in names for c in normalized)


def ledger_self_names(ledger: Ledger) -> frozenset[str]:
    """`self_names` for a ledger: gptme.toml's agent name plus factory.yaml's aliases."""
    return self_names(ledger.repo.root, ledger.config.self_names or ())
