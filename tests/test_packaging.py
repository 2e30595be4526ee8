"""Packaging: the release package renders to files, a PR is opened through (fake) gh, and the
package gate passes only once a `published` event is recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from gptme_factory.cli import main
from gptme_factory.errors import IllegalTransition, UsageError
from gptme_factory.ledger.layout import fanned
from gptme_factory.ledger.records import GatePassed, HandoffSubmitted
from gptme_factory.ledger.store import Ledger
from gptme_factory.line import engine, evidencetable
from gptme_factory.line.verify import verify_ledger
from gptme_factory.outcomes.ghcli import GhError
from gptme_factory.outcomes.packaging import publish, render
from tests import fake_gh
from tests.conftest import git
from tests.flow_helpers import add_origin, sample_artifact, to_package

PR_URL = "https://github.com/acme/deploy-bot/pull/18"


def run(repo: Path, *args: str) -> Result:
    return CliRunner().invoke(main, [*args, "--repo", str(repo)])


@pytest.fixture
def packaged(ledger: Ledger) -> tuple[Ledger, str, str]:
    aid = sample_artifact(ledger)
    head = to_package(ledger, aid)
    return ledger, aid, head


def test_pr_target_renders_files_opens_the_pr_and_records_published(
    packaged: tuple[Ledger, str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    ledger, aid, head = packaged
    root = ledger.repo.root
    add_origin(ledger, tmp_path / "origin.git", "https://github.com/acme/brain.git")
    gh = fake_gh.install(tmp_path, monkeypatch)
    gh.respond("pr create", stdout=f"Creating pull request...\n{PR_URL}\n")
    with pytest.raises(IllegalTransition, match="not published yet"):
        engine.advance(ledger, aid)
    chain, view = engine.load(ledger, aid)
    branch = view.handoffs["build"]["branch"]
    tip = ledger.repo.head()

    result = run(root, "package", aid, "--target", "pr")

    assert result.exit_code == 0, result.output
    out = root / "factory" / "packages"
    assert gh.calls() == [
        ["auth", "status"],
        ["pr", "create", "--head", branch, "--base", "master",
         "--title", "feat: compound durations", "--body-file", str(out / "pr" / f"{aid}.md")],
    ]
    assert git(tmp_path / "origin.git", "rev-parse", f"refs/heads/{branch}").strip() == head
    assert result.output == (
        f"{aid}: feat, suggested version bump minor\n"
        f"  wrote factory/packages/changelog.d/{aid}.feat.md\n"
        f"  wrote factory/packages/release-notes/{aid}.md\n"
        f"  wrote factory/packages/pr/{aid}.md\n"
        f"  wrote factory/packages/announcements/{aid}.md\n"
        f"  ran   git push origin {branch}\n"
        f"  ran   gh pr create --head {branch} --base master --title 'feat: compound durations'"
        f" --body-file {out / 'pr' / (aid + '.md')}\n"
        f"published (pr): {PR_URL}\n"
        f"  next: `gptme-factory advance {aid}` passes the package gate\n"
    )
    # one ledger commit: the published event plus the rendered files, nothing else
    _, view = engine.load(ledger, aid)
    assert [(p.target, p.where, p.commit) for p in view.published] == [("pr", PR_URL, head)]
    changed = git(root, "show", "--name-only", "--format=", "HEAD").split()
    assert sorted(changed) == sorted([
        f"factory/artifacts/{fanned(aid)}/{Path(engine.load(ledger, aid)[0].events[-1].path).name}",
        f"factory/packages/announcements/{aid}.md",
        f"factory/packages/changelog.d/{aid}.feat.md",
        f"factory/packages/pr/{aid}.md",
        f"factory/packages/release-notes/{aid}.md",
    ])
    assert git(root, "rev-parse", "HEAD~1").strip() == tip
    assert git(root, "status", "--porcelain") == ""

    # the rendered files, pinned
    assert (out / "changelog.d" / f"{aid}.feat.md").read_text() == (
        "`parse_duration` accepts compound durations such as `2m30s`.\n")
    assert (out / "announcements" / f"{aid}.md").read_text() == (
        "The deploy bot now understands timeouts like 2m30s.\n")
    gate = [r for r in chain.events if isinstance(r.event, GatePassed)
            and r.event.gate == "evidence"][-1]
    g = gate.event
    assert (out / "release-notes" / f"{aid}.md").read_text() == (
        "# Accept compound durations like 2m30s\n\n"
        "## Compound durations\n\n`--timeout 2m30s` now works.\n\n"
        "- Change: feat; suggested version bump: **minor**\n"
        "- Demand: acme/deploy-bot#17; for deploy-bot maintainers, erik\n"
        f"- Verified on commit `{head[:12]}`: "
        + ", ".join(f"`{c.command}` exit 0" for c in g.checks) + "\n"
        f"- Factory artifact: `{aid}`\n"
    )
    handoffs = [r for r in chain.events if isinstance(r.event, HandoffSubmitted)]
    scout, patch = handoffs[0], handoffs[1]
    blob = f"https://github.com/acme/brain/blob/{tip}"
    base = view.handoffs["build"]["base"]
    assert (out / "pr" / f"{aid}.md").read_text() == (
        "Accept compound durations in `parse_duration`.\n\n---\n\n"
        f"**Factory ledger** for artifact `{aid}` (line `default`, factory run)\n\n"
        "- **Demand:** acme/deploy-bot#17 · consumers: deploy-bot maintainers, erik · intake "
        f"[`intake.yaml`]({blob}/factory/artifacts/{fanned(aid)}/intake.yaml)\n"
        "- **Acceptance criteria:**\n"
        "  0. parse_duration('2m30s') == 150 and parse_duration('1h2m3s') == 3723\n"
        "  1. the existing tests still pass\n"
        f"- **Scout memo:** [`{Path(scout.path).name}`]({blob}/{scout.path}) — parse (number, "
        "unit) pairs with a regex and sum them\n"
        f"- **Patch:** [`{Path(patch.path).name}`]({blob}/{patch.path}) branch `{branch}`, "
        f"`{base[:12]}...{head[:12]}`, files: `sample/durations.py`, `sample/test_durations.py`\n"
        f"- **Verifier evidence:** [`{Path(gate.path).name}`]({blob}/{gate.path}) — commit "
        f"`{head[:12]}`, tree `{g.tree[:12]}`, checks run by the factory:\n"  # type: ignore[union-attr,index]
        + "".join(f"  - `{c.command}` → exit 0 ({c.duration_s:.1f} s)\n" for c in g.checks)
        + "\n**Evidence** (every check run by the factory in clean checkouts, at the base and "
        "at the verified commit):\n\n"
        + "\n".join(evidencetable.markdown(g.evidence)) + "\n\n"  # type: ignore[union-attr,arg-type]
        "- **Criteria verdicts:** 0: pass, 1: pass\n"
        "- **Suggested version bump:** minor (feat)\n"
    )

    # the evidence table: the reproduction fails at the base and passes at the head
    table = evidencetable.markdown(g.evidence)  # type: ignore[union-attr,arg-type]
    assert table[0].startswith("evidence: fail-to-pass; base `")
    assert table[2] == "| check | criteria | base | head | duration | verdict |"
    assert table[4].endswith(" | 0 | exit 1 / exit 1 | exit 0 / exit 0 | "
                             f"{g.evidence.rows[0].head.duration_s:.1f} s | fail-to-pass |")  # type: ignore[union-attr]
    assert table[5].endswith(" | 1 | exit 0 | exit 0 | "
                             f"{g.evidence.rows[1].head.duration_s:.1f} s | pass-to-pass |")  # type: ignore[union-attr]

    # the package gate passes now, and only now
    res = engine.advance(ledger, aid)
    assert res.passed and res.state == "published"
    assert res.outcome.notes == [f"published: {PR_URL}"]
    assert [str(p) for p in verify_ledger(ledger)] == []
    with pytest.raises(IllegalTransition, match="package stage is not current"):
        publish(ledger, aid, target="note")
    assert publish(ledger, aid, dry_run=True).published is False  # re-render still works


def test_dry_run_leaves_nothing_behind(packaged: tuple[Ledger, str, str]) -> None:
    ledger, aid, _ = packaged
    root = ledger.repo.root
    before = (git(root, "rev-parse", "HEAD"), git(root, "status", "--porcelain",
                                                 "--untracked-files=all"))
    result = CliRunner().invoke(main, ["package", aid, "--dry-run", "--repo", str(root)])
    assert result.exit_code == 0, result.output
    assert f"would write factory/packages/changelog.d/{aid}.feat.md:" in result.output
    assert "dry run: nothing was written, published or recorded" in result.output
    assert not (root / "factory" / "packages").exists()
    assert (git(root, "rev-parse", "HEAD"), git(root, "status", "--porcelain",
                                                "--untracked-files=all")) == before


def test_without_gh_login_it_prints_the_commands_and_records_nothing(
    packaged: tuple[Ledger, str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    ledger, aid, _ = packaged
    root = ledger.repo.root
    gh = fake_gh.install(tmp_path, monkeypatch)
    gh.logged_out()
    head = ledger.repo.head()
    branch = engine.load(ledger, aid)[1].handoffs["build"]["branch"]

    result = run(root, "package", aid)

    assert result.exit_code == 11
    body = root / "factory" / "packages" / "pr" / f"{aid}.md"
    assert result.output.endswith(
        "not published: `gh auth status` says gh is not logged in (run `gh auth login`). Run the "
        f"commands below, then `gptme-factory package {aid} --target pr --where URL` to record it\n"
        f"  git push origin {branch}\n"
        f"  gh pr create --head {branch} --base master --title 'feat: compound durations' "
        f"--body-file {body}\n"
    )
    assert gh.calls() == [["auth", "status"]]
    assert body.is_file()
    assert ledger.repo.head() == head  # nothing committed
    # the person ran the commands; now the PR is recorded by hand
    data = json.loads(run(root, "package", aid, "--where", PR_URL, "--json").stdout)
    assert (data["published"], data["where"], data["target"]) == (True, PR_URL, "pr")
    assert data["version_bump"] == "minor" and data["ran"] == []
    assert engine.advance(ledger, aid).passed
    assert [str(p) for p in verify_ledger(ledger)] == []


def test_note_and_release_targets(
    packaged: tuple[Ledger, str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    ledger, aid, head = packaged
    gh = fake_gh.install(tmp_path, monkeypatch)
    add_origin(ledger, tmp_path / "origin.git")
    gh.respond("release create", stdout="https://github.com/acme/deploy-bot/releases/tag/v1.3.0\n")
    with pytest.raises(UsageError, match="--tag"):
        publish(ledger, aid, target="release")
    res = publish(ledger, aid, target="release", tag="v1.3.0")
    notes = ledger.dir / "packages" / "release-notes" / f"{aid}.md"
    assert gh.calls()[-1] == ["release", "create", "v1.3.0", "--target", head, "--title",
                              "v1.3.0: feat: compound durations", "--notes-file", str(notes)]
    assert (res.published, res.where) == (True, "v1.3.0")
    outside = tmp_path / "project"
    res = publish(ledger, aid, target="note", out_dir=outside)
    assert res.where == str(outside / "release-notes" / f"{aid}.md")
    assert (outside / "changelog.d" / f"{aid}.feat.md").is_file()
    assert "factory/packages" not in git(ledger.repo.root, "show", "--name-only", "HEAD")
    _, view = engine.load(ledger, aid)
    assert [p.target for p in view.published] == ["release", "note"]
    assert engine.advance(ledger, aid).passed


def test_package_before_the_release_package_is_refused(ledger: Ledger) -> None:
    aid = sample_artifact(ledger)
    result = run(ledger.repo.root, "package", aid, "--target", "note")
    assert result.exit_code == 7
    assert "has no release package yet (state idea)" in result.output
    with pytest.raises(IllegalTransition):
        render(ledger, aid)


def test_parallel_artifacts_never_share_a_file(ledger: Ledger) -> None:
    from gptme_factory.outcomes.packaging import package_paths

    a, b = package_paths("fix-a-111111", "fix"), package_paths("fix-b-222222", "fix")
    assert not set(a.values()) & set(b.values())
    assert a["changelog"] == "changelog.d/fix-a-111111.fix.md"


def test_an_existing_pr_is_recorded_not_duplicated(
    packaged: tuple[Ledger, str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    ledger, aid, _ = packaged
    add_origin(ledger, tmp_path / "origin.git")
    gh = fake_gh.install(tmp_path, monkeypatch)
    gh.respond("pr create", exit=1, stderr=(
        'a pull request for branch "factory/x" into branch "master" already exists:\n'
        f"{PR_URL}\n"))
    res = publish(ledger, aid, target="pr")
    assert (res.published, res.where) == (True, PR_URL)
    gh.respond("pr create", exit=1, stderr="HTTP 422: Validation Failed\n")
    with pytest.raises(GhError, match="HTTP 422: Validation Failed"):
        publish(ledger, aid, target="pr")
    assert len(engine.load(ledger, aid)[1].published) == 1  # the failure recorded nothing
