"""The value every environment check returns: what could not run, the exact cause, the fix.

An `EnvironmentFailure` says that the machine, not the work, is at fault: a program or
module is missing, or no model provider is usable. It consumes no build attempt and starts no
rework; it blocks the artifact until a person applies `fix`. `cause` is one line (the exact
line observed when there was one); `fix` is one sentence naming what to install or set.

Also here: the small text helpers the classifiers share (ANSI stripping, line splitting).
"""

from __future__ import annotations

import re
from typing import Literal

from ..ledger.records import Record, ShortText

FailureKind = Literal[
    "command_not_found",  # a program is not on PATH (or an absolute path does not exist)
    "not_executable",  # a program exists but cannot be executed (mode bits, wrong format)
    "missing_interpreter",  # python/node/... or a script's #! interpreter is missing
    "missing_module",  # `<python> -m X` (or gptme itself) cannot find module X
    "no_provider",  # no model named and no provider key for gptme to auto-detect one
    "missing_api_key",  # the model's provider needs an API key that is not set
    "missing_provider_setting",  # the provider needs a setting (a base URL, an endpoint)
    "not_logged_in",  # the provider authenticates by a login (OAuth/device flow) not done
    "auth_failed",  # the provider refused the credentials (gptme exit 76)
    "model_unavailable",  # the provider does not serve the model now (gptme exit 77)
    "provider_unreachable",  # gptme could not connect to the provider at all
    "invalid_model",  # gptme does not know the model or provider named
    "setup_failed",  # a target's set-up command (making its environment) failed
]

_MAX = 500  # ShortText's limit
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
_SPACE = re.compile(r"\s+")


class EnvironmentFailure(Record):
    """The environment, not the work, stopped a check or a cell; `fix` says what to do."""

    kind: FailureKind
    cause: ShortText
    fix: ShortText

    def summary(self) -> str:
        """One line for a person: the cause, then the fix."""
        return f"{self.cause} — fix: {self.fix}"


def one_line(text: str) -> str:
    """`text` on one line (whitespace runs collapsed), cut to fit a `ShortText`."""
    flat = _SPACE.sub(" ", text).strip()
    return flat if len(flat) <= _MAX else flat[: _MAX - 1] + "…"


def failure(kind: FailureKind, cause: str, fix: str) -> EnvironmentFailure:
    """Build a failure with both texts flattened to one line and cut to fit."""
    return EnvironmentFailure(kind=kind, cause=one_line(cause), fix=one_line(fix))


def plain_lines(output: str) -> list[str]:
    """Output split into lines without ANSI escapes, redraws or the `EXIT_CODE=` trailer.

    Splitting on carriage returns too matters: gptme redraws its "Thinking..." spinner with a carriage
    return, so the fatal error line follows it on the same physical line.
    """
    text = _ANSI.sub("", output)
    return [line.rstrip() for line in text.splitlines() if not line.startswith("EXIT_CODE=")]
