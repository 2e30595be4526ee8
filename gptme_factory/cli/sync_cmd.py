"""`gptme-factory sync`: exchange ledger events with the other clones through the git remote."""

from __future__ import annotations

import click

from ._common import echo_json, json_option, open_ledger, repo_option


@click.command("sync")
@click.option("--offline", is_flag=True,
              help="No network: integrate what the last fetch brought, show what is unpushed.")
@repo_option
@json_option
def command(offline: bool, repo: str, as_json: bool) -> None:
    """Fetch the brain's remote, take in other clones' ledger events, push this clone's.

    The remote is factory.yaml's `sync.remote` (else the branch's upstream). This clone's
    unpushed ledger commits are replayed on the remote's tip and pushed; a push that loses
    the race to another clone is retried. Refuses, changing nothing, where that would push
    your own non-ledger commits or overwrite your uncommitted files. Names every artifact
    where a fork appeared (`gptme-factory resolve` settles it). Exit 0 when in sync.
    """
    from ..ledger.sync import sync

    report = sync(open_ledger(repo), offline_only=offline)
    if as_json:
        echo_json(report.to_json())
        return
    for line in report.lines():
        click.echo(line)
