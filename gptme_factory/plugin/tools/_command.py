"""The `/factory` command for the human in the chat: `/factory [status|board|show ID|verify]`.

`/factory board` prints the URL of the ledger's web board, starting it in the background
first when none runs (`gptme-factory board --stop` ends it).

The answer is added to the conversation as a system message, so the agent sees what the
person saw; the command line itself is removed (like gptme's own commands).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from gptme.message import Message

USAGE = ("usage: /factory [status [all]] | /factory board | /factory show ARTIFACT "
         "| /factory log ARTIFACT | /factory verify")


def board_url() -> str:
    """The board's URL, after starting it in the background if it is not running."""
    from ...errors import FactoryError
    from ...web.instance import current, start_detached
    from ._base import open_ledger

    try:
        ledger = open_ledger()
        running = current(ledger)
        rec = running or start_detached(ledger)
    except FactoryError as exc:
        return f"error: {exc}"
    how = "already running" if running else "started in the background"
    return (f"The factory board: {rec['url']} (read-only, {how}; "
            "stop it with `gptme-factory board --stop`)")


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
    if sub == "board" and not rest:
        return board_url()
    return USAGE


def factory_command(ctx: Any) -> Generator[Message, None, None]:
    """The handler gptme calls for `/factory`."""
    ctx.manager.undo(1, quiet=True)
    yield Message("system", run_factory_command(list(ctx.args)))


def complete_factory(partial: str, previous: list[str]) -> list[tuple[str, str]]:
    """Tab completion for `/factory`."""
    if previous:
        return []
    options = [("status", "artifacts and cells"), ("board", "the web board's URL"),
               ("show", "one artifact"), ("log", "audit trail"), ("verify", "ledger integrity")]
    return [(o, d) for o, d in options if o.startswith(partial)]
