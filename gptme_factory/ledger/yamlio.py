"""The one module that reads and writes YAML.

Loading is safe-only (libyaml's C loader when present) and limited to JSON-like values
(timestamps stay strings; `!!binary`, `!!set`, `!!omap`, `!!pairs` are refused). It rejects
non-UTF-8 text, oversized input, anchors/aliases (no alias bombs), duplicate keys, nesting
deeper than MAX_DEPTH (libyaml's composer recurses in C and would crash the process on a few
ten thousand levels) and non-mapping documents. Every failure is an InvalidRecord naming the
source; nothing else escapes. Dumping is byte-stable:
keys in the order given (models fix it), block style, multi-line strings as `|` literals,
UTF-8, a trailing newline and no trailing whitespace, so ledger diffs read well in a PR and
pass the usual pre-commit hooks (check-yaml, end-of-file-fixer, trailing-whitespace).
"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from ..errors import InvalidRecord

MAX_RECORD_BYTES = 1024 * 1024
MAX_DEPTH = 64
# Below this bound on the nesting depth the composer is safe to run before checking depth.
_SAFE_COMPOSE_BOUND = 5000
_BREAKS = ("\n", "\r", "\x85", "\u2028", "\u2029")
_BLOCK_OPENERS = ("- ", "-\t", "? ", "?\t")

_LoaderBase: Any
_DumperBase: Any
try:
    _LoaderBase = yaml.CSafeLoader
    _DumperBase = yaml.CSafeDumper
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    _LoaderBase = yaml.SafeLoader
    _DumperBase = yaml.SafeDumper


class _Loader(_LoaderBase):  # type: ignore[misc]
    """Safe loader for JSON-like values that refuses duplicate keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        if len(mapping) != len(node.value):
            seen: set[object] = set()
            for key_node, _ in node.value:
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else id(key_node)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r}", key_node.start_mark
                    )
                seen.add(key)
            raise yaml.constructor.ConstructorError(
                None, None, "duplicate keys in a mapping", node.start_mark
            )
        return mapping

    def construct_timestamp_as_str(self, node: yaml.ScalarNode) -> str:
        return str(self.construct_scalar(node))

    def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
        """PyYAML's tag resolution, memoized for short plain scalars (keys, enums, ids).

        libyaml calls this for every node; with no path resolvers (none are registered) the
        tag of a plain scalar depends on its text alone, and of anything else on its kind.
        """
        if self.yaml_path_resolvers:
            return str(super().resolve(kind, value, implicit))
        if kind is not yaml.ScalarNode:
            return str(
                self.DEFAULT_MAPPING_TAG if kind is yaml.MappingNode else self.DEFAULT_SEQUENCE_TAG
            )
        if not implicit[0]:
            return str(self.DEFAULT_SCALAR_TAG)
        tag = _RESOLVED.get(value)
        if tag is None:
            tag = str(super().resolve(kind, value, implicit))
            if len(value) <= 80:
                if len(_RESOLVED) >= 20_000:
                    _RESOLVED.clear()
                _RESOLVED[value] = tag
        return tag


_RESOLVED: dict[str, str] = {}


_Loader.yaml_constructors = dict(_LoaderBase.yaml_constructors)
for _tag in ("binary", "set", "omap", "pairs"):
    _Loader.yaml_constructors.pop(f"tag:yaml.org,2002:{_tag}", None)
_Loader.add_constructor("tag:yaml.org,2002:timestamp", _Loader.construct_timestamp_as_str)


_STR_TAG = "tag:yaml.org,2002:str"
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_INT_TAG = "tag:yaml.org,2002:int"
_KEY_TAGS_FOR_FULL_LOADER = ("tag:yaml.org,2002:merge", "tag:yaml.org,2002:value")
# Documents whose depth bound is below this are built by `_build` (recursive: well under
# Python's recursion limit); larger ones go through PyYAML's constructor directly.
_FAST_BOUND = 400
_FULL = object()  # sentinel: "use the full loader"


class _NeedsFullLoader(Exception):
    """A node `_build` leaves to PyYAML's own constructor (merge keys, duplicates, tags)."""


class _SharedNode(Exception):
    """A collection reached twice: an alias (that the cheap anchor pre-check let through)."""


# Where an anchor (&) or alias (*) can start a token that the parser accepts: at the start of
# the text or of a line (after a BOM), or after `-`, `?`, `:`, `,`, `[`, `{` or a tag (`!...`),
# blanks aside. A superset: a match only means "scan the event stream to be sure". `_build`
# also refuses a collection node it meets twice, so a missed alias could never blow up.
_MAYBE_ANCHOR = re.compile(
    "(?:\\A|[\r\n\x85\u2028\u2029\ufeff?:,\\[{-])[ \t]*[&*]"
    "|![^ \t\r\n\x85\u2028\u2029]*[ \t]+[&*]"
)


def _build(loader: Any, node: yaml.Node, depth: int, seen: set[int]) -> Any:
    """Construct a composed node exactly as `_Loader` would, for JSON-like documents, faster.

    PyYAML's constructor spends most of a load on per-node bookkeeping (anchors, recursion,
    generators) that a ledger record never needs. Plain strings, mappings and sequences —
    nearly every node — are built here; every other scalar (int, float, bool, null, timestamp,
    an explicit or unknown tag) goes through the loader's own `construct_object`, so values
    and errors are the same. Anything else (a merge or complex key, a duplicate key, a tagged
    collection, nesting deeper than MAX_DEPTH) raises _NeedsFullLoader: the caller then loads
    the document the normal way, which gives the usual value or error.
    """
    tag = node.tag
    kind = type(node)
    if kind is yaml.ScalarNode:
        value = node.value
        if tag == _STR_TAG:
            return value
        if tag == _INT_TAG and value.isascii() and value.isdigit() and value[0] != "0":
            return int(value)  # what construct_yaml_int gives for plain decimal digits
        return loader.construct_object(node)
    if depth > MAX_DEPTH:
        raise _NeedsFullLoader
    if id(node) in seen:
        raise _SharedNode
    seen.add(id(node))
    if tag == _MAP_TAG and kind is yaml.MappingNode:
        data: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if type(key_node) is not yaml.ScalarNode or key_node.tag in _KEY_TAGS_FOR_FULL_LOADER:
                raise _NeedsFullLoader
            key = key_node.value if key_node.tag == _STR_TAG else loader.construct_object(key_node)
            data[key] = _build(loader, value_node, depth + 1, seen)
        if len(data) != len(node.value):
            raise _NeedsFullLoader  # a duplicate key: the full loader names it
        return data
    if tag == _SEQ_TAG and kind is yaml.SequenceNode:
        return [_build(loader, item, depth + 1, seen) for item in node.value]
    raise _NeedsFullLoader


def _load_fast(text: str) -> Any:
    """The document built by `_build` (libyaml composes it), or _FULL."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        return None if node is None else _build(loader, node, 1, set())
    except _NeedsFullLoader:
        return _FULL
    finally:
        loader.dispose()


class _Dumper(_DumperBase):  # type: ignore[misc]
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


def _depth_bound(text: str) -> int:
    """Bound the nesting depth from character counts alone (C speed).

    Every block level starts on a new line or after a compact `- `/`? ` (which may open a
    mapping too); every flow level needs a `[` or `{` (which may open a single-pair mapping).
    """
    flow = text.count("[") + text.count("{")
    lines = sum(text.count(b) for b in _BREAKS)
    compact = sum(text.count(o) for o in _BLOCK_OPENERS)
    return 2 * flow + lines + 2 * compact + 2


def _scan_events(text: str) -> str | None:
    """Walk the event stream: the first anchor/alias or over-deep nesting, as a problem."""
    depth = 0
    for event in yaml.parse(text, Loader=_LoaderBase):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            return "YAML anchors and aliases are not allowed in factory records"
        if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                return f"nested deeper than {MAX_DEPTH} levels"
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            depth -= 1
    return None


def _too_deep(data: Any) -> bool:
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values() if isinstance(v, (dict, list)))
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value if isinstance(v, (dict, list)))
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
    bound = _depth_bound(text)
    try:
        # Fast path: without '&' or '*' where a token can start, no anchor or alias can exist,
        # and a small depth bound makes composing safe. Otherwise scan the event stream first
        # (where quoted or literal '*' characters are harmless scalars).
        maybe_anchor = ("&" in text or "*" in text) and _MAYBE_ANCHOR.search(text) is not None
        if maybe_anchor or bound > _SAFE_COMPOSE_BOUND:
            problem = _scan_events(text)
            if problem:
                raise InvalidRecord(source, [problem])
        try:
            data = _load_fast(text) if bound <= _FAST_BOUND else _FULL
        except _SharedNode:
            raise InvalidRecord(source, [_scan_events(text) or "YAML aliases are not allowed"]) from None
        depth_checked = data is not _FULL  # _build refuses anything deeper than MAX_DEPTH
        if data is _FULL:
            data = yaml.load(text, Loader=_Loader)  # noqa: S506 - safe loader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        if "nesting depth" in problem:
            # PyYAML >= 6.0.4 stops deep documents itself; say it in our words, as for any depth.
            raise InvalidRecord(source, [f"nested deeper than {MAX_DEPTH} levels"]) from None
        raise InvalidRecord(source, [f"malformed YAML{where}: {problem}"]) from None
    except (ValueError, TypeError, KeyError, OverflowError, RecursionError) as exc:
        # Scalar constructors raise plain errors: `!!int x`, `!!bool maybe`, `!!float ?`.
        raise InvalidRecord(source, [f"malformed YAML: bad value ({exc})"]) from None
    if bound > MAX_DEPTH and not depth_checked and _too_deep(data):
        raise InvalidRecord(source, [f"nested deeper than {MAX_DEPTH} levels"])
    if not isinstance(data, dict):
        kind = "empty" if data is None else type(data).__name__
        raise InvalidRecord(source, [f"expected a mapping of fields, got {kind}"])
    return data


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for key, value in pairs:
        if key in data:
            raise ValueError(f"duplicate key {key!r}")
        data[key] = value
    return data


def loads_any(raw: bytes, source: str, max_bytes: int = MAX_RECORD_BYTES) -> dict[str, Any]:
    """Parse a handoff given as JSON or YAML (JSON is tried first: it is a YAML subset)."""
    stripped = raw.lstrip()
    if stripped.startswith(b"{") and len(raw) <= max_bytes:
        try:
            data = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
        except ValueError:  # bad UTF-8, bad JSON or a duplicate key: YAML says which
            return loads(raw, source, max_bytes)
        except RecursionError:
            raise InvalidRecord(source, [f"nested deeper than {MAX_DEPTH} levels"]) from None
        if isinstance(data, dict):
            if _too_deep(data):
                raise InvalidRecord(source, [f"nested deeper than {MAX_DEPTH} levels"])
            return data
    return loads(raw, source, max_bytes)
