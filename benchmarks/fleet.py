"""The labeller at fleet scale: 2,000 kwok GPU nodes with GPUNodeProfiles of mixed classes.

    python -m benchmarks.fleet [--nodes 2000] [--heartbeat-s 60] [--out docs/benchmarks]

Phases, one plane, one operator process:
1. start: the fleet is in place (nodes Ready, profiles published, node writes
   quiet); `maxtune operator` starts. Measured: time to ready, to the first
   label, to every node carrying exactly its expected labels (from the
   contract code, not the operator); label writes three ways (the operator's
   counter, the API server's audit log of node writes by writer, label changes
   seen on a watch), and the API server's PATCH counter beside them.
2. change: 10% of the profiles report a measured gain below the minimum, so
   their nodes' recommended mode becomes `default`. Same measurements, from
   the first changed profile sent.
3. heartbeats: one interval of the agents' own heartbeats (every agent renews
   its Lease once; at their 60 s default 5,000 nodes send 83 Lease PUTs a
   second): nothing may be written, and the CPU of the operator, the API
   server and etcd is what a steady fleet costs.
4. legacy heartbeats (`--legacy-heartbeats`): the same interval with the
   agents heartbeating the old way, a merge patch of their profile's
   `status.heartbeatTime` (agents before 0.2, mid rolling upgrade): nothing may
   be written either, and its CPU next to phase 3's is the Lease's saving, in
   one run.
Throughout, from the moment each node exists (setup included), the simulated
agents renew their Leases on their interval (benchmarks.agentleases), so no
profile ever ages past the staleness window. Also throughout: the operator's
RSS at 10 Hz (psutil; the process, all threads) and the CPU seconds of every
process of the plane, the operator and this driver (which plays the agents).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks import apimetrics, report
from benchmarks.agentleases import LeaseAgents
from benchmarks.benchplane import bench_plane, prepare_fleet, result_header
from benchmarks.fleetreport import render
from benchmarks.fleetsetup import heartbeat_round, put_profile_status
from benchmarks.gpufleet import CHANGED_GAIN, PlannedNode, changeable, plan_node
from benchmarks.kubeapi import Api, Credentials, bounded
from benchmarks.nodeaudit import NodeAudit, operator_writes
from benchmarks.nodewatch import NodeWatcher
from benchmarks.procstat import CpuWindow, RssSampler, load_average
from benchmarks.stats import latency_summary
from maxtune_dev.localplane import LocalPlane
from maxtune_dev.testkit.operator import OperatorProcess, write_pki

MIB = 2**20
LABEL_WRITES = "maxtune_operator_label_writes_total"
NAMESPACE = "maxtune-system"
DEFAULT_INTERVAL_S = 60.0  # the agent's --interval default
# The requests whose latency the API server reports per phase (verb, resource, subresource).
API_REQUESTS = {
    "PATCH nodes": ("PATCH", "nodes", ""),
    "LIST nodes": ("LIST", "nodes", ""),
    "LIST gpunodeprofiles": ("LIST", "gpunodeprofiles", ""),
    "LIST leases": ("LIST", "leases", ""),
    "PUT leases": ("PUT", "leases", ""),
    "PATCH gpunodeprofiles/status": ("PATCH", "gpunodeprofiles", "status"),
}


class Phase:
    """Counters before a phase; `finish()` gives what the phase did."""

    def __init__(
        self,
        api: Api,
        op: OperatorProcess,
        watcher: NodeWatcher,
        pids: dict[str, int],
        audit: NodeAudit,
    ):
        self.api, self.op, self.watcher, self.audit = api, op, watcher, audit
        self.window = CpuWindow(pids)

    async def begin(self) -> Phase:
        self.scraped = await apimetrics.scrape(self.api)
        self.patches = apimetrics.node_writes(self.scraped)
        self.writes = self.op.metric(LABEL_WRITES) if self.op.proc is not None else 0.0
        self.watcher.reset_counts()
        self.audit.mark()
        self.window.start()
        self.started = time.monotonic()
        return self

    async def finish(self, nodes: int, settle_s: float) -> dict[str, Any]:
        await asyncio.sleep(settle_s)  # writes that come late still count
        cpu = self.window.stop()
        scraped = await apimetrics.scrape(self.api)
        after = apimetrics.node_writes(scraped)
        by_writer = self.audit.since_mark()
        latency = {
            name: apimetrics.request_latency(scraped, self.scraped, *request)
            for name, request in API_REQUESTS.items()
        }
        return {
            "apiserver_latency": {k: v for k, v in latency.items() if v["p50"].get("count")},
            "apf": apimetrics.apf(scraped, self.scraped),
            "node_writes_by_writer": by_writer,
            # profile written -> the operator's write of its node, both by the API server's clock
            "operator_lag": latency_summary(self.audit.lags_since_mark()),
            "operator_node_writes_audit": operator_writes(by_writer),
            "label_writes_operator_metric": int(self.op.metric(LABEL_WRITES) - self.writes),
            "node_writes_apiserver": apimetrics.delta(after, self.patches),
            "watch": self.watcher.change_summary(nodes),
            "cpu": cpu,
            "settle_after_s": settle_s,
        }


async def start_phase(
    op: OperatorProcess, watcher: NodeWatcher, phase: Phase, rss: list[RssSampler], timeout_s: float
) -> dict[str, Any]:
    op.start(wait=False)
    rss.append(RssSampler(op.pid).start())
    phase.window.track("operator", op.pid)
    ready_s = await asyncio.to_thread(op.wait_ready, timeout_s)
    print(f"  operator ready after {ready_s:.1f} s", flush=True)
    right_at = await watcher.wait_all_right(timeout_s)
    first = watcher.first_change_at
    return {
        "ready_s": round(ready_s, 2),
        "first_label_s": round(first - op.started_at, 2) if first else None,
        "all_labels_right_s": round(right_at - op.started_at, 2),
    }


async def change_phase(
    api: Api,
    watcher: NodeWatcher,
    fleet: list[PlannedNode],
    timeout_s: float,
    concurrency: int = 32,
) -> dict[str, Any]:
    n = len(fleet)
    candidates = changeable(n)
    count = min(len(candidates), max(1, n // 10))
    # Evenly spread over the fleet, and over the measured kinds (no stride that is a
    # multiple of their period).
    chosen = [candidates[k * len(candidates) // count] for k in range(count)]
    changed = [plan_node(i, gain=CHANGED_GAIN) for i in chosen]
    watcher.expect({p.name: p.expected for p in changed})
    answered: dict[str, float] = {}

    async def send(planned: PlannedNode) -> None:
        await put_profile_status(api, planned)
        answered[planned.name] = time.monotonic()

    started = time.monotonic()
    await bounded([functools.partial(send, p) for p in changed], concurrency)
    sent_s = time.monotonic() - started
    right_at = await watcher.wait_all_right(timeout_s)
    # Per node, from the API server's answer to its profile's write (from then on the
    # operator's watch can see it) to the node watch seeing its labels right: the
    # operator's part, apart from how long the driver took to send the rest.
    lags = [watcher.right_at[n] - answered[n] for n in answered if n in watcher.right_at]
    for p in changed:
        fleet[int(p.name.split("-")[1])] = p
    return {
        "changed_profiles": len(changed),
        "send_concurrency": concurrency,
        "changed_kinds": dict(Counter(p.kind.key for p in changed)),
        "send_s": round(sent_s, 2),
        "converged_s": round(right_at - started, 2),
        "converged_after_last_sent_s": round(right_at - started - sent_s, 2),
        "label_lag": latency_summary(lags),
    }


async def heartbeat_phase(agents: LeaseAgents, period_s: float) -> dict[str, Any]:
    """One interval of the agents' Lease renewals, running in the background all along."""
    before = Counter(agents.counts)
    started = time.monotonic()
    await asyncio.sleep(period_s)
    agents.check()
    done = Counter(agents.counts)
    done.subtract(before)
    return {
        "way": "lease",
        "heartbeats": done["renewed"] + done["recovered"],
        "lease_counts": {k: v for k, v in done.items() if v},
        "period_s": round(time.monotonic() - started, 2),
    }


async def legacy_heartbeat_phase(
    api: Api, agents: LeaseAgents, fleet: list[PlannedNode], period_s: float
) -> dict[str, Any]:
    """One interval in which every agent heartbeats in its profile (a merge patch of
    status.heartbeatTime) instead of renewing its Lease."""
    agents.paused = True
    try:
        took, failed = await heartbeat_round(api, fleet, period_s)
    finally:
        agents.paused = False
    return {
        "way": "profile",
        "heartbeats": len(fleet) - failed,
        "failed": failed,
        "period_s": round(took, 2),
    }


async def run_on(
    plane: LocalPlane, args: argparse.Namespace, work: Path, audit: NodeAudit
) -> dict[str, Any]:
    credentials = Credentials.from_kubeconfig(plane.kubeconfig)
    result = result_header("fleet", plane, args.nodes)
    interval = args.heartbeat_s or DEFAULT_INTERVAL_S
    result["agent_interval_s"] = interval
    async with Api(credentials) as api:
        agents = LeaseAgents(api, NAMESPACE, interval_s=interval)
        try:
            return await _run_with_agents(
                plane, api, agents, args=args, work=work, audit=audit, result=result
            )
        finally:
            await agents.stop()
            result["agent_lease_counts"] = dict(agents.counts)
            result["environment"]["load_average_end"] = load_average()


async def _run_with_agents(
    plane: LocalPlane,
    api: Api,
    agents: LeaseAgents,
    *,
    args: argparse.Namespace,
    work: Path,
    audit: NodeAudit,
    result: dict[str, Any],
) -> dict[str, Any]:
    prepared = await prepare_fleet(plane, api, args.nodes, agents=agents)
    fleet = prepared.nodes
    result["kinds"] = dict(Counter(p.kind.key for p in fleet))
    result["setup"] = prepared.timings
    result["idle_plane"] = prepared.idle_plane
    watcher = NodeWatcher(api)
    await watcher.start()
    watcher.expect({p.name: p.expected for p in fleet})
    op = OperatorProcess(
        plane.kubeconfig,
        write_pki(work / "pki"),
        NAMESPACE,
        work,
        identity="bench-operator",
        timings="chart",
    )
    pids = {**plane.pids(), "driver": os.getpid()}
    rss: list[RssSampler] = []
    try:
        phase = await Phase(api, op, watcher, pids, audit).begin()
        start = await start_phase(op, watcher, phase, rss, args.timeout_s)
        start.update(await phase.finish(args.nodes, args.settle_s))
        start["peak_rss_mib"] = round(rss[0].peak / MIB, 1)
        result["start"] = start
        print(f"  start: {_line(start)}", flush=True)

        phase = await Phase(api, op, watcher, {**pids, "operator": op.pid}, audit).begin()
        change = await change_phase(api, watcher, fleet, args.timeout_s, args.change_concurrency)
        change.update(await phase.finish(args.nodes, args.settle_s))
        change["peak_rss_mib"] = round(rss[0].peak / MIB, 1)
        result["change"] = change
        print(f"  change: {_line(change)}", flush=True)

        if args.heartbeat_s > 0:
            phase = await Phase(api, op, watcher, {**pids, "operator": op.pid}, audit).begin()
            beats = await heartbeat_phase(agents, args.heartbeat_s)
            beats.update(await phase.finish(args.nodes, args.settle_s))
            beats["peak_rss_mib"] = round(rss[0].peak / MIB, 1)
            result["heartbeats"] = beats
            print(f"  heartbeats (Leases): {_line(beats)}", flush=True)
        if args.heartbeat_s > 0 and args.legacy_heartbeats:
            phase = await Phase(api, op, watcher, {**pids, "operator": op.pid}, audit).begin()
            beats = await legacy_heartbeat_phase(api, agents, fleet, args.heartbeat_s)
            beats.update(await phase.finish(args.nodes, args.settle_s))
            beats["peak_rss_mib"] = round(rss[0].peak / MIB, 1)
            result["legacy_heartbeats"] = beats
            print(f"  heartbeats (profiles, the old way): {_line(beats)}", flush=True)
        result["rss_end_mib"] = round(rss[0].last / MIB, 1)
        result["peak_rss_mib"] = round(rss[0].peak / MIB, 1)
        result["rss_samples"] = rss[0].samples
    finally:
        for sampler in rss:
            sampler.stop()
        if op.proc is not None:
            op.stop()
        await watcher.stop()
        result["operator_log_tail"] = op.tail(15).splitlines()
    return result


def _line(phase: dict[str, Any]) -> str:
    keys = ("ready_s", "all_labels_right_s", "converged_s", "label_writes_operator_metric")
    shown = {k: phase[k] for k in keys if k in phase}
    shown["patches"] = phase["node_writes_apiserver"]
    shown["by_writer"] = phase["node_writes_by_writer"]
    shown["max_changes_per_node"] = phase["watch"]["max_per_node"]
    shown["operator_cpu_s"] = phase["cpu"]["cpu_s"].get("operator")
    shown["peak_rss_mib"] = phase["peak_rss_mib"]
    return str(shown)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fleet", description=__doc__)
    parser.add_argument("--nodes", type=int, default=2000)
    parser.add_argument(
        "--heartbeat-s",
        type=float,
        default=DEFAULT_INTERVAL_S,
        help="the agents' heartbeat interval, and the length of each heartbeat phase "
        f"(0: no heartbeat phases, agents at {DEFAULT_INTERVAL_S:g} s)",
    )
    parser.add_argument(
        "--legacy-heartbeats",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also a phase of profile heartbeats, the way agents before 0.2 sent them",
    )
    parser.add_argument(
        "--change-concurrency",
        type=int,
        default=32,
        help="changed profiles written at once in the change phase (their agents, at once)",
    )
    parser.add_argument("--settle-s", type=float, default=5.0)
    parser.add_argument("--timeout-s", type=float, default=600.0)
    parser.add_argument("--out", type=Path, default=report.DOCS, help="docs folder to write to")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    print(f"fleet benchmark: {args.nodes} nodes", flush=True)
    with (
        tempfile.TemporaryDirectory(prefix="bench-fleet-") as folder,
        bench_plane(audit=Path(folder) / "audit") as plane,
    ):
        audit = NodeAudit(Path(folder) / "audit" / "audit.log")
        result = asyncio.run(run_on(plane, args, Path(folder), audit))
    path = report.write_json("fleet", result, args.out)
    page = report.update_markdown("fleet", "Fleet benchmark: 2,000 GPU nodes", render, args.out)
    print(f"wrote {path} and {page}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
