"""`gptme-factory migrate`: move an older ledger's flat artifact folders into their buckets.

Ledgers made before the fan-out (layout.py) hold `factory/artifacts/<id>/`; this moves every
such folder to `factory/artifacts/<bucket>/<id>/` in one commit. Nothing inside a folder
changes — names, bytes and so hashes and chains stay as they are, and git sees each folder's
tree id unchanged — so `verify` is as clean after as before, and the history reads the same
(`log` finds commits by their trailers, wherever the folder was). An id that has both a flat
and a fanned-out folder (an old clone kept writing flat, then merged) is joined into one.

It refuses while anything under factory/artifacts is uncommitted (a change or a stray file
would be moved and staged with it): commit or remove it first. Idempotent: a fanned-out
ledger has nothing to move.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import UsageError
from .layout import fanned
from .store import INTAKE_FILE, Ledger


@dataclass
class Migration:
    """What `migrate` moved (or, with `dry_run`, would move) and the commit that did it."""

    moves: dict[str, str] = field(default_factory=dict)  # id -> its new folder under artifacts/
    commit: str | None = None


def plan(ledger: Ledger) -> dict[str, str]:
    """Every flat artifact folder and where it goes (id -> `<bucket>/<id>`)."""
    listing = ledger.artifact_listing()
    flat = [sid for sid in listing.flat  # a flat folder without an intake is a stray
            if (ledger.artifacts_dir / sid / INTAKE_FILE).is_file()]
    return {sid: fanned(sid) for sid in sorted({*flat, *listing.both})}


def migrate(ledger: Ledger, *, dry_run: bool = False) -> Migration:
    """Move every flat artifact folder into its bucket, in one commit."""
    with ledger.locked():
        moves = plan(ledger)
        result = Migration(moves)
        if dry_run or not moves:
            return result
        ledger.refuse_busy_git()
        base = f"{ledger.rel}/artifacts"
        dirty = [p for p, _ in ledger.repo.changed_against_head([base])]
        dirty += ledger.repo.untracked([base])
        if dirty:
            raise UsageError(
                f"{len(dirty)} uncommitted path(s) under {base}/ (first: {sorted(dirty)[0]}): "
                "they would be moved and staged with the folders; commit or remove them, then "
                "run `gptme-factory migrate` again; nothing was moved")
        noun = "folder" if len(moves) == 1 else "folders"
        message = (f"factory: move {len(moves)} artifact {noun} into id buckets (migrate)\n\n"
                   f"{base}/<id>/ -> {base}/<last 2 of id>/<id>/; no file changes.\n\n"
                   "Factory-Event: migrate\n")
        result.commit = ledger.repo.commit_moves(base, moves, message)
        return result
