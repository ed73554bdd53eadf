"""A running `maxtune operator` with a small fleet, and an HTTPS client that keeps its connection.

The fleet (plain Node objects with profiles: H100s that gain from max-autotune, a slow A100, T4s)
gives the webhook something to decide, so fuzzed pods reach the patch-building code.
"""

from __future__ import annotations

import http.client
import ssl
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from maxtune.operator.kube import Kube
from tests.faults.fleetkit import create_node, delete, put_kind
from tests.faults.reuse import opplane


@dataclass
class Webhook:
    """POST bodies to /mutate over one TLS connection (reopened when the server drops it)."""

    port: int
    ca_file: Path
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        self.context = ssl.create_default_context(cafile=str(self.ca_file))
        self._conn: http.client.HTTPSConnection | None = None

    def _connection(self) -> http.client.HTTPSConnection:
        if self._conn is None:
            self._conn = http.client.HTTPSConnection(
                "127.0.0.1", self.port, context=self.context, timeout=self.timeout_s
            )
        return self._conn

    def request(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str] | None = None
    ) -> tuple[int, str, bytes]:
        for attempt in (1, 2):
            conn = self._connection()
            try:
                conn.request(method, path, body=body, headers=headers or {})
                response = conn.getresponse()
                data = response.read()
                if response.getheader("Connection", "").lower() == "close":
                    self.close()
                return response.status, response.getheader("Content-Type", ""), data
            except (http.client.HTTPException, OSError):
                self.close()  # a kept-alive connection the server closed: once more, fresh
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def ask(self, body: bytes) -> bytes:
        status, content_type, data = self.request(
            "POST", "/mutate", body, {"Content-Type": "application/json"}
        )
        assert status == 200, (status, data[:300])
        assert content_type.startswith("application/json"), content_type
        return data

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def small_fleet(kube: Kube) -> Iterator[list[str]]:
    """Nodes and profiles for the webhook to decide from; removed afterwards."""
    prefix = f"fuzz-{uuid.uuid4().hex[:6]}-"
    kinds = {"h100-a": "h100", "h100-b": "h100", "a100": "a100-slow", "t4-a": "t4", "t4-b": "t4"}
    names = [prefix + role for role in kinds]
    try:
        for role, kind in kinds.items():
            create_node(kube, prefix + role, {})
            put_kind(kube, prefix + role, kind)
        yield names
    finally:
        for name in names:
            delete(kube, f"/api/v1/nodes/{name}")
            delete(kube, f"{opplane.PROFILES}/{name}")
