"""The one module that reads and writes YAML.

Loading is safe-only (libyaml's C loader when present), rejects non-UTF-8 text, oversized
input, anchors/aliases (no alias bombs) and non-mapping documents. Dumping is byte-stable:
keys in the order given (models fix it), block style, multi-line strings as `|` literals,
UTF-8, a trailing newline and no trailing whitespace, so ledger diffs read well in a PR and
pass the usual pre-commit hooks (check-yaml, end-of-file-fixer, trailing-whitespace).
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from .errors import InvalidRecord

MAX_RECORD_BYTES = 1024 * 1024

_Loader: type[yaml.SafeLoader]
_DumperBase: type[yaml.SafeDumper]
try:
    _Loader = yaml.CSafeLoader
    _DumperBase = yaml.CSafeDumper
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    _Loader = yaml.SafeLoader
    _DumperBase = yaml.SafeDumper


class _Dumper(_DumperBase):  # type: ignore[misc,valid-type]
    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _represent_str)


def dumps(data: dict[str, Any]) -> bytes:
    """Serialize a mapping of plain JSON-compatible values to stable YAML bytes."""
    text = yaml.dump(
        data,
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=100,
        indent=2,
    )
    if not text.endswith("\n"):
        text += "\n"
    return text.encode("utf-8")


def _has_anchor_or_alias(text: str) -> bool:
    # Fast path: without '&' or '*' no anchor or alias can exist. Otherwise scan the event
    # stream, where quoted or literal '*' characters are harmless scalars.
    if "&" not in text and "*" not in text:
        return False
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.AliasEvent):
            return True
        if getattr(event, "anchor", None):
            return True
    return False


def loads(raw: bytes, source: str, max_bytes: int = MAX_RECORD_BYTES) -> dict[str, Any]:
    """Parse one YAML (or JSON) document that must be a mapping; errors name `source`."""
    if len(raw) > max_bytes:
        raise InvalidRecord(
            source, [f"file is {len(raw)} bytes, over the {max_bytes}-byte limit for a record"]
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRecord(
            source, [f"not valid UTF-8 at byte {exc.start}: save the file as UTF-8"]
        ) from None
    try:
        if _has_anchor_or_alias(text):
            raise InvalidRecord(
                source, ["YAML anchors and aliases are not allowed in factory records"]
            )
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - safe loader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InvalidRecord(source, [f"malformed YAML{where}: {problem}"]) from None
    if not isinstance(data, dict):
        kind = "empty" if data is None else type(data).__name__
        raise InvalidRecord(source, [f"expected a mapping of fields, got {kind}"])
    return data


def loads_any(raw: bytes, source: str, max_bytes: int = MAX_RECORD_BYTES) -> dict[str, Any]:
    """Parse a handoff given as JSON or YAML (JSON is tried first: it is a YAML subset)."""
    stripped = raw.lstrip()
    if stripped.startswith(b"{"):
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return loads(raw, source, max_bytes)
        if isinstance(data, dict):
            return data
    return loads(raw, source, max_bytes)
