"""The `factory` tool: gptme's way into the factory ledger.

Two doors to the same adapters (`_functions`):

- Python functions (`factory_intake`, `factory_status`, ...) that the agent calls in an
  `ipython` block: the main route with markdown/XML tool formats.
- `execute`, for a ```factory block or a native tool call (gptme sends only runnable tools
  to models with native tool calling): a YAML/JSON payload `{"action": "status", ...}` whose
  other keys are the function's arguments.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Generator, Mapping
from typing import Any

from gptme.message import Message
from gptme.tools.base import Parameter, ToolSpec

from ._functions import FUNCTIONS
from ._render import Reply

ACTIONS: dict[str, Callable[..., str]] = {
    f.__name__.removeprefix("factory_"): f for f in FUNCTIONS
}


def _parse_payload(text: str) -> dict[str, Any]:
    from ...errors import InvalidRecord
    from ...ledger.yamlio import loads_any

    text = text.strip()
    if not text:
        return {}
    try:
        return loads_any(text.encode("utf-8"), "factory payload")
    except InvalidRecord as exc:
        raise ValueError("; ".join(exc.problems)) from None


def _usage(action: str, func: Callable[..., str]) -> str:
    params = inspect.signature(func).parameters.values()
    needed = [p.name for p in params if p.default is inspect.Parameter.empty]
    optional = [p.name for p in params if p.default is not inspect.Parameter.empty]
    return (f"action {action} takes {', '.join(needed) or 'no required arguments'}"
            + (f" (optional: {', '.join(optional)})" if optional else ""))


def dispatch(payload: Mapping[str, Any]) -> str:
    """Run one action from a payload `{"action": NAME, **arguments}`; always returns text."""
    data = dict(payload)
    action = str(data.pop("action", "") or "").strip().removeprefix("factory_")
    if action not in ACTIONS:
        known = ", ".join(ACTIONS)
        return Reply(f"error: unknown action {action!r}: use one of {known}", ok=False)
    func = ACTIONS[action]
    sig = inspect.signature(func)
    unknown = sorted(set(data) - set(sig.parameters))
    if unknown:
        return Reply(f"error: unknown argument(s) {', '.join(unknown)}: {_usage(action, func)}",
                     ok=False)
    missing = [n for n, p in sig.parameters.items()
               if p.default is inspect.Parameter.empty and n not in data]
    if missing:
        return Reply(f"error: missing {', '.join(missing)}: {_usage(action, func)}", ok=False)
    return func(**data)


def execute(
    code: str | None,
    args: list[str] | None,
    kwargs: dict[str, Any] | None,
) -> Generator[Message, None, None]:
    """Run a ```factory block (YAML/JSON payload) or a native tool call."""
    payload: dict[str, Any] = {}
    try:
        if kwargs:
            payload = {k: v for k, v in kwargs.items() if k != "payload" and v not in (None, "")}
            extra = kwargs.get("payload")
            if isinstance(extra, Mapping):
                payload.update(extra)
            elif isinstance(extra, str) and extra.strip():
                payload.update(_parse_payload(extra))
        if code and code.strip():
            payload.update(_parse_payload(code))
        if args and args[0] and "action" not in payload:
            payload["action"] = args[0]
    except ValueError as exc:
        yield Message("system", f"error: the factory payload is not valid YAML/JSON: {exc}")
        return
    if not isinstance(payload, dict):
        yield Message("system", "error: the factory payload must be a mapping with an action")
        return
    yield Message("system", dispatch(payload))


instructions = """
The factory moves one artifact at a time through a production line (scout, build, verify,
package, measure), each stage done by a bounded cell that hands over a typed, validated
handoff; every event is a commit in this repo's ledger (factory/).

Call the factory functions in an ipython block; each returns a short text saying what
happened and what to do next. Errors come back as "error: ..." sentences.
Procedure (the factory-run skill has the details): factory_status() to see the board;
factory_intake(...) only for work with real demand and named consumers; factory_run(id) or,
stage by stage, factory_spawn(id) / factory_collect(id) / factory_advance(id);
factory_close(id, successor=... or terminal=...) when the line is complete.

Without ipython, use a factory block whose content is YAML with an action, e.g.
action: status
""".strip()


def examples(tool_format: str) -> str:
    """Examples in the tool prompt."""
    return """
> User: what is the factory working on?
> Assistant:
```ipython
print(factory_status())
```
> User: record the demand from issue 42: login times out for erik
> Assistant:
```ipython
print(factory_intake("Fix login timeout", demand="gh:acme/app#42", consumers=["erik"],
                     acceptance=["login succeeds under 2 s"]))
```
> Assistant: The same through a factory block:
```factory
action: show
artifact: fix-login-timeout-8c1f
```
""".strip()


tool = ToolSpec(
    name="factory",
    desc="Run the software factory: intake demand, spawn bounded cells, submit typed handoffs, "
    "advance gates, close artifacts (ledger in git).",
    instructions=instructions,
    examples=examples,
    functions=FUNCTIONS,
    execute=execute,
    block_types=["factory"],
    parameters=[
        Parameter(name="action", type="string", required=True,
                  description="One of: " + ", ".join(ACTIONS)),
        Parameter(name="artifact", type="string", description="Artifact id (or prefix)."),
        Parameter(name="cell", type="string", description="Cell id (from a brief)."),
        Parameter(name="payload", type="string",
                  description="YAML/JSON mapping of the action's other arguments, e.g. "
                  "title/demand/consumers/acceptance for intake, handoff for submit."),
    ],
)

__all__ = ["tool"]
