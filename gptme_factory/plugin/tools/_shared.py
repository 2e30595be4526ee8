"""Tool functions for a ledger shared between clones: sync, and settling a fork.

Thin adapters over ledger/sync.py and line/forks.py; see `_functions` for the full list.
"""

from __future__ import annotations

from ._base import adapter, open_ledger
from ._render import Reply


@adapter
def factory_sync() -> str:
    """Sync the ledger with the brain's git remote: take in other clones' events, push ours."""
    from ...ledger.sync import sync

    report = sync(open_ledger())
    return Reply("\n".join(report.lines()))


@adapter
def factory_resolve(target: str, keep: str | None = None, reason: str = "") -> str:
    """Settle a fork in an artifact (or "line:NAME"): without keep, list its branches; with keep (an event hash), keep that branch."""
    from ...line.forks import forks, resolve
    from ...views.present import describe_event

    ledger = open_ledger()
    if keep is None:
        found = forks(ledger, target)
        if not found:
            return f"{target}: no unresolved fork"
        lines = []
        for f in found:
            lines.append(f"fork in {f.target}: {len(f.branches)} branches")
            lines += [f"- keep={b.head.digest[:12]!r}: {describe_event(b.head)}, "
                      f"{len(b.events)} event(s)" for b in f.branches]
        lines.append(f"Pick one: factory_resolve({found[0].target!r}, keep=HASH, reason=...)")
        return Reply("\n".join(lines))
    stored = resolve(ledger, target, keep, reason=reason)
    dropped = sum(len(c.discarded) for c in stored.event.choices)
    return Reply(f"resolved: {stored.path}; {dropped} other branch(es) stay in the ledger, "
                 "discarded; factory_verify() is clean again", path=stored.path)
