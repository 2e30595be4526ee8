"""Which gate judges a stage: the stage's gate kind applied to its validated handoff.

The gates themselves are in gates.py (contract, patch, package) and evidencegates.py (plan,
reproduce, fix, evidence: the ones that run the validation contract). A gate kind that needs
a handoff of another contract family refuses, saying which (config.py also refuses such a
line when factory.yaml is loaded).
"""

from __future__ import annotations

from ..ledger.config import StageConfig
from ..ledger.contracts import BuilderPatch, Contract, Reproduction, ScoutMemo, VerifierReport
from ..ledger.store import Ledger
from .evidencegates import evidence_gate, fix_gate, plan_gate, reproduce_gate
from .gates import GateOutcome, package_gate, patch_gate
from .replay import ArtifactView

_NEEDS = {"plan": "scout_memo", "reproduce": "reproduction", "patch": "builder_patch",
          "fix": "builder_patch", "evidence": "verifier_report"}


def evaluate(ledger: Ledger, view: ArtifactView, stage: StageConfig,
             handoff: Contract) -> GateOutcome:
    """Run the stage's gate on its validated handoff."""
    gate = stage.gate
    if gate == "plan" and isinstance(handoff, ScoutMemo):
        return plan_gate(ledger, view, stage, handoff)
    if gate == "reproduce" and isinstance(handoff, Reproduction):
        return reproduce_gate(ledger, view, stage, handoff)
    if gate == "patch" and isinstance(handoff, BuilderPatch):
        return patch_gate(ledger, view, handoff)
    if gate == "fix" and isinstance(handoff, BuilderPatch):
        return fix_gate(ledger, view, stage, handoff)
    if gate == "evidence" and isinstance(handoff, VerifierReport):
        return evidence_gate(ledger, view, stage, handoff)
    if gate == "package":
        return package_gate(view)
    if gate in _NEEDS:
        return GateOutcome(False, [f"the {gate} gate needs a {_NEEDS[gate]} handoff"],
                           f"wrong contract for the {gate} gate")
    return GateOutcome(True, notes=["handoff satisfies its contract"])
