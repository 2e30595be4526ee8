"""The `/factory` command for the human in the chat: `/factory [status|show ID|verify|help]`.

The answer is added to the conversation as a system message, so the agent sees what the
person saw; the command line itself is removed (like gptme's own commands).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from gptme.message import Message

USAGE = ("usage: /factory [status [all]] | /factory show ARTIFACT | /factory log ARTIFACT "
         "| /factory verify")


def run_factory_command(args: list[str]) -> str:
    """The text `/factory ARGS` answers with."""
    from . import _functions as f

    sub, rest = (args[0], args[1:]) if args else ("status", [])
    if sub == "status":
        return f.factory_status(include_final=bool(rest and rest[0] == "all"))
    if sub in ("show", "log") and len(rest) == 1:
        return f.factory_show(rest[0]) if sub == "show" else f.factory_log(rest[0])
    if sub == "verify" and not rest:
        return f.factory_verify()
    return USAGE


def factory_command(ctx: Any) -> Generator[Message, None, None]:
    """The handler gptme calls for `/factory`."""
    ctx.manager.undo(1, quiet=True)
    yield Message("system", run_factory_command(list(ctx.args)))


def complete_factory(partial: str, previous: list[str]) -> list[tuple[str, str]]:
    """Tab completion for `/factory`."""
    if previous:
        return []
    options = [("status", "the board"), ("show", "one artifact"), ("log", "audit trail"),
               ("verify", "ledger integrity")]
    return [(o, d) for o, d in options if o.startswith(partial)]
