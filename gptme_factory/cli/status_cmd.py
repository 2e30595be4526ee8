"""`gptme-factory status`: the board, artifacts grouped by state."""

from __future__ import annotations

from datetime import datetime, timezone

import click

from ._common import echo_json, json_option, open_ledger, repo_option

STATE_ORDER = ["idea", "designed", "patched", "verified", "published", "measured", "closed",
               "rejected", "abandoned", "broken"]


def age(iso: str, now: datetime) -> str:
    """A short age like 5m, 3h, 2d."""
    if not iso:
        return "?"
    secs = max(0, int((now - datetime.fromisoformat(iso)).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size:
            return f"{secs // size}{unit}"
    return f"{secs}s"


@click.command("status")
@click.option("--no-cache", is_flag=True, help="Ignore the status cache (slower, same answer).")
@repo_option
@json_option
def command(no_cache: bool, repo: str, as_json: bool) -> None:
    """Show every artifact grouped by state, with its age and last event."""
    from ..board import ArtifactSummary, load_summaries

    ledger = open_ledger(repo)
    summaries = load_summaries(ledger, use_cache=not no_cache)
    if as_json:
        echo_json({"artifacts": [s.to_json() for s in summaries]})
        return
    if not summaries:
        click.echo("no artifacts yet: `gptme-factory intake TITLE --demand ... --consumer ... --accept ...`")
        return
    now = datetime.now(timezone.utc)
    groups: dict[str, list[ArtifactSummary]] = {}
    for s in summaries:
        groups.setdefault(s.state, []).append(s)
    order = STATE_ORDER + sorted(set(groups) - set(STATE_ORDER))
    lines: list[str] = []
    for state in order:
        items = groups.get(state)
        if not items:
            continue
        lines.append(f"{state} ({len(items)})")
        for s in items:
            stage = f"{s.stage}:{s.status}" if s.stage else s.status
            lines.append(
                f"  {s.artifact:<48} {stage:<22} {age(s.created_at, now):>5}  "
                f"last {s.last_event} {age(s.last_at, now)} ago  {s.title}"
            )
            if s.problem:
                lines.append(f"    ! {s.problem}")
    click.echo("\n".join(lines))
