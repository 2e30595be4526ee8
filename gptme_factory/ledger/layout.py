"""Where an artifact's folder lives: fanned out by the last three characters of its id.

    factory/artifacts/<b>/<s>/<id>/    b = the id's last two characters, s = the one before
                                       (`2a/f/` for `fix-...-8c1f2a`)

Ids end in random hex digits, so the 256 buckets `00`..`ff` and the 16 shelves in each fill
evenly, as git's own `objects/xx/` do. A commit rewrites the trees on the changed path only:
the 256-entry `artifacts` tree, a bucket of at most 16 shelves and a shelf of the ids that
share those three characters (~2 at 10,000 artifacts, ~7 at 30,000, ~24 at 100,000) — so what
one event writes hardly grows with the ledger. With one bucket level (`<b>/<id>/`, the layout
before this one) the bucket grew with it: ~117 entries at 30,000 artifacts. Ids, file names,
bytes and hashes are the same in every layout, so chains and merges do not care where a folder
sits.

Older ledgers keep their folders where they are: flat (`factory/artifacts/<id>/`, before any
fan-out) and shallow (`factory/artifacts/<b>/<id>/`, one bucket level). All three layouts are
read, new artifacts always go in a shelf, and `gptme-factory migrate` moves the older folders
into their shelves in one commit. An artifact folder is told from a bucket or a shelf by its
intake (`intake.yaml`): buckets and shelves have none.

Only the `Ledger` (store.py) calls this module; every other module asks the `Ledger` for a
folder (`artifact_dir`, `artifact_rel`). Plain os only: a warm `status` uses it.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BUCKET_LEN = 2
ROOT_FILE = "intake.yaml"


def bucket(sid: str) -> str:
    """The bucket of an id: its last two characters (`0` in front of a 1-char id)."""
    return sid[-BUCKET_LEN:].rjust(BUCKET_LEN, "0")


def shelf(sid: str) -> str:
    """The shelf of an id in its bucket: the character before the bucket's (`0` if none)."""
    return sid[-BUCKET_LEN - 1] if len(sid) > BUCKET_LEN else "0"


def fanned(sid: str) -> str:
    """`<bucket>/<shelf>/<id>`: the folder of a new artifact, relative to factory/artifacts."""
    return f"{bucket(sid)}/{shelf(sid)}/{sid}"


def shallow(sid: str) -> str:
    """`<bucket>/<id>`: where the layout before the shelves put an artifact's folder."""
    return f"{bucket(sid)}/{sid}"


def is_bucket_name(name: str) -> bool:
    """True if `name`, an entry of factory/artifacts, may be a bucket (a flat folder has an intake)."""
    return len(name) == BUCKET_LEN and not name.startswith(".")


def is_shelf_name(name: str) -> bool:
    """True if `name`, an entry of a bucket, may be a shelf (a shallow folder has an intake)."""
    return len(name) == 1 and name != "."


def group_of(folder: str) -> str:
    """The bucket an artifact folder sits in, "" for a flat one: the tree that holds it all."""
    head, sep, _ = folder.partition("/")
    return head if sep else ""


def folder_of(rel: str) -> str | None:
    """The artifact folder holding `rel` (a path relative to factory/artifacts), by its shape.

    `<b>/<s>/<id>/...` where `<b>` and `<s>` are the id's bucket and shelf is fanned out,
    `<b>/<id>/...` shallow, `<id>/...` flat; a path with no folder above it (a stray file)
    has none. No disk access: for paths in commits.
    """
    parts = rel.split("/")
    if len(parts) >= 3 and is_bucket_name(parts[0]):
        if len(parts) >= 4 and bucket(parts[2]) == parts[0] and shelf(parts[2]) == parts[1] \
                and is_shelf_name(parts[1]):
            return f"{parts[0]}/{parts[1]}/{parts[2]}"
        if bucket(parts[1]) == parts[0]:
            return f"{parts[0]}/{parts[1]}"
    return parts[0] if len(parts) >= 2 else None


def locate(base: Path, sid: str) -> str:
    """Where `sid`'s folder is, relative to `base`: in its shelf, shallow, flat, or where it goes."""
    fan = fanned(sid)
    if os.path.isdir(os.path.join(base, fan)):
        return fan
    for old in (shallow(sid), sid):  # a ledger from before the shelves, or before the fan-out
        if os.path.isfile(os.path.join(base, old, ROOT_FILE)):
            return old
    return fan


@dataclass
class Listing:
    """The artifact folders under factory/artifacts, and what else is there."""

    folders: dict[str, str] = field(default_factory=dict)  # id -> folder relative to base
    flat: list[str] = field(default_factory=list)  # ids still in the flat layout only
    shallow: list[str] = field(default_factory=list)  # ids still in a bucket, not a shelf
    both: list[str] = field(default_factory=list)  # ids with folders in two layouts or more
    older: dict[str, list[str]] = field(default_factory=dict)  # id -> its flat/shallow folders
    strays: list[tuple[str, str]] = field(default_factory=list)  # (relative path, what it is)
    _by_folder: dict[str, str] | None = field(default=None, repr=False)

    def owner(self, rel: str) -> str | None:
        """The id whose folder holds `rel` (a path relative to factory/artifacts), if any."""
        if self._by_folder is None:
            self._by_folder = {folder: sid for sid, folder in self.folders.items()}
        parts = rel.split("/", 3)
        for depth in (3, 2, 1):
            if len(parts) >= depth:
                sid = self._by_folder.get("/".join(parts[:depth]))
                if sid is not None:
                    return sid
        return None

    def to_json(self) -> dict[str, Any]:
        """The listing as plain JSON data (`from_json` reads it back)."""
        return {"folders": self.folders, "flat": self.flat, "shallow": self.shallow,
                "both": self.both, "older": self.older,
                "strays": [list(s) for s in self.strays]}

    @classmethod
    def from_json(cls, data: Any) -> Listing:
        """The listing `to_json` wrote; TypeError/KeyError/ValueError if `data` is not one."""
        folders, older = data["folders"], data["older"]
        lists = [data[k] for k in ("flat", "shallow", "both")]
        if not (isinstance(folders, dict) and isinstance(older, dict)
                and all(isinstance(x, list) for x in lists)
                and all(isinstance(f, str) for f in folders.values())
                and all(isinstance(f, list) for f in older.values())):
            raise TypeError("not a listing")
        return cls(folders=folders, flat=lists[0], shallow=lists[1], both=lists[2], older=older,
                   strays=[(str(rel), str(what)) for rel, what in data["strays"]])

    def merged(self, part: Listing, only: Collection[str]) -> Listing:
        """The listing, with the places `part` read (`scan(base, only)`) as it found them.

        What `part` read — every flat folder, the buckets in `only` whole, its shelves — is
        taken from it; every other folder and stray from this listing.
        """
        buckets = {p for p in only if "/" not in p}

        def read(place: str) -> bool:  # a place (`""`, `b`, `b/s`) that `part` read
            return not place or place in only or place.partition("/")[0] in buckets

        out = Listing(strays=[s for s in self.strays if not read(s[0].rpartition("/")[0])
                              and not (s[1] == "unreadable directory" and read(s[0]))])
        out.strays += part.strays
        # Placed again: the ids with a folder in a place `part` read, every id with a flat or
        # shallow folder (all in `older`) and every id `part` found. Every other id has one
        # folder, in a shelf nobody read again, and keeps it as it is (all but a few of them
        # when a shelf or two changed: no per-id work for those).
        under = tuple(f"{p}/" for p in only)
        again = {sid for sid, folder in self.folders.items() if folder.startswith(under)}
        again.update(self.older, part.folders)
        found: dict[str, list[str]] = {}
        for sid in again:
            mine = [self.folders[sid], *self.older.get(sid, [])] if sid in self.folders else []
            theirs = [part.folders[sid], *part.older.get(sid, [])] if sid in part.folders else []
            where = [f for f in dict.fromkeys(mine) if not read(f.rpartition("/")[0])]
            where += [f for f in dict.fromkeys(theirs) if read(f.rpartition("/")[0])]
            if where:
                found[sid] = where
        folders = {sid: folder for sid, folder in self.folders.items() if sid not in again} \
            if again else dict(self.folders)
        for sid in sorted(found):
            _place(out, sid, found[sid])
        folders.update(out.folders)
        out.folders = dict(sorted(folders.items())) if found else folders  # in id order
        out.strays.sort()
        return out


def entry_kind(entry: os.DirEntry[str]) -> str:
    """What a directory entry is, in words: symlink, directory, file or special file."""
    if entry.is_symlink():
        return "symlink"
    if entry.is_dir(follow_symlinks=False):
        return "directory"
    return "file" if entry.is_file(follow_symlinks=False) else "special file"


def _entries(path: str) -> list[os.DirEntry[str]] | None:
    try:
        with os.scandir(path) as it:
            return sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
    except OSError:
        return None


def _is_bucket(entry: os.DirEntry[str]) -> bool:
    """A bucket: a directory with a bucket's name and no intake (a flat 2-char id has one)."""
    return is_bucket_name(entry.name) and entry.is_dir(follow_symlinks=False) \
        and not os.path.lexists(os.path.join(entry.path, ROOT_FILE))


def _is_shelf(b: str, s: str, path: str) -> bool:
    """Directory `s` of bucket `b` is a shelf: a 1-char name, and not a 1-char id's folder.

    Only an id `s` could have a shallow folder of that name in `b` (`0f/f/`); its intake
    tells the two apart.
    """
    return is_shelf_name(s) and (bucket(s) != b
                                 or not os.path.lexists(os.path.join(path, ROOT_FILE)))


def place_of(folder: str) -> str:
    """The place `scan(only=...)` names for an artifact folder: its shelf, bucket or "".

    `b/s` for a folder in a shelf, `b` for a shallow one, "" for a flat one (the top is
    always read).
    """
    return folder.rpartition("/")[0]


def scan(base: Path | str, only: Collection[str] | None = None) -> Listing:
    """Every artifact folder in all three layouts (dot entries are skipped), sorted by id.

    A folder counts by its place and its name only (a fanned-out one in the shelf its id
    names, a shallow one in its bucket, a directory); whether it holds a valid intake is for
    the reader and `verify`. Anything else is a stray: `verify` reports it, everyone else
    ignores it. With `only`, only those places are read: a bucket (`2a`) whole, a shelf
    (`2a/f`) alone (every entry of the top still is) — for a caller that knows nothing
    changed in the others.
    """
    out = Listing()
    found: dict[str, list[str]] = {}  # id -> its folders, the fanned-out one first
    top = _entries(str(base))
    if top is None:
        return out
    shelves: dict[str, list[str]] = {}  # bucket -> the shelves of it to read alone
    for place in only or ():
        b, sep, s = place.partition("/")
        if sep:
            shelves.setdefault(b, []).append(s)
    for entry in top:
        name = entry.name
        if not entry.is_dir(follow_symlinks=False):
            out.strays.append((name, entry_kind(entry)))
            continue
        if not _is_bucket(entry):
            found.setdefault(name, []).append(name)
            continue
        if only is not None and name not in only:
            for s in sorted(shelves.get(name, ())):
                path = os.path.join(entry.path, s)
                if os.path.isdir(path) and not os.path.islink(path) and _is_shelf(name, s, path):
                    _scan_shelf(path, f"{name}/{s}", name, out, found)
            continue
        inner = _entries(entry.path)
        if inner is None:
            out.strays.append((name, "unreadable directory"))
            continue
        for sub in inner:
            rel = f"{name}/{sub.name}"
            if not sub.is_dir(follow_symlinks=False):
                out.strays.append((rel, entry_kind(sub)))
            elif _is_shelf(name, sub.name, sub.path):
                _scan_shelf(sub.path, rel, name, out, found)
            elif bucket(sub.name) != name:
                out.strays.append((rel, f"directory in the wrong bucket (its id belongs "
                                        f"in {bucket(sub.name)}/{shelf(sub.name)}/)"))
            else:
                found.setdefault(sub.name, []).append(rel)
    for sid in sorted(found):
        _place(out, sid, found[sid])
    return out


def _place(out: Listing, sid: str, folders: list[str]) -> None:
    """Enter id `sid`, found in `folders` (one per layout it is in), into `out`."""
    where = sorted(folders, key=lambda f: -f.count("/"))  # deepest first
    out.folders[sid] = where[0]
    old = [f for f in where if f.count("/") < 2]
    if old:
        out.older[sid] = old
    if len(where) > 1:
        out.both.append(sid)
    elif "/" not in where[0]:
        out.flat.append(sid)
    elif where[0].count("/") == 1:
        out.shallow.append(sid)


def _scan_shelf(path: str, rel: str, name: str, out: Listing,
                found: dict[str, list[str]]) -> None:
    inner = _entries(path)
    if inner is None:
        out.strays.append((rel, "unreadable directory"))
        return
    for sub in inner:
        where = f"{rel}/{sub.name}"
        if not sub.is_dir(follow_symlinks=False):
            out.strays.append((where, entry_kind(sub)))
        elif bucket(sub.name) != name or shelf(sub.name) != rel[-1]:
            out.strays.append((where, f"directory in the wrong shelf (its id belongs "
                                      f"in {bucket(sub.name)}/{shelf(sub.name)}/)"))
        else:
            found.setdefault(sub.name, []).append(where)


def touched(paths: Iterable[str]) -> tuple[set[str], set[str], set[str]]:
    """(ids, places to list, folders) that `paths` (relative to factory/artifacts) may touch.

    By their shape only, so a path that is gone counts too (a watcher's or a commit's): ids
    of the artifact folders holding a path, or that a path is; places to list again (`scan`'s
    `only`): the shelf (`b/s`) where a folder joined or left, the bucket (`b`) where something
    changed beside its shelves, and a flat folder's id's bucket, for an id in two layouts;
    folders: the artifact folders (and stray paths) to compare with HEAD.
    """
    ids: set[str] = set()
    reread: set[str] = set()
    places: set[str] = set()
    for path in paths:
        parts = path.split("/")
        if len(parts) >= 2 and is_bucket_name(parts[0]):
            b, second = parts[0], parts[1]
            if len(parts) >= 3 and is_shelf_name(second) \
                    and bucket(parts[2]) == b and shelf(parts[2]) == second:
                ids.add(parts[2])  # in a shelf: the layout of today
                reread.add(f"{b}/{second}")
                places.add(f"{b}/{second}/{parts[2]}")
                continue
            if bucket(second) == b:
                ids.add(second)  # a shallow folder (or a 1-char id's shelf: both are read)
                reread.add(b)
                places.add(f"{b}/{second}")
                if not is_shelf_name(second):
                    continue
            if is_shelf_name(second):
                reread.add(f"{b}/{second}")  # a shelf, or a stray in one
                if len(parts) >= 3:
                    places.add(f"{b}/{second}/{parts[2]}")
                continue
        name = parts[0]  # a flat folder, a bucket, or a stray beside them
        ids.add(name)
        reread.add(bucket(name))
        if is_bucket_name(name):
            reread.add(name)
        if len(parts) >= 2 or not is_bucket_name(name):
            places.add(name)
    return ids, reread, places
