"""The board's web server: starlette routes, served by uvicorn, live through server-sent events.

Read-only by construction: every route is a GET (starlette answers 405 to anything else) and
only reads the ledger. Requests must name a host the server was started for (loopback names
by default), so a web page elsewhere cannot reach the board through DNS rebinding; responses
carry a Content-Security-Policy that lets the page load its own scripts and styles and
nothing else. Each request opens the ledger afresh (a changed factory.yaml is seen at once);
one lock serializes the reads, which keeps the caches' writes from racing.

Pages are kept by the change token (and for `MEMO_S` at most): several viewers, or a
viewer's reloads, cost one rendering while nothing changed.

Routes: `/` the board, `/artifact/ID` an artifact's page, `/commit/SHA` a commit's ledger
diff, `/fragment/...` the parts live updates swap in, `/api/board`, `/api/artifact/ID` and
`/api/metrics` (exactly `gptme-factory metrics --json`) as JSON, `/events` the change stream,
`/static/...` the stylesheet, script and vendored chart library.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import ArtifactNotFound, FactoryError, InvalidRecord, UsageError
from ..ledger.store import Ledger
from . import data, render

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")
POLL_S = 1.0
MEMO_S = 15.0


class SecurityHeaders:
    """CSP and friends on every response; no caching of pages that change."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Add the headers to the response's start message."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(b"content-security-policy", render.SERVED_CSP.encode()),
                            (b"x-content-type-options", b"nosniff"),
                            (b"referrer-policy", b"no-referrer"),
                            (b"x-frame-options", b"DENY"),
                            (b"cross-origin-resource-policy", b"same-origin")]
                if not static:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


class Board:
    """The ledger a server shows, the lock its reads take, and the pages it last rendered.

    A page is rendered again when the change token moved, or after `MEMO_S` (its ages and
    elapsed times would go stale); otherwise every viewer gets the same bytes at once.
    """

    def __init__(self, root: Path, ledger_dir: str | None, limit: int) -> None:
        self.root, self.ledger_dir, self.limit = root, ledger_dir, limit
        self.lock = threading.Lock()
        self._memo: dict[str, tuple[str, int, str]] = {}

    def ledger(self) -> Ledger:
        """The ledger, opened afresh."""
        return Ledger.open(self.root, self.ledger_dir)

    def token(self) -> str:
        """The current change token."""
        return data.change_token(self.ledger())

    def read(self, fn: Callable[[Ledger], Any]) -> Any:
        """Run `fn` on a fresh ledger, one reader at a time."""
        with self.lock:
            return fn(self.ledger())

    def page(self, key: str, build: Callable[[Ledger, str], str]) -> str:
        """The HTML `build(ledger, token)` makes, reused while the token and the clock allow."""
        with self.lock:
            ledger = self.ledger()
            token = data.change_token(ledger)
            tick = int(time.monotonic() // MEMO_S)
            kept = self._memo.get(key)
            if kept and kept[0] == token and kept[1] == tick:
                return kept[2]
            html = build(ledger, token)
            if len(self._memo) > 64:
                self._memo.clear()
            self._memo[key] = (token, tick, html)
            return html


def _limit(request: Request, default: int) -> int:
    raw = request.query_params.get("limit")
    if raw is None:
        return default
    try:
        return max(0, int(raw))
    except ValueError:
        raise UsageError(f"limit must be a whole number, not {raw!r}") from None


def _error_page(status: int, message: str) -> HTMLResponse:
    body = render.render("error.html", status=status, message=message,
                         links=render.Links(False, None), static=False, assets={},
                         fragment_url="", token="")
    return HTMLResponse(body, status_code=status)


def create_app(root: Path, ledger_dir: str | None = None, *, limit: int = data.DEFAULT_LIMIT,
               allowed_hosts: list[str] | None = None, poll_s: float = POLL_S) -> Starlette:
    """The board application for the brain repo at `root`."""
    board = Board(root, ledger_dir, limit)

    def page(request: Request) -> Response:
        n = _limit(request, board.limit)
        return HTMLResponse(board.page(f"page:{n}", lambda ledger, token: render.board_page(
            data.board_data(ledger, limit=n), token)))

    def board_fragment(request: Request) -> Response:
        n = _limit(request, board.limit)
        return HTMLResponse(board.page(f"fragment:{n}", lambda ledger, token: (
            render.board_fragment(data.board_data(ledger, limit=n), token))))

    def artifact(request: Request) -> Response:
        aid = request.path_params["aid"]
        return HTMLResponse(board.page(f"artifact:{aid}", lambda ledger, token: (
            render.artifact_page(data.artifact_data(ledger, aid), token))))

    def artifact_fragment(request: Request) -> Response:
        aid = request.path_params["aid"]
        return HTMLResponse(board.page(f"artifact-fragment:{aid}", lambda ledger, token: (
            render.artifact_fragment(data.artifact_data(ledger, aid), token))))

    def commit(request: Request) -> Response:
        sha = request.path_params["sha"]
        return HTMLResponse(board.read(lambda ledger: render.commit_page(
            data.commit_data(ledger, sha))))

    def api_board(request: Request) -> Response:
        n = _limit(request, board.limit)
        return JSONResponse(board.read(lambda ledger: data.board_data(ledger, limit=n)))

    def api_artifact(request: Request) -> Response:
        aid = request.path_params["aid"]
        return JSONResponse(board.read(lambda ledger: data.artifact_data(ledger, aid)))

    def api_metrics(request: Request) -> Response:
        from ..views.factcache import metrics

        return JSONResponse(board.read(metrics))

    async def events(request: Request) -> Response:
        from sse_starlette import EventSourceResponse, ServerSentEvent

        async def stream() -> AsyncIterator[ServerSentEvent]:
            last = None
            while True:
                token = await asyncio.to_thread(board.token)
                if token != last:
                    last = token
                    yield ServerSentEvent(data=token, event="change")
                await asyncio.sleep(poll_s)

        return EventSourceResponse(stream(), ping=15)

    async def on_error(request: Request, exc: Exception) -> Response:
        if isinstance(exc, ArtifactNotFound):
            return _error_page(404, str(exc))
        if isinstance(exc, UsageError):
            return _error_page(400, str(exc))
        if isinstance(exc, InvalidRecord):  # a broken artifact: its files fail to read
            return _error_page(422, str(exc))
        return _error_page(500, str(exc))

    hosts = list(allowed_hosts or LOOPBACK_NAMES)
    routes = [
        Route("/", page), Route("/fragment/board", board_fragment),
        Route("/artifact/{aid}", artifact), Route("/fragment/artifact/{aid}", artifact_fragment),
        Route("/commit/{sha}", commit),
        Route("/api/board", api_board), Route("/api/artifact/{aid}", api_artifact),
        Route("/api/metrics", api_metrics), Route("/events", events),
        Mount("/static", StaticFiles(directory=render.STATIC), name="static"),
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=hosts, www_redirect=False),
                    Middleware(SecurityHeaders)],
        exception_handlers={FactoryError: on_error},
    )


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: a free one); UsageError if it cannot bind."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}; "
                         "pick another --port (0 chooses a free one)") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def url_for(host: str, port: int) -> str:
    """The URL a browser opens for a server on host:port."""
    name = f"[{host.strip('[]')}]" if ":" in host else host
    return f"http://{name}:{port}/"


def serve(root: Path, ledger_dir: str | None, *, host: str, port: int, limit: int,
          on_ready: Callable[[str], None]) -> None:
    """Serve the board until interrupted; `on_ready(url)` once it listens."""
    import uvicorn

    from . import instance

    sock = bind(host, port)
    real_port = sock.getsockname()[1]
    url = url_for(host, real_port)
    hosts = list(LOOPBACK_NAMES)
    if not is_loopback(host):  # any name is fine on a wildcard address: the user asked for it
        hosts += [host, "*"] if host in ("0.0.0.0", "::") else [host]
    app = create_app(root, ledger_dir, limit=limit, allowed_hosts=hosts)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                            timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    ledger = Ledger.open(root, ledger_dir)
    instance.record(ledger, url, started_at=datetime.now(timezone.utc))

    def stopped(signum: int, frame: Any) -> None:
        raise SystemExit(0)

    # uvicorn shuts down gracefully on SIGTERM, then re-raises it for the previous handler:
    # this one, so the record is removed below instead of the process dying on the spot.
    previous = signal.signal(signal.SIGTERM, stopped)
    try:
        on_ready(url)
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass  # uvicorn re-raises Ctrl-C after its shutdown: a normal way to stop
    finally:
        signal.signal(signal.SIGTERM, previous)
        instance.forget(ledger)
        sock.close()
