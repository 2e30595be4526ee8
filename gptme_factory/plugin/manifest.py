"""The gptme plugin manifest: what gptme loads through the `gptme.plugins` entry point.

gptme imports this module at start-up, so it stays light: only the `GptmePlugin` dataclass
from gptme, no GitPython, no pydantic models, no disk access. The tools live in
`gptme_factory.plugin.tools` (named in `tool_modules`; gptme 0.35.1's CLI additionally needs
`[env] TOOL_MODULES` in the brain repo's gptme.toml, which `gptme-factory init` writes),
and the `session.start` hook and the `/factory` command are imported only when gptme
registers them.

Settings come from `[plugin.gptme_factory]` in gptme.toml (project, over the user's
config.toml), read once in `init(config)`::

    [plugin.gptme_factory]
    ledger_dir = "factory"      # where the ledger lives in the brain repo
    model = "anthropic/claude-sonnet-4-5"   # default model for spawned cells
    timeout_s = 1800            # default cell budget: wall clock
    max_tokens = 2000000        #                      tokens
    max_cost_usd = 5.0          #                      money
    session_start = true        # tell the agent about active artifacts at session start
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from typing import Any

from gptme.plugins.plugin import GptmePlugin

logger = logging.getLogger(__name__)

PLUGIN_NAME = "gptme_factory"
TOOL_MODULE = "gptme_factory.plugin.tools"


@dataclass
class Settings:
    """`[plugin.gptme_factory]`, with defaults; None means "the ledger's own default"."""

    ledger_dir: str | None = None
    model: str | None = None
    timeout_s: float | None = None
    max_tokens: int | None = None
    max_cost_usd: float | None = None
    session_start: bool = True

    def budget(self) -> dict[str, Any]:
        """The default cell budget overrides that are set (empty: the ledger's budget)."""
        out = {"timeout_s": self.timeout_s, "max_tokens": self.max_tokens,
               "max_cost_usd": self.max_cost_usd}
        return {k: v for k, v in out.items() if v is not None}


# The one settings object the tools, hook and command read (replaced by `init`).
settings = Settings()

_TYPES: dict[str, tuple[type, ...]] = {
    "ledger_dir": (str,), "model": (str,), "timeout_s": (int, float),
    "max_tokens": (int,), "max_cost_usd": (int, float), "session_start": (bool,),
}


def parse_settings(raw: dict[str, Any]) -> tuple[Settings, list[str]]:
    """Settings from a `[plugin.gptme_factory]` table, and a warning per ignored key."""
    known = {f.name for f in fields(Settings)}
    values: dict[str, Any] = {}
    warnings: list[str] = []
    for key, value in raw.items():
        if key not in known:
            warnings.append(f"[plugin.{PLUGIN_NAME}] {key}: unknown key, ignored "
                            f"(known: {', '.join(sorted(known))})")
        elif isinstance(value, bool) and key != "session_start" or not isinstance(
            value, _TYPES[key]
        ):
            warnings.append(f"[plugin.{PLUGIN_NAME}] {key}: expected "
                            f"{'/'.join(t.__name__ for t in _TYPES[key])}, got {value!r}; ignored")
        else:
            values[key] = value
    return Settings(**values), warnings


def init(config: Any) -> None:
    """Read `[plugin.gptme_factory]` from the user config, then the project's gptme.toml."""
    global settings
    raw: dict[str, Any] = {}
    user = getattr(config, "user", None)
    if user is not None:
        raw.update(getattr(user, "plugin", {}).get(PLUGIN_NAME, {}) or {})
    project = getattr(config, "project", None)
    if project is not None:
        raw.update(getattr(project, "plugin", {}).get(PLUGIN_NAME, {}) or {})
    settings, warnings = parse_settings(raw)
    for warning in warnings:
        logger.warning(warning)


def register_hooks() -> None:
    """Register the `session.start` hook (imported only now)."""
    from gptme.hooks import HookType, register_hook

    from .tools._session import session_start

    register_hook(f"{PLUGIN_NAME}.session_start", HookType.SESSION_START, session_start,
                  priority=0)


def register_commands() -> None:
    """Register the `/factory` command (imported only now)."""
    from gptme.commands import register_command

    from .tools._command import complete_factory, factory_command

    register_command("factory", factory_command, completer=complete_factory)


plugin = GptmePlugin(
    name=PLUGIN_NAME,
    tool_modules=[TOOL_MODULE],
    register_hooks=register_hooks,
    register_commands=register_commands,
    init=init,
)
