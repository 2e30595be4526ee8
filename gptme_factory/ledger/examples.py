"""Filled-in example handoffs: what a cell (or a person) should hand over, shown, not described.

`example(config, contract, ...)` gives a handoff of a built-in or custom contract that
validates against it and answers an intake with `criteria` acceptance criteria and the named
`consumers` — so a model copying it gets the shape right the first time. `schema ROLE
--example` prints one, and every brief carries one built for the cell's own artifact. Values
in CAPITALS (BASE-COMMIT, HEAD-COMMIT, BRANCH) are the ones a cell must replace with its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .config import FactoryConfig, base_contract

_FIELD_EXAMPLES: dict[str, Any] = {
    "string": "what this field says, in a sentence",
    "integer": 1,
    "number": 1.0,
    "boolean": True,
    "list[string]": ["one item"],
}


def _builtin(name: str, artifact: str, n: int, consumers: Sequence[str], *, base: str,
             head: str, branch: str, commit: str) -> dict[str, Any]:
    if name == "scout_memo":
        return {
            "kind": name, "artifact": artifact,
            "files": [{"path": "src/module.py", "why": "the function to change lives here"},
                      {"path": "tests/test_module.py", "why": "where its tests go"}],
            "constraints": ["keep the public API unchanged"],
            "approach": "Change the parser to accept the new form; add a test for each "
                        "acceptance criterion.",
            "verification_plan": [{"command": "python3 -m pytest -q tests/test_module.py",
                                   "proves": "the new form parses (fails today)",
                                   "criteria": list(range(max(n, 1)))}],
            "risks": ["callers that relied on the old error"],
            "criteria": [{"criterion": i, "plan": f"a test shows criterion {i} holds"}
                         for i in range(max(n, 1))],
        }
    if name == "builder_patch":
        return {
            "kind": name, "artifact": artifact, "status": "success", "branch": branch,
            "base": base, "head": head,
            "summary": "Accept the new form in the parser; tests for each criterion.",
            "files_changed": ["src/module.py", "tests/test_module.py"],
            "tests_added": ["tests/test_module.py::test_new_form"],
            "claims": [{"criterion": i, "claim": f"criterion {i} holds",
                        "evidence": "tests/test_module.py::test_new_form"}
                       for i in range(max(n, 1))],
            "notes_for_verifier": "Run the planned checks; the new test is the one to watch.",
        }
    if name == "reproduction":
        return {
            "kind": name, "artifact": artifact, "status": "success", "branch": branch,
            "base": base, "head": head,
            "summary": "A test that calls the parser with the reported input; it fails with "
                       "the error the issue quotes. No fix.",
            "files_changed": ["tests/test_module.py"],
            "tests_added": ["tests/test_module.py::test_reported_input"],
            "checks": ["python3 -m pytest -q tests/test_module.py"],
            "failure": "ValueError: not a duration",
        }
    if name == "verifier_report":
        return {
            "kind": name, "artifact": artifact, "commit": commit,
            "checks": [{"command": "python3 -m pytest -q tests/test_module.py", "exit_code": 0,
                        "duration_s": 1.2, "output_tail": "4 passed in 0.8s"}],
            "verdict": "pass", "failure_summary": "",
            "criteria": [{"criterion": i, "verdict": "pass",
                          "evidence": "tests/test_module.py::test_new_form passed"}
                         for i in range(max(n, 1))],
        }
    if name == "release_package":
        return {
            "kind": name, "artifact": artifact, "change_type": "fix", "version_bump": "patch",
            "changelog_entry": "The parser accepts the new form.",
            "release_notes": "## Fixes\n\n- The parser accepts the new form.",
            "pr_title": "fix(parser): accept the new form",
            "pr_description": "Accept the new form in the parser.\n\n- adds a test per criterion",
            "announcement": "The parser now accepts the new form.",
        }
    if name == "outcome_report":
        return {
            "kind": name, "artifact": artifact,
            "adoption": [{"consumer": c, "status": "unknown", "evidence": "not asked yet"}
                         for c in (consumers or ["a named consumer"])],
            "lessons": ["the scout's check caught the regression"],
            "successor": None, "terminal": "the demand is met; nothing follows",
        }
    raise KeyError(name)


def example(config: FactoryConfig | None, contract: str, *, artifact: str = "the-artifact-id",
            criteria: int = 1, consumers: Sequence[str] = (), base: str = "BASE-COMMIT",
            head: str = "HEAD-COMMIT", branch: str = "BRANCH",
            commit: str = "COMMIT") -> dict[str, Any]:
    """A handoff of `contract` that validates and covers `criteria` criteria and `consumers`."""
    from .contracts import BUILTIN_CONTRACTS

    root = contract if contract in BUILTIN_CONTRACTS else (
        base_contract(config, contract) if config is not None else None)
    if root is None:
        raise KeyError(contract)
    data = _builtin(root, artifact, criteria, consumers, base=base, head=head, branch=branch,
                    commit=commit)
    if contract != root and config is not None:
        data["kind"] = contract
        for fname, spec in config.contracts[contract].fields.items():
            data[fname] = _FIELD_EXAMPLES[spec.type]
    return data
