"""What a new gptme conversation would read for its model and keys, read without gptme.

gptme's own `Config.get_env` reads `os.environ`, while a pre-flight must judge the
environment a *cell* will get (a mapping passed in), so the layers are read here, following
gptme 0.35.1 (`config/core.py`, `config/user.py`, `config/project.py`, `credentials.py`):

- `get(KEY)`: `GPTME_KEY` then `KEY` in the environment, then `[env]` of the workspace's
  `gptme.toml` (or `.github/gptme.toml`, with `gptme.local.toml` over it), then `[env]` of the
  user config (`~/.config/gptme/config.runtime.toml` < `config.toml` < `config.local.toml`;
  gptme takes that folder from HOME, not XDG_CONFIG_HOME). Empty values count as unset.
- The model, when none is named: `GPTME_MODEL`/`MODEL` (through `get`, so the project's
  `[env] MODEL` too), then the user config's `[models] default`, then its `[env] MODEL`.
- Stored keys: `$XDG_CONFIG_HOME/gptme/credentials.toml` `[providers]`; logins: token files
  under `$XDG_CONFIG_HOME/gptme/` (`oauth/`, `auth/`) and `~/.grok/auth.json`.
- Custom providers: the user config's `[[providers]]` (name, api_key, api_key_env,
  default_model).

A config file that is missing, unreadable or not valid TOML counts as empty here (gptme
itself then reports it when the cell starts).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class CustomProvider:
    """A `[[providers]]` entry of gptme's user config (an OpenAI-compatible endpoint)."""

    name: str
    api_key: str | None
    api_key_env: str | None
    default_model: str | None


@dataclass(frozen=True)
class GptmeView:
    """The settings a new gptme conversation would see, for one environment."""

    env: Mapping[str, str]
    home: Path
    config_dir: Path  # $XDG_CONFIG_HOME/gptme: credentials and login tokens
    user_config: Path  # ~/.config/gptme/config.toml (from HOME)
    project_config: Path | None
    project_env: Mapping[str, str]
    user_env: Mapping[str, str]
    default_model: str | None
    custom: Mapping[str, CustomProvider]
    stored: Mapping[str, str]

    def get(self, key: str) -> str | None:
        """A setting as gptme's `Config.get_env` finds it (None when unset or empty)."""
        prefixed = key if key.startswith("GPTME_") else f"GPTME_{key}"
        bare = key.removeprefix("GPTME_")
        for value in (self.env.get(prefixed), self.env.get(bare),
                      self.project_env.get(bare), self.user_env.get(bare)):
            if value:
                return value
        return None

    def model_source(self) -> tuple[str, str] | None:
        """(model, where it was set) when gptme would not auto-detect one."""
        for var in ("GPTME_MODEL", "MODEL"):
            if value := self.env.get(var):
                return value, var
        if value := self.project_env.get("MODEL"):
            return value, f"MODEL in {self.project_config} [env]"
        if self.default_model:
            return self.default_model, f"[models] default in {self.user_config}"
        if value := self.user_env.get("MODEL"):
            return value, f"MODEL in {self.user_config} [env]"
        return None

    def has_login(self, provider: str) -> bool:
        """Whether a login token gptme would use for `provider` is on disk."""
        if provider == "openai-subscription":
            return (self.config_dir / "oauth" / "openai_subscription.json").is_file()
        if provider == "grok-subscription":
            return ((self.config_dir / "oauth" / "grok_subscription.json").is_file()
                    or (self.home / ".grok" / "auth.json").is_file())
        if provider == "gptme":
            auth = self.config_dir / "auth"
            return auth.is_dir() and any(auth.glob("gptme-cloud-*.json"))
        return False


def _read_toml(path: Path) -> dict[str, Any]:
    import tomlkit
    from tomlkit.exceptions import TOMLKitError

    try:
        data = tomlkit.parse(path.read_text("utf-8")).unwrap()
    except (OSError, UnicodeDecodeError, TOMLKitError):
        return {}
    return data if isinstance(data, dict) else {}


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        old = merged.get(key)
        merged[key] = _merge(old, value) if isinstance(old, dict) and isinstance(value, dict) else value
    return merged


def _layers(*paths: Path) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for path in paths:
        if path.is_file():
            merged = _merge(merged, _read_toml(path))
    return merged


def _str_table(value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {str(k): v for k, v in value.items() if isinstance(v, str) and v}


def _opt_str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _custom_providers(value: object) -> dict[str, CustomProvider]:
    found: dict[str, CustomProvider] = {}
    for entry in value if isinstance(value, list) else []:
        if isinstance(entry, dict) and (name := _opt_str(entry.get("name"))):
            found[name] = CustomProvider(name, _opt_str(entry.get("api_key")),
                                         _opt_str(entry.get("api_key_env")),
                                         _opt_str(entry.get("default_model")))
    return found


def read_view(env: Mapping[str, str], home: Path | None = None,
              workspace: Path | None = None) -> GptmeView:
    """Read gptme's config layers as a cell with `env`, `home` and `workspace` would."""
    home_dir = home or (Path(env["HOME"]) if env.get("HOME") else Path.home())
    config_dir = Path(env.get("XDG_CONFIG_HOME") or home_dir / ".config") / "gptme"
    user_dir = home_dir / ".config" / "gptme"
    user = _layers(user_dir / "config.runtime.toml", user_dir / "config.toml",
                   user_dir / "config.local.toml")
    project_config = None
    project: dict[str, Any] = {}
    if workspace is not None:
        for candidate in (workspace / "gptme.toml", workspace / ".github" / "gptme.toml"):
            if candidate.is_file():
                project_config = candidate
                project = _layers(candidate, candidate.parent / "gptme.local.toml")
                break
    models = user.get("models")
    credentials = _read_toml(config_dir / "credentials.toml")
    return GptmeView(
        env=env,
        home=home_dir,
        config_dir=config_dir,
        user_config=user_dir / "config.toml",
        project_config=project_config,
        project_env=_str_table(project.get("env")),
        user_env=_str_table(user.get("env")),
        default_model=_opt_str(models.get("default")) if isinstance(models, dict) else None,
        custom=_custom_providers(user.get("providers")),
        stored=_str_table(credentials.get("providers")),
    )
