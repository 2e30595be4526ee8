"""The status cache: board summaries keyed by a fingerprint of each artifact's files.

Kept in factory/.runtime/status-cache.json (gitignored). An artifact's fingerprint is the
name, size, mtime and inode of every file in its directory, so any change to a record —
a new event, an edit, a checkout or merge that rewrote a file — changes it, and that artifact
alone is re-read. The factory config's own fingerprint guards the whole cache. A cache that
fails to load is rebuilt; it can make `status` slower, never wrong.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from .board import ArtifactSummary, summarize_artifact
from .ledger import CONFIG_FILE, Ledger

CACHE_FILE = "status-cache.json"
CACHE_VERSION = 1
RACY_NS = 3_000_000_000


def _fingerprint(path: str) -> tuple[str, int]:
    parts = []
    newest = 0
    with os.scandir(path) as it:
        for e in it:
            st = e.stat(follow_symlinks=False)
            newest = max(newest, st.st_mtime_ns)
            parts.append(f"{e.name}:{st.st_size}:{st.st_mtime_ns}:{st.st_ino}")
    parts.sort()
    return "|".join(parts), newest


def cached_summaries(ledger: Ledger) -> list[ArtifactSummary]:
    """Summaries for every artifact, re-reading only artifacts whose files changed."""
    cache_path = ledger.runtime_dir / CACHE_FILE
    cfg_fp = _file_fp(str(ledger.dir / CONFIG_FILE))
    old: dict[str, Any] = {}
    try:
        data = json.loads(cache_path.read_bytes())
        if data.get("version") == CACHE_VERSION and data.get("config") == cfg_fp:
            old = data["artifacts"]
    except (OSError, ValueError, KeyError, TypeError):
        old = {}
    new: dict[str, Any] = {}
    out: list[ArtifactSummary] = []
    changed = False
    base = str(ledger.artifacts_dir)
    # Like git's "racily clean" rule: a file modified within the last seconds may be edited
    # again without its mtime changing, so such artifacts are re-read until they settle.
    racy_after = time.time_ns() - RACY_NS
    for artifact in ledger.artifact_ids():
        fp, newest = _fingerprint(os.path.join(base, artifact))
        if newest >= racy_after:
            fp = ""
        hit = old.get(artifact)
        if hit is not None and fp and hit[0] == fp:
            summary = ArtifactSummary(**hit[1])
        else:
            summary = summarize_artifact(ledger, artifact)
            changed = True
        new[artifact] = (fp, summary.to_json())
        out.append(summary)
    if changed or len(new) != len(old):
        _write(cache_path, {"version": CACHE_VERSION, "config": cfg_fp, "artifacts": new})
    return out


def _file_fp(path: str) -> str:
    try:
        st = os.stat(path)
    except OSError:
        return ""
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"


def _write(path: Any, data: dict[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, separators=(",", ":")))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only checkout still gets a correct (uncached) status
