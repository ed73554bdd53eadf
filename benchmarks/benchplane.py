"""The benchmarks' control plane: a LocalPlane tuned for 2,000 kwok nodes on 2 cores.

Two changes from the test plane, both about the simulation, not about maxtune:

- kwok renews every node's Lease every 60 s instead of every 10 s (lease 240 s
  instead of 40 s), and the node-lifecycle controller waits 900 s instead of
  50 s before it calls a silent node unhealthy (300 s was enough on one
  machine; on a slower one, creating 5,000 nodes took 258 s and kwok's renewals
  fell so far behind that 955 nodes were marked Unknown and stayed so); new
  nodes get as long to post their first status (the default 60 s left 436
  late-created nodes tainted unreachable in the next try). At the kubelet's
  real rate, 2,000 nodes are 200 Lease writes a second: measured on this machine, 0.85 of
  its 2 cores (API server 0.5, kwok 0.15, etcd 0.13) go to that alone, idle.
  A real 2,000-node cluster pays that on control-plane machines of its own;
  here it would be taken from the operator being measured. maxtune never
  reads Leases of nodes.
- the controller manager may call the API server at 200/s (burst 400) instead
  of 20/s: lifting the not-ready taint from 2,000 new nodes took 410 s at 20/s
  and takes about a minute at 200/s.

`prepare_fleet` puts the fleet on the plane and returns once the nodes are
settled and node writes by the plane's own controllers have stopped (the API
server's request counter stands still), so that every node write afterwards is
the operator's (or kwok's status heartbeat, which goes to the status
subresource and is counted apart).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import apimetrics, nodeaudit
from benchmarks.agentleases import LeaseAgents
from benchmarks.envinfo import environment
from benchmarks.fleetsetup import create_fleet, ensure_namespace, install_crds, wait_settled
from benchmarks.gpufleet import PlannedNode, plan_node
from benchmarks.kubeapi import Api
from benchmarks.procstat import CpuWindow
from maxtune_dev.localplane import LocalPlane

LEASE_SECONDS = 240
BENCH_PLANE_ARGS: dict[str, list[str]] = {
    "kwok": [f"--node-lease-duration-seconds={LEASE_SECONDS}"],
    "kube-controller-manager": [
        "--node-monitor-grace-period=900s",
        "--node-startup-grace-period=900s",
        "--kube-api-qps=200",
        "--kube-api-burst=400",
    ],
}


def bench_plane(audit: Path | None = None, *, profiling: bool = False) -> LocalPlane:
    """The tuned plane; with `audit`, the API server logs node writes there (nodeaudit); with
    `profiling`, it serves /debug/pprof to the admin (the test plane turns it off)."""
    args = {name: list(flags) for name, flags in BENCH_PLANE_ARGS.items()}
    apiserver: list[str] = []
    if audit is not None:
        apiserver += nodeaudit.apiserver_args(audit)
    if profiling:
        apiserver.append("--profiling=true")
    if apiserver:
        args["kube-apiserver"] = apiserver
    return LocalPlane(extra_args=args)


def result_header(benchmark: str, plane: LocalPlane, nodes: int) -> dict[str, Any]:
    """What every benchmark's result starts with: which, where, how big, with which flags."""
    return {
        "benchmark": benchmark,
        "environment": environment(plane.binaries),
        "nodes": nodes,
        "plane_args": {name: list(args) for name, args in plane.extra_args.items()},
    }


@dataclass
class PreparedFleet:
    nodes: list[PlannedNode]
    timings: dict[str, float] = field(default_factory=dict)
    idle_plane: dict[str, Any] = field(default_factory=dict)


def _object_writes(writes: dict[str, float]) -> float:
    """Node writes other than to the status subresource (kwok's heartbeats go there)."""
    return sum(v for k, v in writes.items() if not k.endswith(" status"))


async def wait_quiet(api: Api, *, window_s: float = 5.0, timeout_s: float = 300) -> float:
    """Until nobody wrote a node (status aside) for `window_s`: the TTL and node-lifecycle
    controllers are done with the new nodes, so node writes from now on are the operator's."""
    started = time.monotonic()
    before = _object_writes(apimetrics.node_writes(await apimetrics.scrape(api)))
    while True:
        await asyncio.sleep(window_s)
        after = _object_writes(apimetrics.node_writes(await apimetrics.scrape(api)))
        if after == before:
            return time.monotonic() - started
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(f"nodes still written after {timeout_s:.0f}s")
        before = after


async def prepare_fleet(
    plane: LocalPlane,
    api: Api,
    n: int,
    *,
    agents: LeaseAgents | None = None,
    idle_window_s: float = 10.0,
) -> PreparedFleet:
    """The fleet on the plane, settled. With `agents`, every node's agent creates its
    heartbeat Lease in `agents.namespace` right after its profile and renews it from then
    on (started here, stopped by the caller), so no profile ages during a long setup."""
    fleet = PreparedFleet([plan_node(i) for i in range(n)])
    await install_crds(api)
    if agents is not None:
        await ensure_namespace(api, agents.namespace)
        agents.start()
    fleet.timings["create_s"] = round(await create_fleet(api, fleet.nodes, agents), 2)
    print(f"  created {n} nodes and profiles in {fleet.timings['create_s']:.1f} s", flush=True)
    fleet.timings["settle_s"] = round(await wait_settled(api, [p.name for p in fleet.nodes]), 2)
    fleet.timings["quiet_s"] = round(await wait_quiet(api), 2)
    print(
        f"  nodes Ready and untainted after {fleet.timings['settle_s']:.1f} s more, "
        f"quiet after {fleet.timings['quiet_s']:.1f} s more",
        flush=True,
    )
    window = CpuWindow(plane.pids()).start()
    await asyncio.sleep(idle_window_s)
    fleet.idle_plane = window.stop()
    return fleet
