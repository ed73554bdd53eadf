"""A reference mutating webhook: no decision, one constant small JSON patch, the operator's TLS.

    python -m benchmarks.refwebhook --port P --tls-cert-file C --tls-key-file K --stats-port S

The webhook benchmark's third arm. It is served exactly as `maxtune operator`
serves its webhook (maxtune.operator.server.start: aiohttp, the same TLS context
from maxtune.operator.tls, the same backlog, no access log), answers every
review with an allowed AdmissionReview carrying one constant patch (the
`maxtune.io/decision` annotation, value `reference`) with the webhook's own JSON codec
(maxtune.operator.wirejson), and does nothing else:
no watches, no fleet, no decision. The API server's cost of calling *a*
webhook on this plane is then what this arm adds over no webhook at all;
what maxtune adds beyond it is maxtune's own.

It also counts what the transport does, on the server's side of each call:
connections accepted (each one a TLS handshake), how many of those resumed a
TLS session, and requests per connection; `GET /stats` on the plain stats port
answers them as JSON. And it probes its event loop's lag as the operator does
(maxtune.operator.looplag, the operator's metric name and buckets), served at
`GET /metrics` on the stats port, so the two servers' waits compare directly.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import signal
import sys
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from maxtune.contract.metricspec import CONTENT_TYPE
from maxtune.contract.names import PREFIX
from maxtune.operator import looplag, server
from maxtune.operator.metrics import LOOP_LAG, LOOP_LAG_BUCKETS
from maxtune.operator.tls import server_context
from maxtune.operator.wirejson import dumps, loads

ANNOTATION = f"{PREFIX}decision"
_POINTER = ANNOTATION.replace("~", "~0").replace("/", "~1")  # JSON pointer escaping
_ADD_ONE = [{"op": "add", "path": f"/metadata/annotations/{_POINTER}", "value": "reference"}]
_ADD_MAP = [{"op": "add", "path": "/metadata/annotations", "value": {ANNOTATION: "reference"}}]
# The two constant patches, encoded once: with or without an annotations map on the pod.
PATCH_ONE = base64.b64encode(json.dumps(_ADD_ONE).encode()).decode()
PATCH_MAP = base64.b64encode(json.dumps(_ADD_MAP).encode()).decode()


class Transport:
    """Connections and TLS handshakes as seen by the server, from the requests' own transports."""

    def __init__(self) -> None:
        self.seen: weakref.WeakSet[Any] = weakref.WeakSet()
        self.counts: Counter[str] = Counter()

    def note(self, request: web.Request) -> None:
        self.counts["requests"] += 1
        transport = request.transport
        # One SSLObject per TLS connection, alive as long as the connection is.
        ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
        if ssl_object is None or ssl_object in self.seen:
            return
        self.seen.add(ssl_object)
        self.counts["connections"] += 1
        if ssl_object.session_reused:
            self.counts["tls_resumed"] += 1


def answer(body: bytes) -> bytes:
    review = loads(body)
    request = review.get("request") or {}
    pod = request.get("object") or {}
    annotated = isinstance((pod.get("metadata") or {}).get("annotations"), dict)
    response = {
        "uid": request.get("uid", ""),
        "allowed": True,
        "patchType": "JSONPatch",
        "patch": PATCH_ONE if annotated else PATCH_MAP,
    }
    return dumps(
        {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}
    )


def apps(
    transport: Transport, registry: CollectorRegistry | None = None
) -> tuple[web.Application, web.Application]:
    async def mutate(request: web.Request) -> web.Response:
        transport.note(request)
        return web.Response(body=answer(await request.read()), content_type="application/json")

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(dict(transport.counts))

    hook = web.Application(client_max_size=server.MAX_BODY + 1)
    hook.router.add_post("/mutate", mutate)
    plain = web.Application()
    plain.router.add_get("/stats", stats)
    plain.router.add_get("/readyz", lambda request: _ok())
    if registry is not None:
        plain.router.add_get("/metrics", _metrics_view(registry))
    return hook, plain


def _metrics_view(registry: CollectorRegistry) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def metrics(request: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    return metrics


async def _ok() -> web.Response:
    return web.Response(text="ready\n")


async def serve(args: argparse.Namespace) -> None:
    transport = Transport()
    registry = CollectorRegistry()
    lag = Histogram(LOOP_LAG.name, LOOP_LAG.help, buckets=LOOP_LAG_BUCKETS, registry=registry)
    hook, plain = apps(transport, registry)
    probe = asyncio.create_task(looplag.probe(lag.observe), name="loop-lag")
    tls = server_context(args.tls_cert_file, args.tls_key_file)
    runners = [
        (await server.start(hook, args.host, args.port, tls))[0],
        (await server.start(plain, args.host, args.stats_port))[0],
    ]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    probe.cancel()
    for runner in runners:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.refwebhook", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--stats-port", type=int, required=True)
    parser.add_argument("--tls-cert-file", type=Path, required=True)
    parser.add_argument("--tls-key-file", type=Path, required=True)
    asyncio.run(serve(parser.parse_args(sys.argv[1:] if argv is None else argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
