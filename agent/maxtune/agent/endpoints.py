"""/metrics, /healthz and /readyz over plain HTTP on the metrics port.

The standard library's threading HTTP server is enough for a per-node
exporter scraped every few seconds, and keeps aiohttp out of the agent. The
server runs in a daemon thread; `stop()` closes the socket.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from maxtune.agent.metrics import CONTENT_TYPE, AgentMetrics

Readiness = Callable[[], tuple[bool, str]]


class Endpoints:
    def __init__(
        self, host: str, port: int, *, metrics: AgentMetrics, readiness: Readiness
    ) -> None:
        endpoints = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    endpoints._send(self, 200, metrics.render(), CONTENT_TYPE)
                elif path == "/healthz":
                    endpoints._send(self, 200, b"ok\n", "text/plain")
                elif path == "/readyz":
                    ready, why = readiness()
                    endpoints._send(
                        self, 200 if ready else 503, (why + "\n").encode(), "text/plain"
                    )
                else:
                    endpoints._send(self, 404, b"not found\n", "text/plain")

            def log_message(self, format: str, *args: object) -> None:
                return  # scrapes every few seconds would drown the agent's own log

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="maxtune-agent-http", daemon=True
        )

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, code: int, body: bytes, ctype: str) -> None:
        handler.send_response(code)
        handler.send_header("Content-Type", ctype)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> Endpoints:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
