"""`gptme-factory board`: the factory in a browser (served locally, or one static HTML file)."""

from __future__ import annotations

import click

from ._common import open_ledger, repo_option


@click.command("board")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but loopback exposes the board: a warning.")
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Port to listen on (0: a free one).")
@click.option("--limit", type=click.IntRange(0), default=50, show_default=True,
              help="Cards shown per column (0: all); the rest are counted.")
@click.option("--html", "html_file", type=click.Path(dir_okay=False, allow_dash=True),
              default=None, help="Write the board as one self-contained HTML file and exit "
                                 "(`-`: standard output).")
@click.option("--detach", is_flag=True,
              help="Serve in the background, print the URL and return.")
@click.option("--stop", is_flag=True, help="Stop the board served in the background.")
@repo_option
def command(host: str, port: int, limit: int, html_file: str | None, detach: bool, stop: bool,
            repo: str) -> None:
    """Serve a live, read-only web page of the ledger and print its URL.

    Lines as swimlanes and stages as columns, with a card per artifact (state, time in
    stage, attempt n/max, cost, demand, why it is blocked or needs a person); the running
    cells with their budgets and latest output; each artifact's timeline, handoffs, gate
    evidence and cost per cell; the metrics as charts. It updates within seconds of a
    ledger change. With --html it writes the same page as one file that works offline.
    """
    ledger = open_ledger(repo)
    if stop:
        from ..web.instance import stop as stop_board

        rec = stop_board(ledger)
        click.echo(f"stopped the board at {rec['url']}" if rec else "no board was running")
        return
    if html_file is not None:
        from ..web.static_file import write_static

        size = write_static(ledger, html_file, limit=limit)
        if html_file != "-":
            click.echo(f"wrote {html_file} ({size // 1024} KiB)")
        return
    from ..web.server import is_loopback

    if not is_loopback(host):
        click.echo(f"warning: serving on {host}: anyone who can reach this address can read "
                   "the ledger (titles, handoffs, costs)", err=True)
    if detach:
        from ..web.instance import start_detached

        rec = start_detached(ledger, host=host, port=port, limit=limit)
        click.echo(f"board: {rec['url']} (in the background; stop: gptme-factory board --stop)")
        return
    from ..web.server import serve

    def ready(url: str) -> None:
        click.echo(f"board: {url} (read-only; Ctrl-C stops it)")

    serve(ledger.repo.root, ledger.rel, host=host, port=port, limit=limit, on_ready=ready)
