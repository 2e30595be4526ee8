"""`gptme-factory resolve`: settle a fork by keeping one branch (the other stays, discarded)."""

from __future__ import annotations

import click

from ._common import echo_json, json_option, open_ledger, repo_option


@click.command("resolve")
@click.argument("target")
@click.option("--keep", "keep", metavar="EVENT",
              help="An event of the branch to keep: its hash (12 hex digits) or file name.")
@click.option("--reason", default="", help="Why this branch, for the record.")
@repo_option
@json_option
def command(target: str, keep: str | None, reason: str, repo: str, as_json: bool) -> None:
    """Settle a fork in TARGET (an artifact, or `line:NAME`) by keeping one branch.

    Without --keep, lists each unresolved fork and its branches. With it, records a
    `fork_resolved` event after the kept branch's tip: the stream follows that branch again
    and `verify` is clean; the other branch's events stay in the ledger and in git history.
    """
    from ..errors import UsageError
    from ..line.forks import forks, resolve
    from ..views.present import describe_event

    ledger = open_ledger(repo)
    if keep is None:
        found = forks(ledger, target)
        if as_json:
            echo_json({"target": target, "forks": [
                {"parent": f.parent, "after": f.after.path if f.after else None,
                 "branches": [[e.path for e in b.events] for b in f.branches]} for f in found]})
            return
        if not found:
            click.echo(f"{target}: no unresolved fork")
            return
        for f in found:
            after = f.after.path.rpartition("/")[2] if f.after else "its start"
            click.echo(f"fork in {f.target} after {after}: {len(f.branches)} branches")
            for b in f.branches:
                tip = b.events[-1]
                more = f", {len(b.events) - 1} more to {tip.digest[:12]}" if len(b.events) > 1 \
                    else ""
                click.echo(f"  {b.head.digest[:12]}  {describe_event(b.head)}{more}")
        example = found[0].branches[0].head.digest[:12]
        raise UsageError(f"name the branch to keep: `gptme-factory resolve {found[0].target} "
                         f"--keep {example}` (any event of that branch)")
    stored = resolve(ledger, target, keep, reason=reason)
    kept = len(stored.event.choices)
    dropped = sum(len(c.discarded) for c in stored.event.choices)
    if as_json:
        echo_json({"target": target, "event": stored.path, "hash": stored.digest,
                   "choices": [c.model_dump() for c in stored.event.choices]})
        return
    click.echo(f"resolved: {stored.path}")
    click.echo(f"  kept the branch of {keep} at {kept} fork(s); {dropped} other branch(es) "
               "stay in the ledger, discarded")
