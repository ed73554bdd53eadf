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

from maxtune.kube import Kube
from maxtune_dev.testkit import cluster
from tests.faults.fleetkit import KINDS, Labels, create_node, delete, put_kind


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


ROLES = {"h100-a": "h100", "h100-b": "h100", "a100": "a100-slow", "t4-a": "t4", "t4-b": "t4"}


def small_fleet(kube: Kube) -> Iterator[dict[str, Labels]]:
    """Nodes and profiles for the webhook to decide from, each with the labels it calls for.

    Removed afterwards. Call `wait_labelled` once the operator runs: a pod judged before and
    after the labeller's first writes gets two different decisions, which the idempotence
    check would misread as a second pass adding something.
    """
    prefix = f"fuzz-{uuid.uuid4().hex[:6]}-"
    wanted = {prefix + role: KINDS[kind][2] for role, kind in ROLES.items()}
    try:
        for role, kind in ROLES.items():
            create_node(kube, prefix + role, {})
            put_kind(kube, prefix + role, kind)
        yield wanted
    finally:
        for name in wanted:
            delete(kube, f"/api/v1/nodes/{name}")
            delete(kube, f"{cluster.PROFILES}/{name}")


def wait_labelled(kube: Kube, wanted: dict[str, Labels]) -> None:
    """Until every node carries exactly the maxtune.io/ labels its profile calls for."""
    for name, labels in wanted.items():
        cluster.eventually(
            lambda name=name, labels=labels: cluster.maxtune_labels(kube, name) == labels,
            f"labels on {name}",
        )
