"""Where an artifact's folder lives: fanned out by the last two characters of its id.

    factory/artifacts/<b>/<id>/        b = the id's last two characters (`2a` for `fix-...-8c1f2a`)

Ids end in random hex digits, so the 256 folders `00`..`ff` fill evenly, as git's own
`objects/xx/` do. A commit rewrites the trees on the changed paths only: with one flat folder
of 10,000 artifacts every ledger commit wrote a new 0.6 MB `artifacts` tree; fanned out it
writes a 256-entry tree and a bucket of ~40. Ids, file names, bytes and hashes are the same
in both layouts, so chains and merges do not care where a folder sits.

Ledgers written before the fan-out keep their flat folders (`factory/artifacts/<id>/`): both
layouts are read, new artifacts are always fanned out, and `gptme-factory migrate` moves the
flat folders into their buckets in one commit. A flat folder is told from a bucket by its
intake (`intake.yaml`): a bucket has none.

Only the `Ledger` (store.py) calls this module; every other module asks the `Ledger` for a
folder (`artifact_dir`, `artifact_rel`). Plain os only: a warm `status` uses it.
"""

from __future__ import annotations

import os
from collections.abc import Container
from dataclasses import dataclass, field
from pathlib import Path

BUCKET_LEN = 2
ROOT_FILE = "intake.yaml"


def bucket(sid: str) -> str:
    """The fan-out folder of an id: its last two characters (`0` in front of a 1-char id)."""
    return sid[-BUCKET_LEN:].rjust(BUCKET_LEN, "0")


def fanned(sid: str) -> str:
    """`<bucket>/<id>`: the folder of a new artifact, relative to factory/artifacts."""
    return f"{bucket(sid)}/{sid}"


def is_bucket_name(name: str) -> bool:
    """True if `name`, an entry of factory/artifacts, may be a bucket (a flat folder has an intake)."""
    return len(name) == BUCKET_LEN and not name.startswith(".")


def folder_of(rel: str) -> str | None:
    """The artifact folder holding `rel` (a path relative to factory/artifacts), by its shape.

    `<b>/<id>/...` where `<b>` is the id's bucket is fanned out; `<id>/...` is flat; a path
    with no folder above it (a stray file) has none. No disk access: for paths in commits.
    """
    parts = rel.split("/")
    if len(parts) >= 3 and is_bucket_name(parts[0]) and bucket(parts[1]) == parts[0]:
        return f"{parts[0]}/{parts[1]}"
    return parts[0] if len(parts) >= 2 else None


def locate(base: Path, sid: str) -> str:
    """Where `sid`'s folder is, relative to `base`: fanned out, else flat, else where it goes."""
    fan = fanned(sid)
    if os.path.isdir(os.path.join(base, fan)):
        return fan
    if os.path.isfile(os.path.join(base, sid, ROOT_FILE)):
        return sid  # a ledger from before the fan-out
    return fan


@dataclass
class Listing:
    """The artifact folders under factory/artifacts, and what else is there."""

    folders: dict[str, str] = field(default_factory=dict)  # id -> folder relative to base
    flat: list[str] = field(default_factory=list)  # ids still in the old flat layout
    both: list[str] = field(default_factory=list)  # ids with a flat and a fanned-out folder
    strays: list[tuple[str, str]] = field(default_factory=list)  # (relative path, what it is)
    _by_folder: dict[str, str] | None = field(default=None, repr=False)

    def owner(self, rel: str) -> str | None:
        """The id whose folder holds `rel` (a path relative to factory/artifacts), if any."""
        if self._by_folder is None:
            self._by_folder = {folder: sid for sid, folder in self.folders.items()}
        first, _, rest = rel.partition("/")
        second = rest.partition("/")[0]
        return self._by_folder.get(f"{first}/{second}") or self._by_folder.get(first)


def entry_kind(entry: os.DirEntry[str]) -> str:
    """What a directory entry is, in words: symlink, directory, file or special file."""
    if entry.is_symlink():
        return "symlink"
    if entry.is_dir(follow_symlinks=False):
        return "directory"
    return "file" if entry.is_file(follow_symlinks=False) else "special file"


def scan(base: Path | str, buckets: Container[str] | None = None) -> Listing:
    """Every artifact folder in both layouts (dot entries are skipped), sorted by id.

    A folder counts by its place and its name only (a fanned-out one in the bucket its id
    names, a directory); whether it holds a valid intake is for the reader and `verify`.
    Anything else is a stray: `verify` reports it, everyone else ignores it. With `buckets`,
    only those buckets are read (every entry beside them still is): for a caller that knows
    nothing changed in the others.
    """
    out = Listing()
    fan: dict[str, str] = {}
    flat: dict[str, str] = {}
    try:
        with os.scandir(base) as it:
            top = sorted(it, key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return out
    for entry in top:
        name = entry.name
        if name.startswith("."):
            continue
        if not entry.is_dir(follow_symlinks=False):
            out.strays.append((name, entry_kind(entry)))
            continue
        if is_bucket_name(name) and not os.path.lexists(os.path.join(entry.path, ROOT_FILE)):
            if buckets is not None and name not in buckets:
                continue
            try:
                with os.scandir(entry.path) as it:
                    inner = sorted(it, key=lambda e: e.name)
            except OSError:
                out.strays.append((name, "unreadable directory"))
                continue
            for sub in inner:
                if sub.name.startswith("."):
                    continue
                rel = f"{name}/{sub.name}"
                if not sub.is_dir(follow_symlinks=False):
                    out.strays.append((rel, entry_kind(sub)))
                elif bucket(sub.name) != name:
                    out.strays.append((rel, f"directory in the wrong bucket (its id belongs "
                                            f"in {bucket(sub.name)}/)"))
                else:
                    fan[sub.name] = rel
            continue
        flat[name] = name
    for sid in sorted(fan.keys() & flat.keys()):
        out.both.append(sid)
    for sid in sorted(fan.keys() | flat.keys()):
        out.folders[sid] = fan.get(sid) or flat[sid]
    out.flat = sorted(flat.keys() - fan.keys())
    return out
