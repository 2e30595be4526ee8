"""`gptme-factory migrate`: move an older ledger's artifact folders into their shelves.

Ledgers made before the fan-out (layout.py) hold `factory/artifacts/<id>/`, those made before
the shelves `factory/artifacts/<bucket>/<id>/`; this moves every such folder to
`factory/artifacts/<bucket>/<shelf>/<id>/` in one commit. Nothing inside a folder changes —
names, bytes and so hashes and chains stay as they are, and git sees each folder's tree id
unchanged — so `verify` is as clean after as before, and the history reads the same (`log`
finds commits by their trailers, wherever the folder was). An id with folders in two layouts
(an old clone kept writing where it was, then merged) is joined into one.

It refuses while anything under factory/artifacts is uncommitted (a change or a stray file
would be moved and staged with it): commit or remove it first. Idempotent: a shelved
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

    moves: dict[str, str] = field(default_factory=dict)  # old folder -> new, under artifacts/
    commit: str | None = None


def plan(ledger: Ledger) -> dict[str, str]:
    """Every flat or shallow artifact folder and where it goes (`<id>` -> `<b>/<s>/<id>`)."""
    listing = ledger.artifact_listing()
    moves: dict[str, str] = {}
    both = set(listing.both)
    for sid, folders in listing.older.items():
        for folder in folders:  # a flat folder without an intake is a stray, unless joined
            if "/" in folder or sid in both or (ledger.artifacts_dir / folder / INTAKE_FILE).is_file():
                moves[folder] = fanned(sid)
    return dict(sorted(moves.items()))


def migrate(ledger: Ledger, *, dry_run: bool = False) -> Migration:
    """Move every flat or shallow artifact folder into its shelf, in one commit."""
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
        message = (f"factory: move {len(moves)} artifact {noun} into id shelves (migrate)\n\n"
                   f"{base}/[<last 2 of id>/]<id>/ -> {base}/<last 2 of id>/<the one before>/"
                   "<id>/; no file changes.\n\n"
                   "Factory-Event: migrate\n")
        result.commit = ledger.repo.commit_moves(base, moves, message)
        return result
