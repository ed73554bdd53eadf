"""The two HTTP faces of the operator: the admission webhook (TLS) and health/metrics (plain).

The webhook answers every POST to /mutate with HTTP 200 and an AdmissionReview,
whatever the body: the rule is fail open, and an HTTP error would make the API
server apply the webhook's failurePolicy instead of our answer. The hot path
stays in the event loop (the decision is microseconds of pure Python; a thread
hop would cost more) and logs nothing at INFO.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from asyncio import sslproto
from collections.abc import Callable
from typing import Final

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from prometheus_client import generate_latest

from maxtune.operator import admission
from maxtune.operator.fleet import FleetState
from maxtune.operator.metrics import CONTENT_TYPE, Metrics

log = logging.getLogger(__name__)

# The API server sends objects up to ~3 MiB (twice, for UPDATE); more is not an AdmissionReview.
MAX_BODY: Final = 16 * 1024 * 1024
_JSON: Final = "application/json"
# A body that cannot be read is the client's doing: it hung up, or sent broken chunks.
_UNREADABLE: Final = (ConnectionError, asyncio.IncompleteReadError, HttpProcessingError)


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

# asyncio's TLS transport gives every connection a read buffer of SSLProtocol.max_size,
# 256 KiB in Python 3.11, filled with zeros when the connection opens. The API server opens a
# TLS connection per concurrent webhook call under bursts (hundreds at its default in-flight
# limits): 600 were 150 MiB, past the chart's 256 MiB limit together with the fleet's state,
# and a flood of connections in the webhook benchmark took the operator to 1.8 GiB. A TLS
# record carries at most 16 KiB, so 32 KiB reads whole records; a 3 MiB review takes about
# a hundred reads instead of a dozen. Only the operator serves TLS through asyncio in this
# process (its API client is urllib3), so the class-wide setting reaches only the webhook.
TLS_READ_BUFFER: Final = 32 * 1024
sslproto.SSLProtocol.max_size = TLS_READ_BUFFER


async def _read_capped(request: web.Request, cap: int) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(1 << 16):
        size += len(chunk)
        chunks.append(chunk)
        if size > cap:
            return b"".join(chunks), True
    return b"".join(chunks), False


def webhook_app(
    fleet: FleetState,
    metrics: Metrics,
    *,
    own_namespace: str | None,
    version: str,
    ready: Callable[[], bool],
) -> web.Application:
    duration = metrics.admission_duration
    counters = {r: metrics.admission_requests.labels(r) for r in admission.RESULTS}

    def _answer(outcome: admission.Outcome, started: float) -> web.Response:
        counters[outcome.result].inc()
        duration.observe(time.perf_counter() - started)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("admission %s: %s", outcome.result, outcome.reason)
        return web.Response(body=outcome.body, content_type=_JSON)

    async def mutate(request: web.Request) -> web.Response:
        started = time.perf_counter()
        body = b""
        try:
            try:
                body, too_large = await _read_capped(request, MAX_BODY)
            except _UNREADABLE as exc:  # the client's fault (cut off, broken chunks): not ours
                unreadable = admission.allow(b"", "invalid", f"body not readable: {exc!r}")
                return _answer(unreadable, started)
            if too_large:
                outcome = admission.allow(body, "invalid", "body too large")
            else:
                outcome = admission.review(
                    body,
                    fleet=fleet,
                    own_namespace=own_namespace,
                    version=version,
                    ready=ready(),
                )
        except Exception:  # fail open, whatever went wrong
            log.exception("admission failed; allowing the request unchanged")
            outcome = admission.allow(body, "error", "internal error")
        return _answer(outcome, started)

    app = web.Application(client_max_size=MAX_BODY + 1)
    app.router.add_post("/mutate", mutate)
    return app


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
