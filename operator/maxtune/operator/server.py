"""The two HTTP faces of the operator: the admission webhook (TLS) and health/metrics (plain).

The webhook answers every POST to /mutate with HTTP 200 and an AdmissionReview,
whatever the body: the rule is fail open, and an HTTP error would make the API
server apply the webhook's failurePolicy instead of our answer. The hot path
stays in the event loop (the decision is microseconds of pure Python; a thread
hop would cost more) and logs nothing at INFO.

The webhook is served by hypercorn, which speaks HTTP/2 to a client that offers
it by ALPN (kube-apiserver does) and HTTP/1.1 to one that does not: over
HTTP/1.1 the API server opens a new TLS connection for every burst beyond its
idle pool (docs/decisions/0009-webhook-http2.md). Health and metrics stay on
aiohttp, plain HTTP.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from hypercorn.asyncio import serve
from hypercorn.config import Config, Sockets
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, HTTPScope, Scope
from prometheus_client import generate_latest

from maxtune.operator import admission
from maxtune.operator.fleet import FleetState
from maxtune.operator.metrics import CONTENT_TYPE, Metrics

log = logging.getLogger(__name__)

# The API server sends objects up to ~3 MiB (twice, for UPDATE); more is not an AdmissionReview.
MAX_BODY: Final = 16 * 1024 * 1024
_JSON_BYTES: Final = b"application/json"
_TEXT: Final = b"text/plain; charset=utf-8"
# Offered by ALPN on the webhook's port, in our order of preference.
ALPN: Final = ("h2", "http/1.1")
# An idle connection is kept this long (aiohttp's default, which the webhook had before).
KEEP_ALIVE_SECONDS: Final = 75.0
# No limit on requests per connection. hypercorn's keep_alive_max_requests (1000 by default)
# ends an HTTP/2 connection with GOAWAY and then cannot send the answers to the streams already
# in flight (h2 refuses frames after its own GOAWAY): those reviews are never answered and the
# API server waits out timeoutSeconds. Reproduced with vegeta (2 of 3,000) and in
# tests/operator/test_operator_http2.py.
REQUESTS_PER_CONNECTION: Final = 2**62
# In-flight requests finish within this when the listener closes; the rest are cut off.
GRACEFUL_SECONDS: Final = 3.0


class _ClientErrors(logging.Filter):
    """aiohttp logs a traceback at ERROR for every malformed request it answers with 400
    (a bad method, a broken header): anyone who can reach the port could flood the log. Those
    are the client's errors; they go to DEBUG. aiohttp's other records pass unchanged."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError) and record.levelno > logging.DEBUG:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


logging.getLogger("aiohttp.server").addFilter(_ClientErrors())
# hpack and h2 log every header they encode or decode at DEBUG: with the operator at
# --log-level debug that would bury the admission records under several lines per request.
for _chatty in ("hpack", "h2"):
    logging.getLogger(_chatty).setLevel(logging.INFO)


class AdmissionApp:
    """POST /mutate as an ASGI application, for the TLS listener below.

    The body is read to its end even past the cap (what is past the cap is
    dropped): hypercorn forgets an HTTP/2 stream once its answer is sent, and
    DATA frames that arrive for it afterwards end the whole connection with an
    unhandled KeyError, an ERROR record per connection that anyone could cause.
    """

    def __init__(
        self,
        fleet: FleetState,
        metrics: Metrics,
        *,
        own_namespace: str | None,
        version: str,
        ready: Callable[[], bool],
    ) -> None:
        self.fleet = fleet
        self.own_namespace = own_namespace
        self.version = version
        self.ready = ready
        self.duration = metrics.admission_duration
        self.counters = {r: metrics.admission_requests.labels(r) for r in admission.RESULTS}

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "websocket":  # hypercorn accepts upgrades on its own: refuse
            await send({"type": "websocket.close", "code": 1000, "reason": None})
        else:
            await _lifespan(receive, send)

    async def _http(
        self, scope: HTTPScope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        started = time.perf_counter()
        body, too_large, complete = await _read_capped(receive, MAX_BODY)
        if scope["path"] != "/mutate":
            await _respond(send, 404, b"not found\n", _TEXT)
            return
        if scope["method"] != "POST":
            await _respond(send, 405, b"method not allowed\n", _TEXT, [(b"allow", b"POST")])
            return
        try:
            if not complete:  # the client hung up or reset the stream: not ours
                outcome = admission.allow(b"", "invalid", "body not readable: disconnected")
            elif too_large:
                outcome = admission.allow(body, "invalid", "body too large")
            else:
                outcome = admission.review(
                    body,
                    fleet=self.fleet,
                    own_namespace=self.own_namespace,
                    version=self.version,
                    ready=self.ready(),
                )
        except Exception:  # fail open, whatever went wrong
            log.exception("admission failed; allowing the request unchanged")
            outcome = admission.allow(body, "error", "internal error")
        self.counters[outcome.result].inc()
        self.duration.observe(time.perf_counter() - started)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("admission %s: %s", outcome.result, outcome.reason)
        await _respond(send, 200, outcome.body, _JSON_BYTES)


async def _read_capped(receive: ASGIReceiveCallable, cap: int) -> tuple[bytes, bool, bool]:
    """The body up to just past `cap`, whether it went past, and whether it ended (no hang-up)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), size > cap, False
        chunk = message["body"]
        if size <= cap:
            chunks.append(chunk)
        size += len(chunk)
        if not message["more_body"]:
            return b"".join(chunks), size > cap, True


async def _respond(
    send: ASGISendCallable,
    status: int,
    body: bytes,
    content_type: bytes,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [(b"content-type", content_type), (b"content-length", b"%d" % len(body))]
    headers += extra or []
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _lifespan(receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
    """Nothing to set up or tear down: the operator owns the state; answer hypercorn's protocol."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def webhook_app(
    fleet: FleetState,
    metrics: Metrics,
    *,
    own_namespace: str | None,
    version: str,
    ready: Callable[[], bool],
) -> AdmissionApp:
    return AdmissionApp(fleet, metrics, own_namespace=own_namespace, version=version, ready=ready)


def health_app(
    metrics: Metrics, *, healthy: Callable[[], bool], ready: Callable[[], bool]
) -> web.Application:
    async def metrics_view(request: web.Request) -> web.Response:
        body = generate_latest(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    async def healthz(request: web.Request) -> web.Response:
        ok = healthy()
        return web.Response(status=200 if ok else 500, text="ok\n" if ok else "unhealthy\n")

    async def readyz(request: web.Request) -> web.Response:
        ok = ready()
        return web.Response(status=200 if ok else 503, text="ready\n" if ok else "not ready\n")

    app = web.Application()
    app.router.add_get("/metrics", metrics_view)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


class _ListenerConfig(Config):
    """hypercorn's Config, serving our bound socket with our live SSLContext.

    hypercorn builds an SSLContext of its own from certificate files; ours is the one
    CertReloader loads rotated certificates into (tls.py), so it must be the one served.
    """

    def __init__(self, sock: socket.socket, context: ssl.SSLContext) -> None:
        super().__init__()
        self._sock = sock
        self._context = context

    @property
    def ssl_enabled(self) -> bool:
        return True

    def create_ssl_context(self) -> ssl.SSLContext:
        return self._context

    def create_sockets(self) -> Sockets:
        return Sockets(secure_sockets=[self._sock], insecure_sockets=[], quic_sockets=[])


def _bind(host: str, port: int, backlog: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(backlog)  # from here on connections queue until hypercorn accepts them
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


@dataclass
class Listener:
    """The webhook's TLS listener, served by hypercorn in the running event loop."""

    port: int
    _stop: asyncio.Event
    _task: asyncio.Task[None]

    def alive(self) -> bool:
        return not self._task.done()

    async def close(self) -> None:
        """Stop accepting, let requests in flight finish (GRACEFUL_SECONDS at most), return."""
        self._stop.set()
        await self._task


async def serve_webhook(
    app: AdmissionApp, host: str, port: int, ssl_context: ssl.SSLContext
) -> Listener:
    """Serve `app` over TLS with ALPN h2 and http/1.1; port 0 binds a free port.

    ALPN is set on `ssl_context` itself, the live one that certificate reloads go into.
    """
    ssl_context.set_alpn_protocols(list(ALPN))
    sock = _bind(host, port, backlog=512)
    config = _ListenerConfig(sock, ssl_context)
    config.backlog = 512
    config.accesslog = None
    # hypercorn would otherwise give "hypercorn.error" a stderr handler of its own; its records
    # (the listening address at INFO) go through the operator's logging instead.
    config.errorlog = logging.getLogger("hypercorn.error")
    config.keep_alive_timeout = KEEP_ALIVE_SECONDS
    config.keep_alive_max_requests = REQUESTS_PER_CONNECTION
    config.graceful_timeout = GRACEFUL_SECONDS
    config.include_server_header = False
    stop = asyncio.Event()
    task = asyncio.create_task(serve(app, config, shutdown_trigger=stop.wait), name="webhook")
    return Listener(int(sock.getsockname()[1]), stop, task)


async def start(
    app: web.Application, host: str, port: int, ssl_context: ssl.SSLContext | None = None
) -> tuple[web.AppRunner, int]:
    """Serve `app`; returns the runner (for cleanup) and the bound port (port 0: a free one)."""
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context, backlog=512)
    await site.start()
    addresses = runner.addresses  # (host, port, ...) of every bound socket
    bound = addresses[0][1] if addresses else port
    return runner, int(bound)
