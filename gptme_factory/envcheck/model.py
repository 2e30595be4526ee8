"""Pre-flight for a cell's model: whether gptme would find a usable provider for it.

`preflight_model(model, env)` resolves the model the way gptme 0.35.1's `init_model` and CLI
check do (the model named, else GPTME_MODEL / gptme's config, else auto-detection from the
keys present) and checks that its provider has what gptme's client setup demands:

- an API key for anthropic, openai, openrouter, requesty, gemini, groq, xai, deepseek,
  moonshot, nvidia (names from gptme's `PROVIDER_API_KEYS`; nvidia's from `llm_openai.init`),
  found by gptme's lookup, in credentials.toml, or as LLM_PROXY_API_KEY where gptme accepts it;
- AZURE_OPENAI_API_KEY and AZURE_OPENAI_ENDPOINT for azure, OPENAI_BASE_URL (or
  OPENAI_API_BASE) for local, a login or GPTME_CLOUD_API_KEY for gptme, a login token for the
  subscription providers, the `api_key_env` of a custom or plugin provider;
- nothing for `mock/echo` and `mock/static`.

No network and no model call. `mock/echo` is answered without reading anything. Otherwise
the provider registry comes from gptme itself (`gptme.llm`, `gptme.llm.models`), imported
lazily once per process: about 0.3 s on this machine on top of the factory's own imports
(reading the same tables by parsing gptme's source would take 0.03 s, but would break
silently whenever gptme moves them). Should gptme's registry not import, the pre-flight
says nothing and the cell's own exit is classified instead (`classify_cell_exit`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .failure import EnvironmentFailure, failure
from .gptmeconfig import GptmeView, read_view

OFFLINE_MODEL = "mock/echo"
_PROXIED = frozenset({"anthropic", "openai", "openrouter", "requesty"})  # LLM_PROXY_API_KEY works
_STORED = frozenset({"anthropic", "openai", "openrouter", "requesty", "gemini", "xai", "groq",
                     "deepseek", "moonshot", "nvidia"})  # credentials.toml is read
_EXTRA_KEYS = {"nvidia": "NVIDIA_API_KEY"}  # keyed in llm_openai.init, absent from PROVIDER_API_KEYS
_OTHER_MODEL = "or pick another model with --model"


@dataclass(frozen=True)
class Registry:
    """The parts of gptme's provider and model registry a pre-flight needs."""

    providers: frozenset[str]
    provider_aliases: Mapping[str, str]
    models: Mapping[str, frozenset[str]]
    model_aliases: Mapping[str, Mapping[str, str]]
    api_keys: Mapping[str, str]  # provider -> env var, in gptme's auto-detection order
    recommended: Mapping[str, str]  # provider -> model used for a bare provider name


@functools.cache
def gptme_registry() -> Registry | None:
    """The provider/model tables of gptme itself (imported once), or None if they cannot be read."""
    try:
        from gptme.llm import PROVIDER_API_KEYS
        from gptme.llm.models import (
            MODEL_ALIASES,
            MODELS,
            PROVIDER_ALIASES,
            PROVIDERS,
            RECOMMENDED_MODELS,
        )
    except ImportError:
        return None
    return Registry(
        providers=frozenset(str(p) for p in PROVIDERS) | frozenset(str(p) for p in MODELS),
        provider_aliases=dict(PROVIDER_ALIASES),
        models={str(p): frozenset(names) for p, names in MODELS.items()},
        model_aliases={p: dict(a) for p, a in MODEL_ALIASES.items()},
        api_keys=dict(PROVIDER_API_KEYS),
        recommended=dict(RECOMMENDED_MODELS),
    )


@functools.cache
def _plugin_providers() -> Mapping[str, str | None]:
    """Provider plugins (entry-point group `gptme.providers`): name -> api_key_env."""
    from importlib.metadata import entry_points

    if not entry_points(group="gptme.providers"):
        return {}
    try:
        from gptme.llm.provider_plugins import discover_provider_plugins
    except ImportError:
        return {}
    return {p.name: p.api_key_env for p in discover_provider_plugins()}


def _invalid(name: str, source: str, why: str) -> EnvironmentFailure:
    return failure("invalid_model", f"model {name!r} ({source}): {why}",
                   "name a model gptme knows as provider/model with --model (e.g. "
                   "anthropic/claude-sonnet-4-5, or mock/echo offline); `gptme-util models "
                   "list` lists them")


def _missing_key(var: str, model: str, source: str) -> EnvironmentFailure:
    return failure("missing_api_key",
                   f"model {model} ({source}) needs {var}, which is not set in the environment, "
                   "gptme's config [env] or credentials.toml",
                   f"set {var} ({_OTHER_MODEL})")


def _missing_setting(var: str, model: str, source: str, example: str = "") -> EnvironmentFailure:
    return failure("missing_provider_setting",
                   f"model {model} ({source}) needs {var}, which is not set in the environment "
                   "or gptme's config [env]",
                   f"set {var}{example} ({_OTHER_MODEL})")


def _builtin_needs(provider: str, model: str, source: str, view: GptmeView,
                   reg: Registry) -> EnvironmentFailure | None:
    if provider == "mock":
        return None
    if provider == "local":
        if view.get("OPENAI_API_BASE") or view.get("OPENAI_BASE_URL"):
            return None
        return _missing_setting("OPENAI_BASE_URL", model, source,
                                " to the local server's OpenAI-compatible URL, e.g. "
                                "http://127.0.0.1:11434/v1 for ollama,")
    if provider == "azure":
        key = reg.api_keys.get("azure", "AZURE_OPENAI_API_KEY")
        if not view.get(key):
            return _missing_key(key, model, source)
        if not view.get("AZURE_OPENAI_ENDPOINT"):
            return _missing_setting("AZURE_OPENAI_ENDPOINT", model, source)
        return None
    if provider == "gptme":
        if view.get("LLM_PROXY_API_KEY") or view.get("GPTME_CLOUD_API_KEY") or view.has_login("gptme"):
            return None
        return failure("not_logged_in", f"model {model} ({source}) needs a gptme.ai login",
                       f"run `gptme-auth login` or set GPTME_CLOUD_API_KEY ({_OTHER_MODEL})")
    if provider in ("openai-subscription", "grok-subscription"):
        if view.has_login(provider):
            return None
        how = ("`gptme auth openai-subscription`" if provider == "openai-subscription"
               else "`grok login` or `gptme auth grok-subscription`")
        return failure("not_logged_in", f"model {model} ({source}) needs a {provider} login",
                       f"run {how} as the user the cells run as ({_OTHER_MODEL})")
    var = reg.api_keys.get(provider) or _EXTRA_KEYS.get(provider)
    if var is None:
        return None  # a provider this check does not know: let gptme judge it
    if (view.get(var) or (provider in _PROXIED and view.get("LLM_PROXY_API_KEY"))
            or (provider in _STORED and view.stored.get(provider))):
        return None
    return _missing_key(var, model, source)


def _keyed_needs(var: str | None, model: str, source: str, view: GptmeView) -> EnvironmentFailure | None:
    if var is None or view.get(var):
        return None
    return _missing_key(var, model, source)


def check_model(name: str, source: str, view: GptmeView, reg: Registry) -> EnvironmentFailure | None:
    """Whether gptme could start `name` (set by `source`) with what `view` holds."""
    if "/" in name:
        prefix, rest = name.split("/", 1)
        prefix = reg.provider_aliases.get(prefix, prefix)
        if prefix in reg.providers:
            if prefix == "mock" and rest not in reg.models.get("mock", frozenset()):
                known = ", ".join(f"mock/{m}" for m in sorted(reg.models.get("mock", ())))
                return _invalid(name, source, f"unknown mock model (available: {known})")
            return _builtin_needs(prefix, f"{prefix}/{rest}", source, view, reg)
        if prefix in view.custom:
            custom = view.custom[prefix]
            return None if custom.api_key else _keyed_needs(custom.api_key_env, name, source, view)
        plugins = _plugin_providers()
        if prefix in plugins:
            return _keyed_needs(plugins[prefix], name, source, view)
        return _invalid(name, source, f"unknown provider {prefix!r}")
    name = reg.provider_aliases.get(name, name)
    if name in reg.providers:
        if name not in reg.recommended:
            return _invalid(name, source, "this provider needs a model named, as "
                            f"{name}/<model>")
        return _builtin_needs(name, f"{name}/{reg.recommended[name]}", source, view, reg)
    if name in view.custom:
        custom = view.custom[name]
        if custom.default_model is None:
            return _invalid(name, source, "this custom provider has no default_model")
        return None if custom.api_key else _keyed_needs(custom.api_key_env, name, source, view)
    for provider, names in reg.models.items():
        if name in names or name in reg.model_aliases.get(provider, {}):
            return _builtin_needs(provider, f"{provider}/{name}", source, view, reg)
    return _invalid(name, source, "unknown model")


def autodetect(view: GptmeView, reg: Registry) -> tuple[str, str] | None:
    """(provider, why) as gptme's `guess_provider_from_config` would pick it, or None."""
    for provider, var in reg.api_keys.items():
        if view.get(var):
            return provider, f"auto-detected from {var}"
    for provider in sorted(view.stored):
        return provider, "auto-detected from credentials.toml"
    for provider in ("openai-subscription", "grok-subscription"):
        if view.has_login(provider):
            return provider, "auto-detected from its login token"
    for provider, key in _plugin_providers().items():
        if key and view.get(key):
            return provider, f"auto-detected from {key}"
    return None


def preflight_model(model: str | None, env: Mapping[str, str], home: Path | None = None, *,
                    workspace: Path | None = None) -> EnvironmentFailure | None:
    """Whether a cell run as `gptme [--model MODEL]` with `env` would find a usable provider.

    `home` defaults to env's HOME; `workspace` is the folder gptme runs in (for its
    gptme.toml [env]). Returns None when the model is usable (or this check cannot tell).
    """
    if (model or env.get("GPTME_MODEL") or env.get("MODEL")) == OFFLINE_MODEL:
        return None
    view = read_view(env, home, workspace)
    chosen = (model, "--model") if model else view.model_source()
    reg = gptme_registry()
    if reg is None:
        return None
    if chosen is not None:
        return check_model(chosen[0], chosen[1], view, reg)
    detected = autodetect(view, reg)
    if detected is None:
        names = [reg.api_keys[p] for p in ("anthropic", "openai", "openrouter") if p in reg.api_keys]
        first, rest = (names[0], names[1:]) if names else ("a provider API key", [])
        alternatives = f" (or {' / '.join(rest)})" if rest else ""
        return failure("no_provider",
                       "no model is set (--model, GPTME_MODEL or gptme's config) and no provider "
                       "key is set for gptme to auto-detect one",
                       f"set {first}{alternatives}, or pass --model mock/echo for an offline run")
    return check_model(detected[0], detected[1], view, reg)
