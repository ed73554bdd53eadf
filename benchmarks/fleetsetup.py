"""Putting the benchmark fleet on the plane: CRDs, nodes, profiles, all in parallel.

Creating 2,000 nodes and profiles is 8,000 API calls (node, profile, profile
status, the agent's heartbeat Lease); they go out 32 nodes at a time over one
keep-alive pool, which is what the API server and etcd on 2 cores take without
queueing for long. Each node's agent starts renewing its Lease as soon as it
has created it (benchmarks.agentleases), as a real one would. The fleet is
only handed to the operator once kwok has made every node Ready and the
node-lifecycle controller has lifted its not-ready taint, so the operator
starts against a settled cluster and nothing else is writing nodes meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from benchmarks.agentleases import LeaseAgents
from benchmarks.gpufleet import PlannedNode
from benchmarks.kubeapi import CRDS, MERGE_PATCH, PROFILES, Api, ApiError

ROOT = Path(__file__).resolve().parents[1]
CREATE_CONCURRENCY = 32


async def install_crds(api: Api, *, timeout_s: float = 60) -> None:
    names = []
    for path in sorted((ROOT / "crds").glob("*.yaml")):
        body = yaml.safe_load(path.read_text())
        names.append(body["metadata"]["name"])
        await api.call("POST", CRDS, body, ok=(409,))
    deadline = time.monotonic() + timeout_s
    for name in names:
        while True:
            crd = await api.call("GET", f"{CRDS}/{name}")
            conditions = (crd.get("status") or {}).get("conditions") or []
            if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"CRD {name} not Established after {timeout_s:.0f}s")
            await asyncio.sleep(0.2)


async def put_profile_status(api: Api, planned: PlannedNode) -> None:
    await api.call(
        "PATCH",
        f"{PROFILES}/{planned.name}/status",
        planned.profile_status,
        content_type=MERGE_PATCH,
    )


async def create_node_and_profile(
    api: Api, planned: PlannedNode, agents: LeaseAgents | None = None
) -> None:
    """The node, then its agent's first round: the profile, its status, its heartbeat Lease
    (after which the agent renews the Lease on its interval and leaves the profile alone)."""
    node = await api.call("POST", "/api/v1/nodes", planned.node)
    await api.call("POST", PROFILES, planned.profile_spec)
    await put_profile_status(api, planned)
    if agents is not None:
        await agents.add(planned.name, (node.get("metadata") or {}).get("uid"))


async def create_fleet(
    api: Api, fleet: Sequence[PlannedNode], agents: LeaseAgents | None = None
) -> float:
    """Create every node and profile (and Lease); returns the seconds it took."""
    started = time.monotonic()
    semaphore = asyncio.Semaphore(CREATE_CONCURRENCY)

    async def one(planned: PlannedNode) -> None:
        async with semaphore:
            await create_node_and_profile(api, planned, agents)

    await asyncio.gather(*(one(p) for p in fleet))
    return time.monotonic() - started


def node_settled(node: dict[str, Any]) -> bool:
    """Ready, and the not-ready taint lifted: schedulable, and nobody writes it any more."""
    conditions = (node.get("status") or {}).get("conditions") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    taints = (node.get("spec") or {}).get("taints") or []
    return ready and not any(t.get("key", "").startswith("node.kubernetes.io/") for t in taints)


def _unsettled(name: str, node: dict[str, Any] | None) -> str:
    """Why one node is not settled, in a few words: its Ready condition and its taints."""
    if node is None:
        return f"{name}: absent"
    conditions = (node.get("status") or {}).get("conditions") or []
    ready: dict[str, Any] = next((c for c in conditions if c.get("type") == "Ready"), {})
    taints = [t.get("key", "") for t in (node.get("spec") or {}).get("taints") or []]
    return f"{name}: Ready={ready.get('status', '?')} ({ready.get('reason', '')}), taints {taints}"


async def wait_settled(api: Api, names: Sequence[str], *, timeout_s: float = 600) -> float:
    """Until every named node is Ready and untainted; returns the seconds waited."""
    started = time.monotonic()
    wanted = set(names)
    while True:
        nodes = await api.list_all("/api/v1/nodes")
        settled = {n["metadata"]["name"] for n in nodes if node_settled(n)}
        if wanted <= settled:
            return time.monotonic() - started
        if time.monotonic() - started > timeout_s:
            missing = sorted(wanted - settled)
            by_name = {n["metadata"]["name"]: n for n in nodes}
            sample = "; ".join(_unsettled(n, by_name.get(n)) for n in missing[:5])
            raise TimeoutError(
                f"{len(missing)} node(s) not Ready and untainted after {timeout_s:.0f}s "
                f"(e.g. {sample})"
            )
        await asyncio.sleep(2)


async def ensure_namespace(api: Api, name: str, labels: dict[str, str] | None = None) -> None:
    body = {"metadata": {"name": name, "labels": labels or {}}}
    await api.call("POST", "/api/v1/namespaces", body, ok=(409,))
    deadline = time.monotonic() + 60
    while (
        await api.call("GET", f"/api/v1/namespaces/{name}/serviceaccounts/default", ok=(404,))
        is None
    ):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no default service account in {name}")
        await asyncio.sleep(0.25)


async def put_heartbeat(api: Api, planned: PlannedNode) -> bool:
    """What an agent before 0.2 (or one run without a Lease namespace) sends when nothing but
    the heartbeat changed (maxtune.agent.kube): a merge patch of `status.heartbeatTime`.

    False when it failed (refused, or no answer within the client's timeout): an agent counts
    that and tries again next round, so one overloaded moment does not end the benchmark.
    """
    beat = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    try:
        await api.call(
            "PATCH",
            f"{PROFILES}/{planned.name}/status",
            {"status": {"heartbeatTime": beat}},
            content_type=MERGE_PATCH,
        )
    except (ApiError, OSError, TimeoutError):
        return False
    return True


async def heartbeat_round(
    api: Api, fleet: Sequence[PlannedNode], period_s: float
) -> tuple[float, int]:
    """Every agent heartbeats once in its profile (the old way), spread evenly over
    `period_s`, oldest first, as agents on their 60 s default period do; returns the seconds
    it took and how many heartbeats failed. Cancelling it cancels the updates in flight."""
    started = time.monotonic()
    gap = period_s / max(1, len(fleet))
    pending: set[asyncio.Task[bool]] = set()
    sent: list[asyncio.Task[bool]] = []
    try:
        for i, planned in enumerate(fleet):
            delay = started + i * gap - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(put_heartbeat(api, planned))
            pending.add(task)
            sent.append(task)
            task.add_done_callback(pending.discard)
        if pending:
            await asyncio.gather(*pending)
    finally:
        for task in list(pending):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*pending, return_exceptions=True)
    return time.monotonic() - started, sum(1 for t in sent if not t.result())
