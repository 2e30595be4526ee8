"""gptme tools of the factory: the `factory` ToolSpec (functions for `ipython`, plus `execute`).

gptme discovers this package through `TOOL_MODULES` (`gptme-factory init` writes it into the
brain repo's gptme.toml) or the plugin's `tool_modules`. Modules starting with `_` are
helpers gptme's tool discovery skips: `_functions` (the adapters), `_render` (texts),
`_session` (the `session.start` hook) and `_command` (`/factory`).
"""

from __future__ import annotations

from .factory import tool

__all__ = ["tool"]
