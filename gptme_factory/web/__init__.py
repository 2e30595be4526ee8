"""The board: a read-only web page over the ledger, served locally or written as one file.

An adapter like the CLI and the gptme tool: it reads the core's views (board summaries, running
cells, artifact records, metrics) and never writes the ledger. `data` builds plain JSON-able
dicts, `render` turns them into HTML with jinja2 (autoescaped), `server` serves them with
starlette and uvicorn (live updates over server-sent events), `instance` keeps track of a board
running in the background. The core never imports this package.
"""
