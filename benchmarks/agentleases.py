"""Simulated agents' heartbeats: one coordination.k8s.io Lease per node, renewed on an interval.

A real agent (maxtune.agent.kube.KubeSink) writes its GPUNodeProfile only when
something changed and proves it is alive by renewing a Lease named after its
node in the release namespace, every round (60 s by default). The benchmark's
agents must do the same from the moment their node exists, through the whole
setup, or a long setup (5,000 nodes take minutes) ages their profiles past the
operator's staleness window and the measured phases see labels removed and
written back that no real fleet would write.

The bodies are the agent's own (maxtune.agent.lease): the first round creates
the Lease (label `maxtune.io/agent-heartbeat=true`, the Node as owner, holder =
node, `leaseDurationSeconds` = max(60, 3 x interval), acquire and renew time);
every later round PUTs the Lease as the last answer left it with a new renewTime
and without its field-tracking record. A conflict or a missing Lease reads (or
creates) it and writes again, as the agent does. Renewals are scheduled per node
from its own creation, so the fleet renews evenly, never in bursts, and every
node once per interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from benchmarks.kubeapi import Api, ApiError
from maxtune.agent.lease import new_lease, node_owner, renewal

LEASES = "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"


def lease_seconds(interval_s: float) -> int:
    """What the agent's CLI passes to KubeSink: three intervals, at least a minute."""
    return int(max(60, 3 * interval_s))


class LeaseAgents:
    """Every added node's agent renews its Lease every `interval_s`, until `stop()`.

    `add()` is the agent's first round (it creates the Lease and returns when it
    exists); the renewals run on a task of their own, at most `concurrency` in
    flight. While `paused`, renewals that fall due are skipped (a phase in which
    the agents heartbeat in their profiles, as agents before 0.2 did); each
    resumes on its own schedule afterwards.
    """

    def __init__(
        self, api: Api, namespace: str, *, interval_s: float = 60.0, concurrency: int = 16
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.interval_s = interval_s
        self.collection = LEASES.format(namespace=namespace)
        self.paused = False
        self.counts: Counter[str] = Counter()  # created / renewed / recovered / failed
        self.latest: dict[str, dict[str, Any]] = {}  # node -> the Lease as last written
        self._due: list[tuple[float, str]] = []
        self._wake = asyncio.Event()
        self._semaphore = asyncio.Semaphore(concurrency)
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()

    async def add(self, node: str, node_uid: str | None) -> None:
        owner = node_owner(node, node_uid) if node_uid else None
        seconds = lease_seconds(self.interval_s)
        body = new_lease(self.namespace, node, owner, seconds, datetime.now(UTC))
        answer = await self.api.call("POST", self.collection, body, ok=(409,))
        if answer is None:  # left over from an earlier run of this plane: take it over
            answer = await self._recover(node)
        self.latest[node] = answer
        self.counts["created"] += 1
        heapq.heappush(self._due, (time.monotonic() + self.interval_s, node))
        self._wake.set()

    def start(self) -> LeaseAgents:
        self._task = asyncio.create_task(self._run(), name="lease-agents")
        return self

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._inflight) if t is not None]
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)

    def check(self) -> None:
        """Raise if the renewal loop died (a bug, not a failed request: those are counted)."""
        if self._task is not None and self._task.done() and not self._task.cancelled():
            self._task.result()

    async def _run(self) -> None:
        while True:
            now = time.monotonic()
            while self._due and self._due[0][0] <= now:
                due, node = heapq.heappop(self._due)
                heapq.heappush(self._due, (due + self.interval_s, node))
                if self.paused:  # this round, the agent heartbeats some other way
                    self.counts["skipped"] += 1
                    continue
                await self._semaphore.acquire()
                task = asyncio.create_task(self._renew(node))
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)
            wait = self._due[0][0] - time.monotonic() if self._due else 1.0
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.001, wait)):
                    await self._wake.wait()

    async def _renew(self, node: str) -> None:
        try:
            seconds = lease_seconds(self.interval_s)
            body = renewal(self.latest[node], node, seconds, datetime.now(UTC))
            try:
                self.latest[node] = await self.api.call("PUT", f"{self.collection}/{node}", body)
                self.counts["renewed"] += 1
            except ApiError as exc:
                if exc.status not in (404, 409):
                    raise
                self.latest[node] = await self._recover(node)
                self.counts["recovered"] += 1
        except (ApiError, OSError, TimeoutError):
            self.counts["failed"] += 1  # the next round tries again, as the agent's would
        finally:
            self._semaphore.release()

    async def _recover(self, node: str) -> dict[str, Any]:
        """Read the Lease (or create it) and write it renewed: the agent's conflict path."""
        path = f"{self.collection}/{node}"
        current = await self.api.call("GET", path, ok=(404,))
        now, seconds = datetime.now(UTC), lease_seconds(self.interval_s)
        if current is None:
            answer: dict[str, Any] = await self.api.call(
                "POST", self.collection, new_lease(self.namespace, node, None, seconds, now)
            )
            return answer
        written: dict[str, Any] = await self.api.call(
            "PUT", path, renewal(current, node, seconds, now)
        )
        return written
