"""The gptme plugin manifest: what gptme loads through the `gptme.plugins` entry point.

gptme imports this module at start-up, so it stays light: only the `GptmePlugin` dataclass
from gptme, no GitPython, no pydantic models, no disk access. The tools live in
`gptme_factory.plugin.tools` (named in `tool_modules`; gptme 0.35.1's CLI additionally needs
`[env] TOOL_MODULES` in the brain repo's gptme.toml, which `gptme-factory init` writes),
and the `session.start` hook and the `/factory` command are imported only when gptme
registers them.

Settings come from `[plugin.gptme_factory]` in gptme.toml (project, over the user's
config.toml), read once in `init(config)` into `settings.settings` (see settings.py).
"""

from __future__ import annotations

import logging
from typing import Any

from gptme.plugins.plugin import GptmePlugin

from .settings import PLUGIN_NAME, configure

logger = logging.getLogger(__name__)

TOOL_MODULE = "gptme_factory.plugin.tools"


def init(config: Any) -> None:
    """Read `[plugin.gptme_factory]` from the user config, then the project's gptme.toml."""
    raw: dict[str, Any] = {}
    user = getattr(config, "user", None)
    if user is not None:
        raw.update(getattr(user, "plugin", {}).get(PLUGIN_NAME, {}) or {})
    project = getattr(config, "project", None)
    if project is not None:
        raw.update(getattr(project, "plugin", {}).get(PLUGIN_NAME, {}) or {})
    for warning in configure(raw):
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
