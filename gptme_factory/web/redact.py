"""Keeping machine paths and secrets out of the page.

Everything the board shows passes through a `Redactor`: the brain repo's own path becomes a
repo-relative one, the home directory `~`, the factory's worktree directory `<worktrees>`, any
other absolute path of two or more components is cut to `…/its-last-part`, and strings shaped
like credentials (API keys, tokens, passwords in URLs) become `[redacted]`. Ledger strings can
hold anything a cell wrote, so this is applied to all of them, not to a list of known fields.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

REDACTED = "[redacted]"
_SECRETS = [
    re.compile(r"\bsk-[A-Za-z0-9_-]{16,}"),  # OpenAI / Anthropic style keys
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}"),  # GitHub tokens
    re.compile(r"\bgithub_pat_[A-Za-z0-9_]{20,}"),
    re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),  # Slack
    re.compile(r"\bAKIA[0-9A-Z]{16}\b"),  # AWS access key ids
    re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{16,}"),
]
# key=value / key: value where the key names a secret: keep the key, hide the value
_SECRET_ASSIGN = re.compile(
    r"(?i)\b((?:api[_-]?key|access[_-]?key|secret|token|password|passwd)\s*[=:]\s*)"
    r"(?!\[redacted\])[^\s'\",;]{6,}")
_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s:@]+(?::[^/\s@]*)?@")
# an absolute path of at least two components not preceded by a word, URL or path character
_ABS_PATH = re.compile(r"(?<![\w:/.~\\-])/(?:[\w.@+-]+/)+([\w.@+-]*)")


def _relabel(label: str) -> Any:
    def sub(m: re.Match[str]) -> str:
        if label == ".":
            return "" if m.group(1) else "."  # repo-relative: /repo/x -> x, /repo -> .
        return label + m.group(1)

    return sub


class Redactor:
    """Rewrites text for the page: known prefixes first, then any absolute path and secret."""

    def __init__(self, root: Path, prefixes: Iterable[tuple[Path, str]] = ()) -> None:
        pairs: list[tuple[str, str]] = [(str(root), ".")]
        home = os.path.expanduser("~")
        for path, label in [*prefixes, (Path(home), "~")]:
            pairs.append((str(path), label))
        resolved = []
        for path_text, label in pairs:
            resolved.append((path_text, label))
            real = os.path.realpath(path_text)
            if real != path_text:
                resolved.append((real, label))
        # longest first, so the repo wins over a home directory that contains it; a prefix
        # matches a whole path component (/a/brain, not /a/brain2)
        ordered = sorted({p: lbl for p, lbl in resolved if len(p) > 1}.items(),
                         key=lambda x: -len(x[0]))
        self._prefixes = [(p, re.compile(re.escape(p) + r"(/|(?![\w.@+-]))"), lbl)
                          for p, lbl in ordered]

    def text(self, value: str) -> str:
        """`value` without machine paths or secrets."""
        if "/" in value:
            for prefix, pattern, label in self._prefixes:
                if prefix in value:
                    value = pattern.sub(_relabel(label), value)
            value = _URL_CREDENTIALS.sub(lambda m: m.group(1) + "***@", value)
            value = _ABS_PATH.sub(lambda m: "\u2026/" + m.group(1), value)
        for pattern in _SECRETS:
            value = pattern.sub(REDACTED, value)
        return _SECRET_ASSIGN.sub(lambda m: m.group(1) + REDACTED, value)

    def mapping(self, data: dict[str, Any]) -> dict[str, Any]:
        """`tree` of a dict."""
        out: dict[str, Any] = self.tree(data)
        return out

    def tree(self, data: Any) -> Any:
        """A copy of JSON-able `data` with every string (keys included) redacted."""
        memo: dict[str, str] = {}  # the same keys and values recur on every card

        def text(value: str) -> str:
            got = memo.get(value)
            if got is None:
                got = memo[value] = self.text(value)
            return got

        def walk(node: Any) -> Any:
            if isinstance(node, str):
                return text(node)
            if isinstance(node, dict):
                return {text(k) if isinstance(k, str) else k: walk(v) for k, v in node.items()}
            if isinstance(node, (list, tuple)):
                return [walk(v) for v in node]
            return node

        return walk(data)
