"""The plugin's settings: `[plugin.gptme_factory]` in gptme.toml, read once by `manifest.init`.

    [plugin.gptme_factory]
    ledger_dir = "factory"      # where the ledger lives in the brain repo
    model = "anthropic/claude-sonnet-4-5"   # default model for spawned cells
    timeout_s = 1800            # default cell budget: wall clock
    max_tokens = 2000000        #                      tokens
    max_cost_usd = 5.0          #                      money
    session_start = true        # tell the agent about active artifacts at session start

`settings` is the one object the tools, the hook and the command read; `configure` updates it
in place (so every module holding it sees the new values). Plain dataclasses: no gptme here.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

PLUGIN_NAME = "gptme_factory"


@dataclass
class Settings:
    """`[plugin.gptme_factory]`, with defaults; None means "the ledger's own default"."""

    ledger_dir: str | None = None
    model: str | None = None
    timeout_s: float | None = None
    max_tokens: int | None = None
    max_cost_usd: float | None = None
    session_start: bool = True


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


def configure(raw: dict[str, Any]) -> list[str]:
    """Replace the settings' values with those of `raw`; returns the warnings."""
    new, warnings = parse_settings(raw)
    for f in fields(Settings):
        setattr(settings, f.name, getattr(new, f.name))
    return warnings
