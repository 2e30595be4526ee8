"""`status --watch`: the board refreshed in place with rich, until Ctrl-C."""

from __future__ import annotations

import time
from collections.abc import Callable


def watch_board(render: Callable[[], str], interval: float = 1.0) -> None:
    """Show `render()` and refresh it every `interval` seconds until interrupted."""
    from rich.console import Console
    from rich.live import Live
    from rich.text import Text

    console = Console()

    def frame() -> Text:
        stamp = time.strftime("%H:%M:%S")
        return Text(f"{render()}\n\n{stamp}  refreshing every {interval:g}s — Ctrl-C to stop")

    try:
        if not console.is_terminal:  # a pipe or a log: print each frame, no cursor tricks
            while True:
                console.print(frame(), highlight=False)
                console.file.flush()
                time.sleep(max(0.1, interval))
        with Live(frame(), console=console, refresh_per_second=4, screen=False) as live:
            while True:
                time.sleep(max(0.1, interval))
                live.update(frame())
    except KeyboardInterrupt:
        pass
