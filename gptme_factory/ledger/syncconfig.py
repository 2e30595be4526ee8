"""factory.yaml's `sync` section: sharing the ledger between clones through a git remote.

Its own small module (pydantic only, not the records and contracts `config.py` loads) so
that `gptme-factory sync` can read just this section (ledger/sync.py `settings`) without
paying for the whole configuration's import; `FactoryConfig.sync` is this same model.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def _check_remote(value: str) -> str:
    if not _NAME_RE.match(value):
        raise ValueError("a git remote name: letters, digits, '.', '_' and '-' (like origin)")
    return value


_BRANCH_RE = re.compile(r"^(?!-)(?!/)(?!.*\.\.)[A-Za-z0-9._/-]{1,200}$")


def _check_branch(value: str) -> str:
    if not _BRANCH_RE.match(value) or value.endswith(("/", ".lock")):
        raise ValueError("a branch name like master or factory-ledger")
    return value


RemoteName = Annotated[str, AfterValidator(_check_remote)]
BranchName = Annotated[str, AfterValidator(_check_branch)]


class SyncConfig(BaseModel):
    """Sharing the ledger through a git remote (absent: the ledger is this clone's alone)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    remote: RemoteName | None = Field(
        default=None,
        description="The git remote every clone shares the ledger through (e.g. origin); "
                    "unset: the branch's upstream remote, for `sync` only.")
    branch: BranchName | None = Field(
        default=None,
        description="The branch on the remote; unset: the current branch's name.")
    auto: bool = Field(
        default=True,
        description="Claim stages with a compare-and-swap push and push after handoffs.")
    lease_s: float = Field(
        default=900, ge=1, le=7 * 86400,
        description="How long a claim holds without renewal (a cell's progress renews it).")
    own_commits: Literal["refuse", "push"] = Field(
        default="refuse",
        description="Your own unpushed non-ledger commits: refuse to sync (default), or "
                    "replay and push them along (a path changed on both sides is still "
                    "refused).")
