"""The metric-facts cache: each artifact's `metrics.ArtifactFacts`, kept like `status`'s summaries.

The status cache's engine (statuscache.cached) keys every artifact's facts by the git tree id
of the bytes they came from, HEAD, `git diff-index` and the directory's stat (statuscache.py
explains why that is exact), so `metrics` and the board re-read only the artifacts that
changed. The facts also depend on the names that mean the factory itself (self-play): they
are part of the cache key. Kept in factory/.runtime/metrics-cache.json (gitignored).
Broken artifacts are never cached: they are read, and reported, on every call.
"""

from __future__ import annotations

from typing import Any

from .errors import FactoryError
from .ledger import Chain, Ledger
from .metrics import ArtifactFacts, BrokenFacts, read_facts
from .selfplay import ledger_self_names
from .statuscache import _CODE, Kind, cached

CACHE_FILE = "metrics-cache.json"
_FACTS_CODE = (*_CODE, "costs.py", "factcache.py", "metrics.py", "selfplay.py")


def facts_kind(ledger: Ledger) -> Kind:
    """The cache kind of metric facts for this ledger (bound to its self-play names)."""
    names = ledger_self_names(ledger)
    key = "self:" + "\0".join(sorted(names))

    def derive(ledger: Ledger, aid: str, chain: Chain | None,
               error: FactoryError | None) -> tuple[Any, list[Any] | None]:
        facts = read_facts(ledger, aid, chain, error, names)
        return facts, None if isinstance(facts, BrokenFacts) else facts.to_row()

    return Kind(file=CACHE_FILE, code=_FACTS_CODE, derive=derive, restore=ArtifactFacts.from_row,
                check=lambda f, aid: f.artifact == aid, key=lambda _ledger: key)


def cached_facts(ledger: Ledger) -> list[ArtifactFacts | BrokenFacts]:
    """Every artifact's facts in id order, re-reading only the artifacts that changed."""
    return cached(ledger, [facts_kind(ledger)])[0]
