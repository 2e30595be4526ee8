"""Typed handoff contracts: what each role must hand to the next.

One pydantic model per built-in contract, versioned by `kind` and `schema_version`, strict
(`extra="forbid"`), every field documented because the JSON Schema of the model is pasted
into the cell's brief. Custom contracts declared in factory.yaml extend a built-in one
(`build_contract`). Acceptance criteria are referred to by their 0-based index in the intake.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, create_model, field_validator
from pydantic_core import PydanticCustomError

from .records import ArtifactId, Name, OutputTail, ShortText, SubDir, Text

KIND_DOC = "The contract this handoff satisfies (may be omitted: it is the default)."


class Contract(BaseModel):
    """Base of every handoff: names its artifact, strict and immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Declared first so that `kind` leads every handoff; each contract narrows it to a Literal.
    kind: str = Field(description=KIND_DOC)
    schema_version: Literal[1] = Field(default=1, description="Version of this contract.")
    artifact: ArtifactId = Field(description="The artifact this handoff is about (must match).")


class FileNote(BaseModel):
    """A file the builder should look at, and why."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    path: ShortText = Field(description="Repo-relative path.")
    why: ShortText = Field(description="Why it matters for this artifact.")


class PlannedCheck(BaseModel):
    """A verification command the factory will run itself, at the base and the built commit."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    command: ShortText = Field(description="Shell command run from the repo root; exit 0 = pass.")
    proves: ShortText = Field(description="What passing it demonstrates.")
    criteria: list[int] = Field(
        default_factory=list, description="0-based indices of the acceptance criteria it "
        "shows. At least one check tied to a criterion must fail at the base today (it is "
        "what tells a patch from its base); a check tied to none is no evidence.")
    cwd: SubDir = Field(default=".", description="Directory it runs in, relative to the root.")


class CriterionPlan(BaseModel):
    """How one acceptance criterion will be met and shown."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    criterion: int = Field(ge=0, description="0-based index into the intake's acceptance list.")
    plan: Text = Field(description="How it will be met and which check shows it.")


class ScoutMemo(Contract):
    """Scout's memo: where the change goes, how to do it and how it will be verified."""

    kind: Literal["scout_memo"] = Field(default="scout_memo", description=KIND_DOC)
    files: list[FileNote] = Field(min_length=1, description="Files to read or change, and why.")
    constraints: list[Text] = Field(default_factory=list, description="Limits the build must keep.")
    approach: Text = Field(description="The proposed approach, concrete enough to build from.")
    verification_plan: list[PlannedCheck] = Field(
        min_length=1, description="Commands whose exit codes decide the verify gate."
    )
    risks: list[Text] = Field(default_factory=list, description="What could go wrong.")
    criteria: list[CriterionPlan] = Field(
        min_length=1, description="One entry per acceptance criterion."
    )


class CriterionClaim(BaseModel):
    """The builder's claim about one criterion (checked later by the verifier)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    criterion: int = Field(ge=0, description="0-based index into the intake's acceptance list.")
    claim: Text = Field(description="What was done for it.")
    evidence: Text = Field(description="Where to see it: a test name, a command, a file.")


class BuilderPatch(Contract):
    """Builder's patch: an exact commit range the factory checks against git."""

    kind: Literal["builder_patch"] = Field(default="builder_patch", description=KIND_DOC)
    status: Literal["success", "blocked"] = Field(
        description="success: the patch is ready to verify; blocked: could not build (say why)."
    )
    branch: ShortText = Field(description="Branch holding the work.")
    base: ShortText = Field(description="Commit the work started from (from the brief).")
    head: ShortText = Field(description="Commit to verify: the last commit on the branch.")
    summary: Text = Field(description="What changed and why, for the reviewer.")
    files_changed: list[ShortText] = Field(
        default_factory=list, description="Every file changed between base and head."
    )
    tests_added: list[ShortText] = Field(default_factory=list, description="Tests added or changed.")
    claims: list[CriterionClaim] = Field(
        default_factory=list, description="One claim per acceptance criterion."
    )
    notes_for_verifier: str = Field(default="", max_length=20_000, description="What to check.")


class ReportedCheck(BaseModel):
    """A check the verifier reports having run; compared with what the factory observes."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    command: ShortText = Field(description="The command exactly as run.")
    check: Name | None = Field(default=None, description="The id of the contract check it "
                               "reports (from the brief); none: matched by its command.")
    exit_code: int = Field(description="Its exit code.")
    duration_s: float = Field(default=0, ge=0, description="How long it took.")
    output_tail: OutputTail = Field(default="", description="Last lines of its output.")


class CriterionVerdict(BaseModel):
    """The verifier's verdict on one acceptance criterion."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    criterion: int = Field(ge=0, description="0-based index into the intake's acceptance list.")
    verdict: Literal["pass", "fail", "unknown"] = Field(description="Was it met?")
    evidence: Text = Field(description="The check or observation behind the verdict.")


class VerifierReport(Contract):
    """Verifier's test-result summary; the factory reruns the checks and compares."""

    kind: Literal["verifier_report"] = Field(default="verifier_report", description=KIND_DOC)
    commit: ShortText = Field(description="The commit verified (the builder's head).")
    checks: list[ReportedCheck] = Field(min_length=1, description="Every check run, with results.")
    verdict: Literal["pass", "fail"] = Field(description="pass only if every check passed.")
    failure_summary: str = Field(
        default="", max_length=20_000, validate_default=True,
        description="Shortest useful failure summary (required if fail).",
    )
    criteria: list[CriterionVerdict] = Field(
        min_length=1, description="One verdict per acceptance criterion."
    )

    @field_validator("failure_summary")
    @classmethod
    def _fail_needs_summary(cls, value: str, info: ValidationInfo) -> str:
        # A field validator (not a model one) so the error names the field to fix.
        if info.data.get("verdict") == "fail" and not value.strip():
            raise PydanticCustomError("fail_summary", "required when verdict is fail")
        return value


class Reproduction(Contract):
    """Reproducer's handoff: a commit that adds a test reproducing the bug, and no fix."""

    kind: Literal["reproduction"] = Field(default="reproduction", description=KIND_DOC)
    status: Literal["success", "blocked"] = Field(
        description="success: the reproduction is committed; blocked: could not reproduce.")
    branch: ShortText = Field(description="Branch holding the reproduction.")
    base: ShortText = Field(description="Commit the work started from (from the brief).")
    head: ShortText = Field(description="The commit with the reproduction (no fix).")
    summary: Text = Field(description="What the test does and how it shows the bug.")
    files_changed: list[ShortText] = Field(
        default_factory=list, description="Every file changed between base and head.")
    tests_added: list[ShortText] = Field(default_factory=list, description="Tests added.")
    checks: list[ShortText] = Field(
        min_length=1, description="The contract checks (ids from the brief, or their exact "
        "commands) that fail at head because of the bug.")
    failure: ShortText = Field(
        description="A line those checks print when they fail, as the issue describes the bug "
        "(for example: TypeError: 'NoneType' object is not callable).")


class ReleasePackage(Contract):
    """Packager's release package: texts that render to files and a PR."""

    kind: Literal["release_package"] = Field(default="release_package", description=KIND_DOC)
    change_type: Literal["feat", "fix", "docs", "refactor", "perf", "test", "build", "ci",
                         "style", "chore", "revert"] = Field(
        description="Kind of change, a Conventional Commits type (feat, fix, docs, refactor, "
                    "perf, test, build, ci, style, chore, revert); `feature` is read as feat.",
    )
    version_bump: Literal["major", "minor", "patch", "none"] = Field(
        description="Suggested semantic version bump."
    )
    changelog_entry: Text = Field(description="One changelog line or short paragraph.")
    release_notes: Text = Field(description="Release notes in Markdown.")
    pr_title: ShortText = Field(description="Pull request title (Conventional Commits style).")
    pr_description: Text = Field(description="Pull request description in Markdown.")
    announcement: Text = Field(description="Announcement draft (blog/social).")


    @field_validator("change_type", mode="before")
    @classmethod
    def _conventional(cls, value: object) -> object:
        # `feature` was this contract's word before it spoke Conventional Commits.
        return "feat" if value == "feature" else value


class Adoption(BaseModel):
    """Whether one named consumer uses the result, and the evidence."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    consumer: ShortText = Field(description="A consumer named in the intake.")
    status: Literal["used", "not_used", "unknown"] = Field(description="Observed adoption.")
    evidence: ShortText = Field(description="Issue closed, PR merged, a command run, a person said so.")


class OutcomeReport(Contract):
    """Analyst's outcome: adoption per consumer, lessons, and what comes next."""

    kind: Literal["outcome_report"] = Field(default="outcome_report", description=KIND_DOC)
    adoption: list[Adoption] = Field(min_length=1, description="One entry per named consumer.")
    lessons: list[Text] = Field(default_factory=list, description="What to do differently.")
    successor: ArtifactId | None = Field(default=None, description="The next artifact, if any.")
    terminal: str | None = Field(
        default=None, max_length=2_000, validate_default=True,
        description="Why nothing follows (required if no successor).",
    )

    @field_validator("terminal")
    @classmethod
    def _successor_or_terminal(cls, value: str | None, info: ValidationInfo) -> str | None:
        if "successor" in info.data and not info.data["successor"] and not (value or "").strip():
            raise PydanticCustomError(
                "done_is_not_a_handoff",
                "name a successor artifact or declare terminal (done is not a handoff)",
            )
        return value


BUILTIN_CONTRACTS: dict[str, type[Contract]] = {
    "scout_memo": ScoutMemo,
    "builder_patch": BuilderPatch,
    "reproduction": Reproduction,
    "verifier_report": VerifierReport,
    "release_package": ReleasePackage,
    "outcome_report": OutcomeReport,
}

# Custom field types. Strings are bounded like the built-in fields' text (non-empty, at most
# 20,000 characters): an empty required string carries no information.
_FIELD_TYPES: dict[str, Any] = {
    "string": Text,
    "integer": int,
    "number": float,
    "boolean": bool,
    "list[string]": list[Text],
}


def build_contract(
    name: str, extends: str, fields: dict[str, tuple[str, str, bool]]
) -> type[Contract]:
    """Create a custom contract `name` extending a built-in one with extra typed fields.

    `fields` maps field name -> (type name, description, required). The same declaration
    always yields the same class (cached): submit and advance re-validate on every call.
    """
    return _build_contract(name, extends, tuple(fields.items()))


@lru_cache(maxsize=256)
def _build_contract(
    name: str, extends: str, fields: tuple[tuple[str, tuple[str, str, bool]], ...]
) -> type[Contract]:
    base = BUILTIN_CONTRACTS[extends]
    definitions: dict[str, Any] = {
        "kind": (Literal[name], Field(default=name, description=KIND_DOC)),
    }
    for fname, (ftype, desc, required) in fields:
        py = _FIELD_TYPES[ftype]
        if required:
            definitions[fname] = (py, Field(description=desc))
        else:
            definitions[fname] = (py | None, Field(default=None, description=desc))
    model = cast("type[Contract]", create_model(name, __base__=base, **definitions))
    model.__doc__ = f"Custom contract {name}, extending {extends}."
    return model


FIELD_TYPE_NAMES = tuple(_FIELD_TYPES)
