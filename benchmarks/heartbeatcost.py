"""What one agent heartbeat costs the API server and etcd: the profile way against the Lease way.

    python -m benchmarks.heartbeatcost [--profiles 400] [--rate 40] [--seconds 15] [--rounds 3]
        [--ways profile lease] [--pprof DIR] [--out docs/benchmarks]

One plane (the benchmarks' tuning), the CRDs, `--profiles` nodes of the
benchmark fleet, each with its GPUNodeProfile (~34 KB of JSON) and its agent's
heartbeat Lease, and the operator's two watches on them (profiles; Leases by
the agents' label), read and thrown away by this process, so every write is
also encoded for a watcher as in a cluster. Then heartbeats at `--rate` per
second for `--seconds`, one way after another, the order reversed every other
round so drift hits each alike, and a window of the same length with no
heartbeat at all (the plane's own idle CPU, subtracted from each way):

- `profile`: what agents before 0.2 send every round, and an agent without a
  Lease namespace still does (maxtune.agent.kube.KubeSink._heartbeat): a merge
  patch of the profile's `status.heartbeatTime`, conditional on the
  resourceVersion of its own last write;
- `profile-full`: the same patch of a profile as agents published it before
  measured numbers were rounded to six significant digits (contract.precision):
  every float as measured (a profile of its own per node, `<node>-full`);
- `lease`: what agents send now (KubeSink._renew, maxtune.agent.lease): a PUT
  of the node's Lease as the last answer left it, with a new renewTime and
  without its field-tracking record (managedFields);
- `lease-tracked`: what agents 0.2 sent: the same PUT with the managedFields of
  the last answer, so the API server tracks fields on every renewal (a Lease of
  its own per node, `<node>-tracked`, as one stripped stays untracked);
- `status-put`, `status-patch` (history): a GET and PUT of the whole status,
  and a merge patch of the whole status (what an agent writes when its
  measurements change); `status-put-full`: the GET and PUT of the whole status
  at full precision, into `<node>-full`.

Measured: kube-apiserver and etcd CPU (psutil: the processes' user + system
time) per heartbeat, net of idle. An agent heartbeats once a minute by default,
so CPU ms per heartbeat is also CPU ms per node per minute; the fleet-wide
cores at 5,000 nodes follow. Written to data/heartbeatcost-*.json and
heartbeatcost.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from benchmarks import apimetrics, report
from benchmarks.agentleases import LEASES, lease_seconds
from benchmarks.benchplane import bench_plane, result_header
from benchmarks.fleetsetup import ensure_namespace, install_crds, put_profile_status
from benchmarks.gpufleet import PlannedNode, full_precision_status, plan_node
from benchmarks.heartbeatreport import render
from benchmarks.kubeapi import MERGE_PATCH, PROFILES, Api, Credentials
from benchmarks.procstat import load_average
from maxtune.agent.lease import new_lease, node_owner, renewal
from maxtune.contract.names import AGENT_LEASE_SELECTOR

NAMESPACE = "maxtune-system"
INTERVAL_S = 60.0  # the agent's default heartbeat interval
FLEET_NODES = 5000  # the fleet size the per-node cost is scaled to
SECONDS = lease_seconds(INTERVAL_S)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Agents:
    """The agents' side of each way: what they last wrote, so the next write is theirs."""

    def __init__(self, api: Api, fleet: list[PlannedNode]) -> None:
        self.api = api
        self.fleet = fleet
        self.profile_versions: dict[str, str] = {}
        self.leases: dict[str, dict[str, Any]] = {}
        self.tracked: dict[str, dict[str, Any]] = {}
        self.full: dict[str, dict[str, Any]] = {}  # node -> its full-precision status

    async def create(self) -> None:
        for planned in self.fleet:
            node = await self.api.call("POST", "/api/v1/nodes", planned.node)
            await self.api.call("POST", PROFILES, planned.profile_spec)
            await put_profile_status(self.api, planned)
            answer = await self.api.call("GET", f"{PROFILES}/{planned.name}")
            self.profile_versions[planned.name] = answer["metadata"]["resourceVersion"]
            full = _full(planned)
            self.full[planned.name] = full_precision_status(planned)
            spec = {**planned.profile_spec, "metadata": {"name": full}, "spec": {"nodeName": full}}
            await self.api.call("POST", PROFILES, spec)
            await self._put(full, self.full[planned.name])
            owner = node_owner(planned.name, node["metadata"]["uid"])
            for name, leases in ((planned.name, self.leases), (_tracked(planned), self.tracked)):
                body = new_lease(NAMESPACE, name, owner, SECONDS, datetime.now(UTC))
                leases[planned.name] = await self.api.call(
                    "POST", LEASES.format(namespace=NAMESPACE), body
                )

    async def profile(self, planned: PlannedNode) -> None:
        await self._heartbeat(planned.name)

    async def profile_full(self, planned: PlannedNode) -> None:
        await self._heartbeat(_full(planned))

    async def _heartbeat(self, name: str) -> None:
        patch = {
            "metadata": {"resourceVersion": self.profile_versions[name]},
            "status": {"heartbeatTime": _now()},
        }
        answer = await self.api.call(
            "PATCH", f"{PROFILES}/{name}/status", patch, content_type=MERGE_PATCH
        )
        self.profile_versions[name] = answer["metadata"]["resourceVersion"]

    async def lease(self, planned: PlannedNode) -> None:
        name = planned.name
        body = renewal(self.leases[name], name, SECONDS, datetime.now(UTC))
        path = f"{LEASES.format(namespace=NAMESPACE)}/{name}"
        self.leases[name] = await self.api.call("PUT", path, body)

    async def lease_tracked(self, planned: PlannedNode) -> None:
        last, name = self.tracked[planned.name], _tracked(planned)
        body = renewal(last, name, SECONDS, datetime.now(UTC))
        body["metadata"]["managedFields"] = last["metadata"]["managedFields"]  # sent back as read
        path = f"{LEASES.format(namespace=NAMESPACE)}/{name}"
        self.tracked[planned.name] = await self.api.call("PUT", path, body)

    async def status_put(self, planned: PlannedNode) -> None:
        await self._put(planned.name, planned.profile_status["status"])

    async def status_put_full(self, planned: PlannedNode) -> None:
        await self._put(_full(planned), self.full[planned.name])

    async def _put(self, name: str, status: dict[str, Any]) -> None:
        obj = await self.api.call("GET", f"{PROFILES}/{name}")
        obj["status"] = {**status, "heartbeatTime": _now()}
        answer = await self.api.call("PUT", f"{PROFILES}/{name}/status", obj)
        self.profile_versions[name] = answer["metadata"]["resourceVersion"]

    async def status_patch(self, planned: PlannedNode) -> None:
        body = {"status": {**planned.profile_status["status"], "heartbeatTime": _now()}}
        answer = await self.api.call(
            "PATCH", f"{PROFILES}/{planned.name}/status", body, content_type=MERGE_PATCH
        )
        self.profile_versions[planned.name] = answer["metadata"]["resourceVersion"]

    def ways(self) -> dict[str, Callable[[PlannedNode], Coroutine[Any, Any, None]]]:
        return {
            "profile": self.profile,
            "profile-full": self.profile_full,
            "lease": self.lease,
            "lease-tracked": self.lease_tracked,
            "status-put": self.status_put,
            "status-put-full": self.status_put_full,
            "status-patch": self.status_patch,
        }


def _tracked(planned: PlannedNode) -> str:
    return f"{planned.name}-tracked"


def _full(planned: PlannedNode) -> str:
    return f"{planned.name}-full"


WAYS = (
    "profile",
    "profile-full",
    "lease",
    "lease-tracked",
    "status-put",
    "status-put-full",
    "status-patch",
)


async def _drain(api: Api, path: str, query: dict[str, str]) -> None:
    """A watch whose events are read and dropped: the API server encodes and sends each."""
    params = {"watch": "1", "allowWatchBookmarks": "true", "timeoutSeconds": "3600", **query}
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    async with api.session.get(path, params=params, timeout=timeout) as response:
        response.raise_for_status()
        async for _ in response.content.iter_chunked(1 << 16):
            pass


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


async def measure(
    fleet: list[PlannedNode],
    write: Callable[[PlannedNode], Coroutine[Any, Any, None]] | None,
    args: argparse.Namespace,
    procs: dict[str, psutil.Process],
) -> dict[str, float]:
    """Heartbeats at the set rate for the set time (None: none, the idle window); CPU ms
    per heartbeat slot by process."""
    before = {name: _cpu(p) for name, p in procs.items()}
    count = int(args.rate * args.seconds)
    started = time.monotonic()
    tasks = []
    for i in range(count):
        delay = started + i / args.rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if write is not None:
            tasks.append(asyncio.create_task(write(fleet[i % len(fleet)])))
    await asyncio.gather(*tasks)
    await asyncio.sleep(max(0.0, started + args.seconds - time.monotonic()))
    return {name: (_cpu(p) - before[name]) * 1e3 / count for name, p in procs.items()}


def _ratio(rounds: list[dict[str, Any]], over: str, under: str) -> dict[str, Any]:
    """How many times `under`'s CPU per heartbeat `over` costs, per round and its median."""

    def total(r: dict[str, Any], way: str) -> float:
        return float(r["net_ms"][way]["kube-apiserver"] + r["net_ms"][way]["etcd"])

    per_round = [total(r, over) / max(1e-9, total(r, under)) for r in rounds]
    apiserver = [
        r["net_ms"][over]["kube-apiserver"] / max(1e-9, r["net_ms"][under]["kube-apiserver"])
        for r in rounds
    ]
    return {
        "per_round": [round(x, 2) for x in per_round],
        "median": round(statistics.median(per_round), 2),
        "apiserver_only_median": round(statistics.median(apiserver), 2),
    }


def summarize(rounds: list[dict[str, Any]], ways: list[str]) -> dict[str, Any]:
    """Per way: the median over rounds of CPU ms per heartbeat, net of the idle window."""
    found: dict[str, Any] = {}
    for way in ways:
        net = {
            proc: [r["net_ms"][way][proc] for r in rounds] for proc in ("kube-apiserver", "etcd")
        }
        median = {proc: round(statistics.median(v), 3) for proc, v in net.items()}
        total = median["kube-apiserver"] + median["etcd"]
        found[way] = {
            "net_ms_per_heartbeat": median,
            "net_ms_per_heartbeat_rounds": {p: [round(x, 3) for x in v] for p, v in net.items()},
            # one heartbeat a minute per node: ms per heartbeat == CPU ms per node per minute
            "cpu_ms_per_node_per_minute": round(total * 60.0 / INTERVAL_S, 3),
            f"cores_at_{FLEET_NODES}_nodes": round(FLEET_NODES * total / (INTERVAL_S * 1e3), 3),
        }
    for over, under, key in (
        ("profile", "lease", "profile_over_lease"),
        ("profile-full", "lease", "profile_full_over_lease"),
        ("lease-tracked", "lease", "lease_tracked_over_lease"),
        ("profile-full", "profile", "profile_full_over_profile"),
        ("status-put-full", "status-put", "status_put_full_over_status_put"),
    ):
        if over in found and under in found:
            found[key] = _ratio(rounds, over, under)
    return found


async def run(args: argparse.Namespace, result: dict[str, Any], plane: Any) -> None:
    procs = {name: psutil.Process(plane.pids()[name]) for name in ("kube-apiserver", "etcd")}
    async with Api(Credentials.from_kubeconfig(plane.kubeconfig)) as api:
        await install_crds(api)
        await ensure_namespace(api, NAMESPACE)
        fleet = [plan_node(i) for i in range(args.profiles)]
        agents = Agents(api, fleet)
        await agents.create()
        profile = await api.call("GET", f"{PROFILES}/{fleet[0].name}")
        result["object_bytes"] = {"profile": len(json.dumps(profile))}
        full = await api.call("GET", f"{PROFILES}/{_full(fleet[0])}")
        result["object_bytes"]["profile-full"] = len(json.dumps(full))
        watches = [
            asyncio.create_task(_drain(api, PROFILES, {})),
            asyncio.create_task(
                _drain(
                    api,
                    LEASES.format(namespace=NAMESPACE),
                    {"labelSelector": AGENT_LEASE_SELECTOR},
                )
            ),
        ]
        print(
            f"{args.profiles} nodes with profiles and Leases, 2 watches; "
            f"{args.rate:g} heartbeats/s for {args.seconds:g} s per way",
            flush=True,
        )
        writes = agents.ways()
        rounds = []
        try:
            for round_no in range(args.rounds):
                order = ["idle", *args.ways]
                if round_no % 2:
                    order.reverse()
                measured: dict[str, dict[str, float]] = {}
                for way in order:
                    await asyncio.sleep(2)
                    profile = None
                    if args.pprof is not None and round_no == 0 and way != "idle":
                        seconds = max(1, int(args.seconds))
                        path = args.pprof / f"apiserver-heartbeat-{way}.pprof"
                        profile = asyncio.create_task(apimetrics.pprof(api, seconds, path))
                    measured[way] = await measure(
                        fleet, None if way == "idle" else writes[way], args, procs
                    )
                    if profile is not None:
                        await profile
                idle = measured["idle"]
                net = {way: {p: measured[way][p] - idle[p] for p in procs} for way in args.ways}
                rounds.append({"round": round_no, "raw_ms": measured, "net_ms": net})
                for way in args.ways:
                    print(
                        f"  round {round_no} {way:12s} kube-apiserver "
                        f"{net[way]['kube-apiserver']:6.2f} ms, etcd {net[way]['etcd']:5.2f} ms "
                        f"per heartbeat (net of idle {idle['kube-apiserver']:.2f} / "
                        f"{idle['etcd']:.2f})",
                        flush=True,
                    )
        finally:
            for task in watches:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*watches, return_exceptions=True)
    # As the last renewal left them (the untracked Lease loses its record at the first).
    result["object_bytes"]["lease"] = len(json.dumps(agents.leases[fleet[0].name]))
    result["object_bytes"]["lease-tracked"] = len(json.dumps(agents.tracked[fleet[0].name]))
    result["rounds"] = rounds
    result["summary"] = summarize(rounds, list(args.ways))
    ratio = result["summary"].get("profile_over_lease")
    if ratio:
        print(f"  profile / lease (API server + etcd CPU): median {ratio['median']}x", flush=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.heartbeatcost", description=__doc__)
    parser.add_argument("--profiles", type=int, default=400)
    parser.add_argument("--rate", type=float, default=40.0)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--ways", nargs="+", choices=WAYS, default=["profile", "lease", "lease-tracked"]
    )
    parser.add_argument("--pprof", type=Path, help="folder for kube-apiserver CPU profiles")
    parser.add_argument("--out", type=Path, default=report.DOCS, help="docs folder to write to")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.pprof is not None:
        args.pprof.mkdir(parents=True, exist_ok=True)
    with bench_plane(profiling=args.pprof is not None) as plane:
        result = result_header("heartbeatcost", plane, args.profiles)
        result["settings"] = {
            "profiles": args.profiles,
            "rate": args.rate,
            "seconds": args.seconds,
            "rounds": args.rounds,
            "ways": list(args.ways),
            "interval_s": INTERVAL_S,
        }
        asyncio.run(run(args, result, plane))
    result["environment"]["load_average_end"] = load_average()
    path = report.write_json("heartbeatcost", result, args.out)
    page = report.update_markdown("heartbeatcost", "Heartbeat cost", render, args.out)
    print(f"wrote {path} and {page}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
