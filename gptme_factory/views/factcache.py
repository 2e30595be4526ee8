"""The metric-facts cache: each artifact's `metrics.ArtifactFacts`, kept like `status`'s summaries.

The status cache's engine (statuscache.cached) keys every artifact's facts by the git tree id
of the bytes they came from, HEAD, `git diff-index` and the directory's stat (statuscache.py
explains why that is exact), so `metrics` and the board re-read only the artifacts that
changed. The facts also depend on the names that mean the factory itself (self-play): they
are part of the cache key. Kept in factory/.runtime/metrics-cache/ (gitignored), one file
per bucket of ids like the summaries.
Broken artifacts are never cached: they are read, and reported, on every call.

The report over all artifacts (no filters) is kept too, in metrics-report.json, under the
pass's fingerprint of every artifact's content: while nothing changed, the board and
`metrics` get it without loading a single artifact's facts. `metrics` here is the entry point
of the CLI, the gptme tool and the board; outcomes/metrics.py computes the same report from
the ledger alone.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from ..errors import FactoryError
from ..ledger.store import Ledger
from .statuscache import _CODE, SUMMARIES, Kind, Pass, _global_key, _write_json, cached, keep_fresh

if TYPE_CHECKING:  # the models load only when an artifact is read or a report computed:
    from datetime import date  # a warm `metrics` whose report is kept needs neither

    from ..ledger.kinds import ArtifactChain
    from ..outcomes.metrics import ArtifactFacts, BrokenFacts

CACHE_DIR = "metrics-cache"
REPORT_FILE = "metrics-report.json"
_FACTS_CODE = (*_CODE, "outcomes/costs.py", "outcomes/metrics.py", "outcomes/selfplay.py",
               "views/factcache.py")


def facts_kind(ledger: Ledger) -> Kind:
    """The cache kind of metric facts for this ledger (bound to its self-play names).

    The names come from factory.yaml (part of every cache key already) and gptme.toml, whose
    bytes are this kind's key: a warm pass never parses either (nor loads the models).
    """
    names: list[frozenset[str]] = []

    def derive(ledger: Ledger, aid: str, chain: ArtifactChain | None,
               error: FactoryError | None) -> tuple[Any, list[Any] | None]:
        from ..outcomes.metrics import BrokenFacts, read_facts
        from ..outcomes.selfplay import ledger_self_names

        if not names:
            names.append(ledger_self_names(ledger))
        facts = read_facts(ledger, aid, chain, error, names[0])
        return facts, None if isinstance(facts, BrokenFacts) else facts.to_row()

    def key(ledger: Ledger) -> str:
        try:
            toml = (ledger.repo.root / "gptme.toml").read_bytes()
        except OSError:
            toml = b""
        return "self:" + hashlib.sha256(toml).hexdigest()

    def restore(row: list[Any]) -> ArtifactFacts:
        from ..outcomes.metrics import ArtifactFacts

        return ArtifactFacts.from_row(row)

    return Kind(file=CACHE_DIR, code=_FACTS_CODE, derive=derive, restore=restore, key=key)


def keep_warm(ledger: Ledger) -> None:
    """After each commit of `ledger`, store the changed artifacts' summaries and facts."""
    keep_fresh(ledger, lambda committed: [SUMMARIES, facts_kind(committed)])


def cached_facts(ledger: Ledger) -> list[ArtifactFacts | BrokenFacts]:
    """Every artifact's facts in id order, re-reading only the artifacts that changed."""
    return cached(ledger, [facts_kind(ledger)])[0]


def cached_report(ledger: Ledger, p: Pass | None = None) -> dict[str, Any]:
    """The metrics report over every artifact, computed again only when one changed.

    `p`: a pass that already served another kind (the board's summaries): its fingerprint
    is known, so an unchanged ledger costs no facts at all.
    """
    kind = facts_kind(ledger)
    if p is None:
        with Pass(ledger, [kind]) as own:
            return cached_report(ledger, own)
    key = _global_key(ledger, kind)
    path = ledger.runtime_dir / REPORT_FILE
    fp = p.fingerprint()
    if fp is None:  # the pass has served no kind yet: the facts' entries give the content ids
        p.values(kind, restore=False)
        fp = p.fingerprint()
    if fp is not None:
        try:
            data = json.loads(path.read_bytes().decode())
            if data["key"] == key and data["fingerprint"] == fp:
                kept: dict[str, Any] = data["report"]
                return kept
        except (OSError, ValueError, KeyError, TypeError):
            pass
    from ..outcomes.metrics import report

    out = report(p.values(kind))
    fp = p.fingerprint()
    if fp is not None:
        _write_json(path, {"key": key, "fingerprint": fp, "report": out})
    return out


def metrics(ledger: Ledger, *, line: str | None = None, since: date | None = None,
            per_artifact: bool = False, use_cache: bool = True) -> dict[str, Any]:
    """The metrics report (outcomes/metrics.py defines every number), through the caches.

    Without filters the whole report is kept; with them, each artifact's facts are. Without
    `use_cache` every artifact is read again: the same numbers, slower.
    """
    if not use_cache:
        from ..outcomes.metrics import metrics as uncached_metrics

        return uncached_metrics(ledger, line=line, since=since, per_artifact=per_artifact)
    if line is not None:
        ledger.config.line(line)  # unknown line -> ConfigError
    if line is None and since is None and not per_artifact:
        return cached_report(ledger)
    from ..outcomes.metrics import report

    return report(cached_facts(ledger), line=line, since=since, per_artifact=per_artifact)
