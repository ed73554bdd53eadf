"""What one agent heartbeat costs the API server, by the way it is written.

    python -m benchmarks.heartbeatcost [--profiles 400] [--rate 40] [--seconds 15] [--rounds 2]

One plane (the benchmarks' tuning), the CRDs and `--profiles` profiles of the
benchmark fleet. Then heartbeats at `--rate` per second, written three ways in
turn, the order reversed every other round so drift hits each alike:

- GET + PUT of the whole status (what the agent did before it patched);
- a merge patch of the whole status;
- a merge patch of `status.heartbeatTime` alone (what the agent sends now when
  nothing else changed).

Measured: kube-apiserver and etcd CPU seconds per heartbeat (psutil, the
processes' own user + system time). The figures are quoted in
docs/benchmarks/webhook.md; this prints them and writes nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

import psutil

from benchmarks.benchplane import bench_plane
from benchmarks.fleetsetup import install_crds, put_profile_status
from benchmarks.gpufleet import PlannedNode, plan_node
from benchmarks.kubeapi import MERGE_PATCH, PROFILES, Api, Credentials

Write = Callable[[Api, PlannedNode], Coroutine[Any, Any, None]]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def get_put(api: Api, planned: PlannedNode) -> None:
    obj = await api.call("GET", f"{PROFILES}/{planned.name}")
    obj["status"] = {**planned.profile_status["status"], "heartbeatTime": _now()}
    await api.call("PUT", f"{PROFILES}/{planned.name}/status", obj)


async def patch_status(api: Api, planned: PlannedNode) -> None:
    body = {"status": {**planned.profile_status["status"], "heartbeatTime": _now()}}
    await api.call("PATCH", f"{PROFILES}/{planned.name}/status", body, content_type=MERGE_PATCH)


async def patch_heartbeat(api: Api, planned: PlannedNode) -> None:
    body = {"status": {"heartbeatTime": _now()}}
    await api.call("PATCH", f"{PROFILES}/{planned.name}/status", body, content_type=MERGE_PATCH)


WAYS: dict[str, Write] = {
    "GET + PUT status": get_put,
    "merge patch, whole status": patch_status,
    "merge patch, heartbeatTime": patch_heartbeat,
}


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


async def measure(
    api: Api,
    fleet: list[PlannedNode],
    write: Write,
    args: argparse.Namespace,
    procs: dict[str, psutil.Process],
) -> dict[str, float]:
    """Heartbeats at the set rate for the set time; CPU ms per heartbeat by process."""
    before = {name: _cpu(p) for name, p in procs.items()}
    count = int(args.rate * args.seconds)
    started = time.monotonic()
    tasks = []
    for i in range(count):
        delay = started + i / args.rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(write(api, fleet[i % len(fleet)])))
    await asyncio.gather(*tasks)
    return {name: (_cpu(p) - before[name]) * 1e3 / count for name, p in procs.items()}


async def run(args: argparse.Namespace) -> None:
    with bench_plane() as plane:
        procs = {name: psutil.Process(plane.pids()[name]) for name in ("kube-apiserver", "etcd")}
        async with Api(Credentials.from_kubeconfig(plane.kubeconfig)) as api:
            await install_crds(api)
            fleet = [plan_node(i) for i in range(args.profiles)]
            for planned in fleet:
                await api.call("POST", PROFILES, planned.profile_spec)
                await put_profile_status(api, planned)
            print(f"{args.profiles} profiles; {args.rate:g} heartbeats/s for {args.seconds:g} s")
            for round_no in range(args.rounds):
                ways = list(WAYS.items())
                for name, write in ways if round_no % 2 == 0 else reversed(ways):
                    await asyncio.sleep(2)
                    cost = await measure(api, fleet, write, args, procs)
                    print(
                        f"  round {round_no} {name:28s} kube-apiserver "
                        f"{cost['kube-apiserver']:5.2f} ms, etcd {cost['etcd']:5.2f} ms "
                        "per heartbeat",
                        flush=True,
                    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.heartbeatcost", description=__doc__)
    parser.add_argument("--profiles", type=int, default=400)
    parser.add_argument("--rate", type=float, default=40.0)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rounds", type=int, default=2)
    asyncio.run(run(parser.parse_args(sys.argv[1:] if argv is None else argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
