"""The listing of artifact folders, kept between status passes by the marks of its directories.

Listing every artifact folder means reading every bucket and shelf: 4,353 directories at
10,000 artifacts and at 30,000 alike, ~0.1-0.4 s on this machine's overlay filesystem while
git `lstat`s every ledger file beside it. A folder that joins, leaves or is renamed moves
its shelf directory's mtime and ctime; a shelf, its bucket's; a bucket, the top's. So a pass
without a watcher keeps the listing with the marks (ledger/dirmarks.py) of the top, the
buckets and the shelves as they were before it was read, and the next pass `lstat`s those
directories (one each), lists again only the places whose directory moved
(`Listing.merged`), and keeps the result. A directory marked within the filesystem's racy
window has no mark and is listed again next time. What is inside an artifact folder is the
status cache's to check (its folder marks and git's index), not this file's.

Kept in factory/.runtime/status-listing.marshal (gitignored; Python's `marshal` format, as
the status cache's shards: only this code reads it, and a file that does not load is no
listing). With a watcher, its state holds the listing instead (cachewatch.py).
"""

from __future__ import annotations

import marshal
from typing import TYPE_CHECKING

from ..ledger import dirmarks
from ..ledger.layout import Listing, touched
from ..ledger.runtime import write_bytes

if TYPE_CHECKING:
    from ..ledger.store import Ledger

FILE = "status-listing.marshal"
VERSION = 1
DEPTH = 2  # below factory/artifacts: buckets (1) and shelves (2), not the artifact folders


def current(ledger: Ledger) -> Listing:
    """Every artifact folder now: the kept listing with the places that moved listed again."""
    base = f"{ledger.rel}/artifacts"
    root, scratch = str(ledger.repo.root), str(ledger.runtime_dir)
    kept = _load(ledger, base)
    if kept is None:
        snap = dirmarks.take(root, [base], scratch, DEPTH)  # marked before anything is read
        listing = ledger.artifact_listing()
        _save(ledger, base, listing, snap)
        return listing
    listing, old = kept
    moved = dirmarks.changes(root, old, [base], scratch, DEPTH)
    if not moved.dirs:
        return listing
    cut = len(base) + 1  # (the top itself: every entry of it is read by any listing)
    _, reread, _ = touched(p[cut:] for p in moved.dirs if p.startswith(base + "/"))
    listing = listing.merged(ledger.artifact_listing(reread), reread)
    _save(ledger, base, listing, moved.now)
    return listing


def _load(ledger: Ledger, base: str) -> tuple[Listing, dirmarks.Snapshot] | None:
    try:
        data = marshal.loads((ledger.runtime_dir / FILE).read_bytes())
        if data["version"] != VERSION or data["base"] != base:
            return None
        snap = dirmarks.Snapshot.from_json({"dirs": data["dirs"], "files": {}})
        return (Listing.from_json(data["listing"]), snap) if snap is not None else None
    except (OSError, ValueError, EOFError, KeyError, TypeError, AttributeError):
        return None


def _save(ledger: Ledger, base: str, listing: Listing, snap: dirmarks.Snapshot) -> None:
    data = {"version": VERSION, "base": base, "listing": listing.to_json(), "dirs": snap.dirs}
    try:
        write_bytes(ledger.runtime_dir / FILE, marshal.dumps(data))
    except (OSError, ValueError):
        pass  # a read-only checkout lists every place each time
