"""Telling a gptme cell that died because no model is usable from one whose work failed.

gptodo runs a cell as `gptme -n [--model M] "<prompt>" > OUT 2>&1; echo "EXIT_CODE=$?" >> OUT`
inside tmux. gptme 0.35.1 prints its log through rich: with OUT a file the console is 80
columns wide, long messages wrap onto lines indented by 11 spaces, and the "Thinking..."
spinner is erased with a carriage return. A fatal error is always two records, `· ERROR    Fatal error
occurred` then `· ERROR    <message>`, and the exit status comes from gptme's
`_classify_fatal_error` (76 auth, 77 model unavailable, 75 rate limit, else 1); a bad
`--model` is a click usage error (exit 2). Observed with `gptme -n [--model M] "hi"`, an
isolated HOME/XDG, no keys in the environment and GPTME_TIKTOKEN_TIMEOUT=0:

    no --model, no key         exit 1  No provider configured, couldn't auto-detect model.
                                       (after a plain line: No provider configured, no provider
                                       available.)
    anthropic/claude-sonnet-4-5, exit 1  Environment variable ANTHROPIC_API_KEY not set in
      or just `anthropic`,               env/config or credentials.toml
      or GPTME_MODEL=anthropic/...
    openai/gpt-4o, gpt-4o       exit 1  Environment variable OPENAI_API_KEY not set in ...
      (also OPENROUTER_API_KEY, GEMINI_API_KEY ... for their providers)
    azure/gpt-4o               exit 1  Environment variable AZURE_OPENAI_API_KEY not set in env
                                       or config, see README.
    local/llama3               exit 1  Missing environment variable OPENAI_BASE_URL
    gptme/claude-sonnet-4-6    exit 76 gptme provider requires authentication. Either: ...
    openai-subscription/gpt-5  exit 1  OpenAI subscription not authenticated. ...
    grok-subscription/grok-4   exit 1  Grok subscription not authenticated. ...
    mock/nosuch                exit 1  Unknown mock model: 'mock/nosuch' (available: mock/echo,
                                       mock/static)
    foo-bar-model              exit 2  Error: --model: Unknown model 'foo-bar-model'. Use
                                       'provider/model' with a known provider ...
    nosuchprov/x               exit 2  Error: --model: Unknown provider: nosuchprov
    local/x, server says 401   exit 76 Error code: 401 - {'error': {'message': 'Incorrect API
                                       key provided', ...}}
    local/x, server says 404   exit 77 Error code: 404 - {...}
    local/x, nothing listening exit 1  Connection error.  (after ~5 min of retries)
    mock/echo                  exit 0

Guards against false positives: only the record right after the *last* `Fatal error
occurred` is read (a prompt or a tool output that quotes these lines is not a record in that
position), the exit status must agree with the message, a usage error counts only as the last
line of the output, and a startup traceback only when it is the first thing gptme printed.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from .checks import complaint_failure, shell_complaints
from .failure import EnvironmentFailure, failure, plain_lines

_RECORD = re.compile(r"^(?:· |\[[\d:]+\] )?(?P<level>ERROR|WARNING|CRITICAL|INFO|DEBUG) +(?P<msg>.*)$")
_FATAL = "Fatal error occurred"
_OFFLINE = "or pass --model mock/echo for an offline run"


def _records(lines: list[str]) -> list[tuple[str, str]]:
    """(level, message) of every gptme log record, wrapped continuation lines joined."""
    records: list[tuple[str, list[str]]] = []
    open_record = False
    for line in lines:
        m = _RECORD.match(line)
        if m:
            records.append((m["level"], [m["msg"].strip()]))
            open_record = True
        elif open_record and (not line or line[0].isspace()):
            if line.strip():
                records[-1][1].append(line.strip())
        else:
            open_record = False
    return [(level, " ".join(parts)) for level, parts in records]


def _fatal_message(lines: list[str]) -> str | None:
    """The message of the record right after the last `Fatal error occurred`."""
    records = _records(lines)
    for i in range(len(records) - 1, -1, -1):
        if records[i] == ("ERROR", _FATAL):
            following = records[i + 1] if i + 1 < len(records) else None
            return following[1] if following and following[0] == "ERROR" else None
    return None


def _key_or_setting(var: str, cause: str) -> EnvironmentFailure:
    if var.endswith("_KEY"):
        return failure("missing_api_key", cause,
                       f"set {var} where the cells run (or pick another model with --model)")
    return failure("missing_provider_setting", cause,
                   f"set {var} where the cells run (or pick another model with --model)")


# (exit statuses, message pattern, failure from the match and the whole message)
_Rule = tuple[frozenset[int], re.Pattern[str], Callable[[re.Match[str], str], EnvironmentFailure]]
_RULES: list[_Rule] = [
    (frozenset({1}), re.compile(r"^No provider configured, couldn't auto-detect model\."),
     lambda m, msg: failure(
         "no_provider", m[0],
         f"set ANTHROPIC_API_KEY (or OPENAI_API_KEY / OPENROUTER_API_KEY) where the cells run, "
         f"{_OFFLINE}")),
    (frozenset({1}), re.compile(
        r"^Environment variable (?P<var>\w+) not set in (?:env/config or credentials\.toml"
        r"|env or config, see README\.)"),
     lambda m, msg: _key_or_setting(m["var"], m[0])),
    (frozenset({1}), re.compile(
        r"^Missing environment variable (?P<var>\w+)(?: required by provider plugin '[^']+')?"),
     lambda m, msg: _key_or_setting(m["var"], m[0])),
    (frozenset({1, 76}), re.compile(r"^gptme provider requires authentication\."),
     lambda m, msg: failure("not_logged_in", m[0],
                            "run `gptme-auth login` or set GPTME_CLOUD_API_KEY where the cells "
                            "run (or pick another model with --model)")),
    (frozenset({1, 76}), re.compile(r"^OpenAI subscription not authenticated\."),
     lambda m, msg: failure("not_logged_in", m[0],
                            "run `gptme auth openai-subscription` as the user the cells run as "
                            "(or pick another model with --model)")),
    (frozenset({1, 76}), re.compile(r"^Grok subscription not authenticated\."),
     lambda m, msg: failure("not_logged_in", m[0],
                            "run `grok login` or `gptme auth grok-subscription` as the user the "
                            "cells run as (or pick another model with --model)")),
    (frozenset({1}), re.compile(
        r"^(?:Unknown mock model: .*|Unknown model '[^']+'\..*"
        r"|Provider '[^']+' requires specifying a model.*"
        r"|Custom provider '[^']+' has no default_model configured.*)$"),
     lambda m, msg: failure("invalid_model", msg,
                            "name a model gptme knows as provider/model with --model (e.g. "
                            "anthropic/claude-sonnet-4-5, or mock/echo offline); "
                            "`gptme-util models list` lists them")),
    (frozenset({1}), re.compile(r"^Connection error\.$"),
     lambda m, msg: failure("provider_unreachable", f"{msg} (gptme could not reach the model's "
                            "provider)", "check the network or proxy and the provider's base URL "
                            "(e.g. OPENAI_BASE_URL), then retry the stage")),
    (frozenset({76}), re.compile(r"^.+$"),
     lambda m, msg: failure("auth_failed", msg,
                            "check the provider's API key (it was refused), set a valid one where "
                            "the cells run, or pick another model with --model")),
    (frozenset({77}), re.compile(r"^.+$"),
     lambda m, msg: failure("model_unavailable", msg,
                            "check the model name given with --model and the provider's status; "
                            "retry the stage once the provider serves it")),
]
_USAGE_MODEL = re.compile(r"^Error: --model: .+$")
_STARTUP_IMPORT = re.compile(r"^(?:ModuleNotFoundError|ImportError): No module named '(?P<mod>[\w.]+)'$")


def classify_cell_exit(exit_code: int | None, output: str) -> EnvironmentFailure | None:
    """An environment failure when a gptme cell died because no model or provider is usable."""
    if exit_code is None or exit_code == 0:
        return None
    lines = plain_lines(output)
    text = [ln for ln in lines if ln.strip()]
    if exit_code in (126, 127):
        for complaint in shell_complaints(lines):
            found = complaint_failure(complaint, "gptme")
            if found is not None:
                return found
        return None
    if exit_code == 2 and text and _USAGE_MODEL.match(text[-1].strip()):
        return failure("invalid_model", text[-1].strip(),
                       "name a model gptme knows as provider/model with --model (e.g. "
                       "anthropic/claude-sonnet-4-5, or mock/echo offline); "
                       "`gptme-util models list` lists them")
    if (exit_code == 1 and text and text[0].strip() == "Traceback (most recent call last):"
            and (m := _STARTUP_IMPORT.match(text[-1].strip()))):
        top = m["mod"].split(".")[0]
        return failure("missing_module", text[-1].strip(),
                       f"gptme cannot start: install its missing dependency ({top}) in gptme's "
                       "environment (pip install --force-reinstall gptme)")
    message = _fatal_message(lines)
    if message is None:
        return None
    for codes, pattern, make in _RULES:
        if exit_code in codes and (m := pattern.match(message)):
            return make(m, message)
    return None
