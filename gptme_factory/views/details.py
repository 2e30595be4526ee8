"""An artifact's full derived record, for `show` (JSON and text) and the board's artifact page."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from ..ledger import yamlio
from ..ledger.kinds import ArtifactChain
from ..ledger.records import Evidence, GateFailed, GatePassed, Published
from ..ledger.store import Ledger
from ..line import evidencetable
from ..line.transitions import replay_chain


def artifact_record(ledger: Ledger, artifact: str,
                    chain: ArtifactChain | None = None) -> dict[str, Any]:
    """Everything the ledger says about one artifact, as plain data (`chain`: already read)."""
    chain = chain or ledger.read(artifact)
    view = replay_chain(ledger, chain)
    intake = view.intake
    stage = view.stage
    return {
        "artifact": artifact,
        "intake": intake.model_dump(mode="json"),
        "state": view.state,
        "stage": stage.name if stage else None,
        "status": view.status,
        "cell": view.cell,
        "attempts": view.attempts,
        "retry_note": view.retry_note or None,
        "blocked_reason": view.blocked_reason or None,
        "final_reason": view.final_reason or None,
        "handoffs": view.handoffs,
        "gates": {k: g.model_dump(mode="json") for k, g in view.gates.items()},
        "cells": {k: asdict(c) for k, c in view.cells.items()},
        "cost": {"usd": round(view.cost_usd, 6), "tokens": view.tokens},
        "published": [{**e.event.model_dump(mode="json"), "seq": e.seq, "at": e.at.isoformat()}
                      for e in chain.events if isinstance(e.event, Published)],
        "closed": view.closed.model_dump(mode="json") if view.closed else None,
        "events": [
            {"seq": e.seq, "kind": e.kind, "at": e.at.isoformat(), "by": e.by, "file": e.path,
             "digest": e.digest}
            for e in chain.events
        ],
        "evidence": gate_evidence(chain),
        "problems": [str(p) for p in chain.problems],
    }


def gate_evidence(chain: ArtifactChain) -> list[dict[str, Any]]:
    """Every gate decision, passed or failed, with the checks the factory ran for it."""
    out: list[dict[str, Any]] = []
    for e in chain.events:
        rec = e.event
        if isinstance(rec, (GatePassed, GateFailed)):
            passed = isinstance(rec, GatePassed)
            out.append({
                "seq": e.seq, "at": e.at.isoformat(), "stage": rec.stage, "gate": rec.gate,
                "cell": rec.cell, "passed": passed, "commit": rec.commit, "tree": rec.tree,
                "state": rec.state if isinstance(rec, GatePassed) else None,
                "reasons": [] if isinstance(rec, GatePassed) else list(rec.reasons),
                "notes": list(rec.notes) if isinstance(rec, GatePassed) else [],
                "checks": [c.model_dump(mode="json") for c in rec.checks],
                "table": (rec.evidence.model_dump(mode="json")
                          if rec.evidence is not None else None),
            })
    return out


def render_artifact(record: dict[str, Any]) -> str:
    """Human-readable text of `artifact_record`."""
    intake = record["intake"]
    lines = [
        f"{record['artifact']}: {intake['title']}",
        f"  state {record['state']}  stage {record['stage'] or '-'} ({record['status']})"
        + (f"  cell {record['cell']}" if record["cell"] else ""),
        f"  line {intake['line']}  demand {intake['demand']}  consumers {', '.join(intake['consumers'])}"
        + (f"  target {intake['target']}" if intake.get("target") else ""),
        "  acceptance:",
        *(f"    [{i}] {a}" for i, a in enumerate(intake["acceptance"])),
    ]
    for key in ("retry_note", "blocked_reason", "final_reason"):
        if record[key]:
            lines.append(f"  {key.replace('_', ' ')}: {record[key]}")
    if record["cells"]:
        lines.append(f"  cost: ${record['cost']['usd']:.4f}, {record['cost']['tokens']} tokens")
    lines.append("  events:")
    for e in record["events"]:
        lines.append(f"    #{e['seq']:<3} {e['kind']:<20} {e['at']}  by {e['by']}")
    for stage, handoff in record["handoffs"].items():
        lines.append(f"  handoff [{stage}]:")
        body = yamlio.dumps(handoff).decode().rstrip("\n")
        lines += [f"    {ln}" for ln in body.splitlines()]
    for gate in record["evidence"]:
        if gate.get("table"):
            verdict = "passed" if gate["passed"] else "FAILED"
            lines.append(f"  evidence [{gate['stage']}, gate {gate['gate']} {verdict}]:")
            lines += evidencetable.text(Evidence.model_validate(gate["table"]))
    for p in record["problems"]:
        lines.append(f"  ! {p}")
    return "\n".join(lines)
