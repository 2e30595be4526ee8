"""The cell watchdog: a cell's bounds hold even when nobody runs `run` or `collect`.

`spawn` starts one detached watchdog process per cell (`python -m gptme_factory.cells.watchdog
BRAIN CELL`). It polls the cell every couple of seconds and, once the cell is past its
wall-clock budget or over its token/cost budget by more than a margin, stops it and records
`cell_finished` (timed_out / over_budget) through the reaper — the same code `collect` uses.
The margin leaves an attentive foreman (`run`, `collect`) the first move, so the watchdog
only acts when nobody else is watching. It never runs a gate and never touches a cell that
ends by itself (that is `collect`'s job, which also runs the gate), and it exits as soon as
its cell is reaped, its process ends, or the ledger is gone. On a shared ledger it renews
the cell's claim while the cell lives (line/claims.py: at most once per half lease).
Set GPTME_FACTORY_NO_WATCHDOG=1 to spawn without one.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

DEFAULT_MARGIN_S = 15.0
POLL_S = 2.0


def launch(brain: Path, cell: str) -> int | None:
    """Start the detached watchdog of `cell`; its pid (None when disabled)."""
    if os.environ.get("GPTME_FACTORY_NO_WATCHDOG"):
        return None
    # A shell starts the watchdog in the background and exits at once: the watchdog is
    # re-parented to init (no zombie, no child left for our process to wait for), and lives
    # in its own session, so it outlives the command that spawned the cell.
    proc = subprocess.run(
        ["sh", "-c", '"$0" -m gptme_factory.cells.watchdog "$1" "$2" </dev/null >/dev/null 2>&1 & '
                     'echo $!', sys.executable, str(brain), cell],
        capture_output=True, text=True, start_new_session=True, check=False,
    )
    out = proc.stdout.strip()
    return int(out) if proc.returncode == 0 and out.isdigit() else None


def _margin() -> float:
    try:
        return max(0.0, float(os.environ.get("GPTME_FACTORY_WATCHDOG_MARGIN", DEFAULT_MARGIN_S)))
    except ValueError:
        return DEFAULT_MARGIN_S


def watch(brain: Path, cell: str, *, poll_s: float = POLL_S) -> str:
    """Watch `cell` until it ends; returns why the watch ended."""
    from ..errors import FactoryError
    from ..ledger.store import Ledger
    from . import state as cellstate
    from .backends import get_backend
    from .reaper import observation, reap, request_stop

    def renew(ledger: Ledger, cell: str) -> None:
        # The holder is alive while its watchdog is: keep its claim (a shared ledger's).
        from ..line.claims import renew as renew_claim

        try:
            renew_claim(ledger, cell)
        except FactoryError:
            pass  # offline, or taken over: the cell learns it on its own next renewal

    margin = _margin()
    over_since: float | None = None
    stopped_here = False
    while True:
        try:
            ledger = Ledger.open(brain)
            rec = cellstate.load(ledger.runtime_dir, cell)
        except (FactoryError, OSError):
            return "the ledger is gone"
        if rec is None:
            return "reaped"
        backend = get_backend(rec.backend)
        alive = backend.alive(rec)
        if rec.stop is not None and not stopped_here:
            return "stopped by a foreman: left to it"
        if rec.stop is not None and not alive:
            reap(ledger, rec, advance=False)  # the stop we asked for: record it
            return f"stopped: {rec.stop.get('outcome')}"
        if not alive:
            return "exited by itself: left to `collect`"
        renew(ledger, cell)
        if rec.stop is None:
            obs = observation(ledger, rec, datetime.now(timezone.utc))
            if obs.time_left_s <= -margin:
                why = (f"ran {obs.elapsed_s:.0f} s, past its {rec.timeout_s:g} s wall-clock "
                       "budget (stopped by its watchdog)")
                request_stop(ledger, rec, "timed_out", why)
                stopped_here = True
            elif obs.over_budget:
                over_since = over_since or time.monotonic()
                if time.monotonic() - over_since >= margin:
                    request_stop(ledger, rec, "over_budget",
                                 f"{obs.over_budget} (stopped by its watchdog)")
                    stopped_here = True
            else:
                over_since = None
        time.sleep(poll_s)


def main(argv: list[str]) -> int:
    """Entry point of the detached process."""
    if len(argv) != 2:
        print("usage: python -m gptme_factory.cells.watchdog BRAIN CELL", file=sys.stderr)
        return 2
    try:
        watch(Path(argv[0]), argv[1])
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
