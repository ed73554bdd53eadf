"""The admission webhook under load, straight and through the API server, against references.

    python -m benchmarks.webhook [--nodes 2000] [--rounds 3] [--client vegeta|python]
        [--arms maxtune reference reference-go-h2 reference-go-h1 bare] [--pprof DIR]
        [--out docs/benchmarks]

One plane with the benchmark fleet (2,000 kwok GPU nodes with profiles, all
labelled by the operator before anything is measured; their agents renew
heartbeat Leases throughout), the real `maxtune operator` process serving TLS
on 127.0.0.1, and the reference webhooks (benchmarks.webhookarms).

(a) direct: AdmissionReviews posted to https://127.0.0.1:PORT/mutate by a load
generator in its own process, vegeta by default (benchmarks/vegeta.py; the
hand-written Python one, benchmarks/loadgen.py, with `--client python`): open
loop at 50, 100, 200 and 500 requests/s, closed loop at concurrency 1, 10 and
50. Each step is measured client-side (exact samples) and server-side (the
operator's `maxtune_operator_admission_duration_seconds` histogram, read before
and after). The whole sequence runs `--rounds` times; the spread between rounds
is reported.

(b) end to end (benchmarks.webhooke2e): pods created through the API server by
concurrent creators (benchmarks/creators.py, its own process), arm by arm on
the same plane, the order rotated every round, so drift on a shared machine
hits every arm alike. maxtune's additions are read against the reference's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import hotpath, report, reviews, stats
from benchmarks.agentleases import LeaseAgents
from benchmarks.benchplane import bench_plane, prepare_fleet, result_header
from benchmarks.kubeapi import Api, Credentials
from benchmarks.nodewatch import NodeWatcher
from benchmarks.procstat import CpuWindow, RssSampler, cpu_seconds, load_average
from benchmarks.vegeta import Vegeta
from benchmarks.webhookarms import ARMS, REFERENCES, Arm, ReferenceProcess, maxtune_arm
from benchmarks.webhooke2e import end_to_end
from benchmarks.webhookparts import preflight, run_child
from benchmarks.webhookreport import render
from maxtune.operator.metrics import ADMISSION_DURATION
from maxtune_dev.localplane import LocalPlane
from maxtune_dev.testkit.operator import OperatorProcess, WebhookPki, write_pki

OPERATOR_NAMESPACE = "maxtune-system"
HISTOGRAM = ADMISSION_DURATION.name


async def wait_idle(pid: int, *, below: float = 0.05, timeout_s: float = 120) -> float:
    """Until the operator uses under `below` of a core over 2 s: the watch events of its own
    2,000 label writes are digested, and nothing but the load is measured."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        before = cpu_seconds(pid)
        await asyncio.sleep(2)
        if (cpu_seconds(pid) - before) / 2 < below:
            break
    return time.monotonic() - started


def direct_steps(args: argparse.Namespace) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = [
        {
            "name": f"open {rate:g}/s",
            "mode": "open",
            "rate": rate,
            "duration_s": args.step_s,
            "warmup_s": 2.0,
        }
        for rate in args.rates
    ]
    steps += [
        {
            "name": f"closed c={c}",
            "mode": "closed",
            "concurrency": c,
            "duration_s": args.step_s * 0.75,
            "warmup_s": 2.0,
        }
        for c in args.concurrency
    ]
    return steps


async def direct(
    op: OperatorProcess,
    pki: WebhookPki,
    pids: dict[str, int],
    args: argparse.Namespace,
    work: Path,
) -> dict[str, Any]:
    bodies = reviews.mixed_bodies()
    shapes = await preflight(op.webhook_url, pki.ca_cert, bodies)
    expect = {k: v["patched"] for k, v in shapes.items()}
    client = None
    if args.client == "vegeta":
        folder = work / "vegeta"
        folder.mkdir(exist_ok=True)
        client = Vegeta(
            op.webhook_url,
            pki.ca_cert,
            bodies=bodies,
            expect_patch=expect,
            order=reviews.rotation(),
            work=folder,
        )
    steps = []
    for round_no in range(args.rounds):
        for step in direct_steps(args):
            before = stats.histogram(op.samples(), HISTOGRAM)
            window = CpuWindow({**pids, "operator": op.pid}).start()
            if client is not None:
                result = await asyncio.to_thread(client.step, step)
            else:
                config = {
                    "url": op.webhook_url,
                    "ca": str(pki.ca_cert),
                    "bodies": {k: v.decode() for k, v in bodies.items()},
                    "expect_patch": expect,
                    "order": reviews.rotation(),
                    "step": step,
                }
                result, _ = await asyncio.to_thread(run_child, "benchmarks.loadgen", config)
                result["client"] = "python"
            result["cpu"] = window.stop()
            server = stats.histogram_delta(stats.histogram(op.samples(), HISTOGRAM), before)
            result["round"] = round_no
            result["server"] = {
                "p50": stats.histogram_quantile(server, 0.50),
                "p99": stats.histogram_quantile(server, 0.99),
                "share_within_2ms": stats.fraction_at_most(server, 0.002),
                "share_within_5ms": stats.fraction_at_most(server, 0.005),
                "buckets": {str(k): v for k, v in server.items()},
            }
            steps.append(result)
            lat = result["latency"]
            print(
                f"  round {round_no} {result['name']:>14}: {result['achieved_rps']:7.1f} req/s "
                f"p50 {lat.get('p50_ms')} p99 {lat.get('p99_ms')} max {lat.get('max_ms')} ms, "
                f"errors {result['error_count']}, server p99 "
                f"{result['server']['p99'].get('value_ms')} ms, "
                f"operator {result['cpu']['cores_used']['operator']:.2f} cores, "
                f"{result['client']} {result['client_cpu_s'] / max(result['window_s'], 1e-9):.2f}"
                " cores",
                flush=True,
            )
    return {"shapes": shapes, "mix": reviews.MIX, "steps": steps, "client": args.client}


async def run_on(plane: LocalPlane, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    credentials = Credentials.from_kubeconfig(plane.kubeconfig)
    result = result_header("webhook", plane, args.nodes)
    async with Api(credentials) as api:
        # The fleet's agents renew their heartbeat Leases from setup to the end, as real ones do.
        agents = LeaseAgents(api, OPERATOR_NAMESPACE, interval_s=args.heartbeat_s)
        result["agent_interval_s"] = args.heartbeat_s
        try:
            await _run_with_agents(plane, api, agents, args=args, work=work, result=result)
        finally:
            await agents.stop()
            result["agent_lease_counts"] = dict(agents.counts)
    result["environment"]["load_average_end"] = load_average()
    return result


async def _run_with_agents(
    plane: LocalPlane,
    api: Api,
    agents: LeaseAgents,
    *,
    args: argparse.Namespace,
    work: Path,
    result: dict[str, Any],
) -> None:
    prepared = await prepare_fleet(plane, api, args.nodes, agents=agents)
    result["setup"] = prepared.timings
    watcher = NodeWatcher(api)
    await watcher.start()
    watcher.expect({p.name: p.expected for p in prepared.nodes})
    pki = write_pki(work / "pki")
    op = OperatorProcess(
        plane.kubeconfig,
        pki,
        OPERATOR_NAMESPACE,
        work,
        identity="bench-operator",
        timings="chart",
    )
    op.start(wait=False)
    rss = RssSampler(op.pid).start()
    pids = {**plane.pids(), "driver": os.getpid()}
    references = [ReferenceProcess(name, pki, work) for name in args.arms if name in REFERENCES]
    try:
        await asyncio.to_thread(op.wait_ready)
        await watcher.wait_all_right(args.timeout_s)
        await watcher.stop()
        result["labelled_s"] = round(time.monotonic() - op.started_at, 2)
        print(f"  operator up, {args.nodes} nodes labelled", flush=True)
        result["operator_idle_after_s"] = round(await wait_idle(op.pid), 1)
        pids["operator"] = op.pid
        if not args.skip_direct:
            result["direct"] = await direct(op, pki, pids, args, work)
        if args.e2e_pods > 0:
            arms = {"maxtune": maxtune_arm(op), "bare": Arm("bare")}
            for process in references:
                arms[process.name] = await asyncio.to_thread(process.start)
                pids[process.name] = arms[process.name].pid or 0
            ordered = {name: arms[name] for name in args.arms}
            result["e2e"] = await end_to_end(
                api, plane=plane, op=op, arms=ordered, pki=pki, pids=pids, args=args
            )
        agents.check()
        result["operator_peak_rss_mib"] = round(rss.peak / 2**20, 1)
    finally:
        for process in references:
            process.stop()
        rss.stop()
        op.stop()
        result["operator_log_tail"] = op.tail(15).splitlines()


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.webhook", description=__doc__)
    parser.add_argument("--nodes", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--step-s", type=float, default=20.0, help="seconds per open-loop step")
    parser.add_argument("--rates", type=float, nargs="+", default=[50, 100, 200, 500])
    parser.add_argument(
        "--client",
        choices=["vegeta", "python"],
        default="vegeta",
        help="(a)'s load generator: vegeta (Go) or benchmarks/loadgen.py",
    )
    parser.add_argument(
        "--arms",
        nargs="+",
        choices=ARMS,
        default=["maxtune", "reference", "bare"],
        help="(b)'s arms, in the order of the first round (bare is required)",
    )
    parser.add_argument("--pprof", type=Path, help="folder for kube-apiserver CPU profiles")
    parser.add_argument("--pprof-seconds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--e2e-pods", type=int, default=600, help="pods per phase; 0: skip (b)")
    parser.add_argument(
        "--e2e-loads",
        nargs="+",
        default=["50", "50@25", "10"],
        help="creators per phase: N (closed loop) or N@R (paced to R pods/s in all)",
    )
    parser.add_argument(
        "--heartbeat-s",
        type=float,
        default=60.0,
        help="the agents' heartbeat interval: each renews its Lease this often, throughout",
    )
    parser.add_argument("--skip-direct", action="store_true", help="only the end-to-end part")
    parser.add_argument("--hotpath-rounds", type=int, default=2000, help="in-process reviews")
    parser.add_argument("--timeout-s", type=float, default=600.0)
    parser.add_argument("--out", type=Path, default=report.DOCS, help="docs folder to write to")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if "bare" not in args.arms:
        raise SystemExit("--arms must include bare: every overhead is measured against it")
    if args.pprof is not None:
        args.pprof.mkdir(parents=True, exist_ok=True)
    print(f"webhook benchmark: {args.nodes} nodes, {args.rounds} round(s)", flush=True)
    # The handler alone first, in this process, before the plane adds its own load.
    handler = hotpath.measure(hotpath.fleet_state(args.nodes), args.hotpath_rounds)
    for shape, row in handler.items():
        print(f"  in-process {shape}: p50 {row['p50_ms']} p99 {row['p99_ms']} ms", flush=True)
    with (
        tempfile.TemporaryDirectory(prefix="bench-webhook-") as folder,
        bench_plane(profiling=args.pprof is not None) as plane,
    ):
        result = asyncio.run(run_on(plane, args, Path(folder)))
    result["in_process"] = {"reviews_per_shape": args.hotpath_rounds, "shapes": handler}
    path = report.write_json("webhook", result, args.out)
    page = report.update_markdown("webhook", "Webhook benchmark", render, args.out)
    print(f"wrote {path} and {page}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
