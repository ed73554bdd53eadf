"""The admission webhook under load, straight and through the API server.

    python -m benchmarks.webhook [--nodes 2000] [--rounds 3] [--out docs/benchmarks]

One plane with the benchmark fleet (2,000 kwok GPU nodes with profiles, all
labelled by the operator before anything is measured) and the real
`maxtune operator` process serving TLS on 127.0.0.1.

(a) direct: AdmissionReviews posted to https://127.0.0.1:PORT/mutate by the
load generator (benchmarks/loadgen.py, its own process): open loop at 50,
100, 200 and 400 requests/s, closed loop at concurrency 1, 10 and 50. Each
step is measured client-side (exact samples) and server-side (the operator's
`maxtune_operator_admission_duration_seconds` histogram, read before and after). The
whole sequence runs `--rounds` times; the spread between rounds is reported.

(b) end to end: pods created through the API server by 50 concurrent
creators (benchmarks/creators.py, its own process), with the webhook
registered and without it, on the same plane in alternating phases
(with/bare, bare/with, ...), so drift on a shared machine hits both arms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import apimetrics, hotpath, report, reviews, stats
from benchmarks.benchplane import bench_plane, prepare_fleet, result_header
from benchmarks.fleetsetup import ensure_namespace, heartbeats_forever
from benchmarks.kubeapi import Api, Credentials
from benchmarks.nodewatch import NodeWatcher
from benchmarks.procstat import CpuWindow, RssSampler, cpu_seconds, load_average
from benchmarks.webhookparts import (
    delete_pods,
    preflight,
    run_child,
    set_webhook,
    webhook_configuration,
)
from benchmarks.webhookreport import render
from maxtune_dev.localplane import LocalPlane
from maxtune_dev.testkit.operator import OperatorProcess, WebhookPki, write_pki

OPERATOR_NAMESPACE = "maxtune-system"
E2E_NAMESPACE = "bench-e2e"
HISTOGRAM = "maxtune_operator_admission_duration_seconds"
WEBHOOK_NAME = "pod-opt-in.webhook.maxtune.io"


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
    op: OperatorProcess, pki: WebhookPki, pids: dict[str, int], args: argparse.Namespace
) -> dict[str, Any]:
    bodies = reviews.mixed_bodies()
    shapes = await preflight(op.webhook_url, pki.ca_cert, bodies)
    steps = []
    for round_no in range(args.rounds):
        for step in direct_steps(args):
            before = stats.histogram(op.samples(), HISTOGRAM)
            window = CpuWindow({**pids, "operator": op.pid}).start()
            config = {
                "url": op.webhook_url,
                "ca": str(pki.ca_cert),
                "bodies": {k: v.decode() for k, v in bodies.items()},
                "expect_patch": {k: v["patched"] for k, v in shapes.items()},
                "order": reviews.rotation(),
                "step": step,
            }
            result, _ = await asyncio.to_thread(run_child, "benchmarks.loadgen", config)
            result["cpu"] = window.stop()
            server = stats.histogram_delta(stats.histogram(op.samples(), HISTOGRAM), before)
            result["round"] = round_no
            result["server"] = {
                "p50": stats.histogram_quantile(server, 0.50),
                "p99": stats.histogram_quantile(server, 0.99),
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
                f"loadgen {result['client_cpu_s'] / max(result['window_s'], 1e-9):.2f} cores",
                flush=True,
            )
    return {"shapes": shapes, "mix": reviews.MIX, "steps": steps}


async def end_to_end(
    api: Api,
    *,
    plane: LocalPlane,
    op: OperatorProcess,
    pki: WebhookPki,
    pids: dict[str, int],
    args: argparse.Namespace,
) -> dict[str, Any]:
    await ensure_namespace(api, E2E_NAMESPACE)
    config = webhook_configuration(op.webhook_url, pki.ca_pem, ["kube-system", OPERATOR_NAMESPACE])
    phases = []
    for load in args.e2e_loads:
        concurrency, rate = parse_load(load)
        for round_no in range(args.rounds):
            order = ("webhook", "bare") if round_no % 2 == 0 else ("bare", "webhook")
            for arm in order:
                toggle_s = await set_webhook(
                    api, E2E_NAMESPACE, config if arm == "webhook" else None
                )
                await asyncio.sleep(1)
                before_api = await apimetrics.scrape(api)
                before_op = stats.histogram(op.samples(), HISTOGRAM)
                window = CpuWindow({**pids, "operator": op.pid}).start()
                creators = {
                    "kubeconfig": str(plane.kubeconfig),
                    "namespace": E2E_NAMESPACE,
                    "prefix": f"c{concurrency}-{int(rate)}-r{round_no}-{arm}",
                    "count": args.e2e_pods,
                    "concurrency": concurrency,
                    "rate": rate,
                }
                result, _ = await asyncio.to_thread(run_child, "benchmarks.creators", creators)
                result["cpu"] = window.stop()
                after_api = await apimetrics.scrape(api)
                seen_by_api = stats.histogram_delta(
                    stats.histogram(after_api, apimetrics.WEBHOOK_DURATION, {"name": WEBHOOK_NAME}),
                    stats.histogram(
                        before_api, apimetrics.WEBHOOK_DURATION, {"name": WEBHOOK_NAME}
                    ),
                )
                server = stats.histogram_delta(stats.histogram(op.samples(), HISTOGRAM), before_op)
                result.update(
                    load=load,
                    arm=arm,
                    round=round_no,
                    toggle_s=round(toggle_s, 2),
                    apiserver_webhook_call={
                        "p50": stats.histogram_quantile(seen_by_api, 0.5),
                        "p99": stats.histogram_quantile(seen_by_api, 0.99),
                        "share_within_5ms": stats.fraction_at_most(seen_by_api, 0.005),
                        "share_within_25ms": stats.fraction_at_most(seen_by_api, 0.025),
                    },
                    operator_handler={"p99": stats.histogram_quantile(server, 0.99)},
                    cleanup_s=round(await delete_pods(api, E2E_NAMESPACE), 2),
                )
                phases.append(result)
                lat = result["latency"]
                print(
                    f"  e2e {load_name(load):>16} round {round_no} {arm:>7}: "
                    f"{result['creates_per_s']:6.1f} creates/s p50 {lat.get('p50_ms')} "
                    f"p99 {lat.get('p99_ms')} max {lat.get('max_ms')} ms, mutated "
                    f"{result['mutated']}/{result['created']}, errors {result['errors']}",
                    flush=True,
                )
                await asyncio.sleep(2)
    await set_webhook(api, E2E_NAMESPACE, None)
    return {"phases": phases, "summary": summarize_e2e(phases)}


def parse_load(text: str) -> tuple[int, float]:
    """ "50": 50 creators in a closed loop; "50@25": 50 creators paced to 25 pods/s in all."""
    concurrency, _, rate = text.partition("@")
    return int(concurrency), float(rate or 0)


def load_name(text: str) -> str:
    concurrency, rate = parse_load(text)
    return f"{concurrency} creators" + (f" at {rate:g}/s" if rate else "")


def summarize_e2e(phases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per load: both arms pooled over rounds, the p99 overhead per round, CPU per pod."""
    found = []
    for load in dict.fromkeys(p["load"] for p in phases):
        mine = [p for p in phases if p["load"] == load]
        pooled = {
            arm: stats.latency_summary(
                x / 1e3 for p in mine if p["arm"] == arm for x in p["latencies_ms"]
            )
            for arm in ("webhook", "bare")
        }
        rounds = sorted({p["round"] for p in mine})
        per_round = []
        for r in rounds:
            arms = {p["arm"]: p["latency"] for p in mine if p["round"] == r}
            per_round.append(
                {
                    "round": r,
                    "p50_overhead_ms": round(arms["webhook"]["p50_ms"] - arms["bare"]["p50_ms"], 2),
                    "p99_overhead_ms": round(arms["webhook"]["p99_ms"] - arms["bare"]["p99_ms"], 2),
                }
            )
        cpu_per_pod = {
            arm: {
                name: round(
                    sum(p["cpu"]["cpu_s"].get(name, 0.0) for p in mine if p["arm"] == arm)
                    / max(1, sum(p["created"] for p in mine if p["arm"] == arm))
                    * 1e3,
                    3,
                )
                for name in mine[0]["cpu"]["cpu_s"]
            }
            for arm in ("webhook", "bare")
        }
        found.append(
            {
                "load": load,
                "name": load_name(load),
                "concurrency": parse_load(load)[0],
                "rate": parse_load(load)[1] or None,
                "cpu_ms_per_pod": cpu_per_pod,
                "webhook": pooled["webhook"],
                "bare": pooled["bare"],
                "p50_overhead_ms": round(pooled["webhook"]["p50_ms"] - pooled["bare"]["p50_ms"], 2),
                "p99_overhead_ms": round(pooled["webhook"]["p99_ms"] - pooled["bare"]["p99_ms"], 2),
                "per_round": per_round,
            }
        )
    return found


async def run_on(plane: LocalPlane, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    credentials = Credentials.from_kubeconfig(plane.kubeconfig)
    result = result_header("webhook", plane, args.nodes)
    async with Api(credentials) as api:
        prepared = await prepare_fleet(plane, api, args.nodes)
        result["setup"] = prepared.timings
        await ensure_namespace(api, OPERATOR_NAMESPACE)
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
        try:
            await asyncio.to_thread(op.wait_ready)
            await watcher.wait_all_right(args.timeout_s)
            await watcher.stop()
            result["labelled_s"] = round(time.monotonic() - op.started_at, 2)
            print(f"  operator up, {args.nodes} nodes labelled", flush=True)
            result["operator_idle_after_s"] = round(await wait_idle(op.pid), 1)
            beats = None
            if args.heartbeat_s > 0:  # agents keep publishing while the webhook is measured
                beats = asyncio.create_task(
                    heartbeats_forever(api, prepared.nodes, args.heartbeat_s)
                )
                result["background_heartbeat_period_s"] = args.heartbeat_s
            try:
                if not args.skip_direct:
                    result["direct"] = await direct(op, pki, pids, args)
                if args.e2e_pods > 0:
                    result["e2e"] = await end_to_end(
                        api, plane=plane, op=op, pki=pki, pids=pids, args=args
                    )
            finally:
                if beats is not None:
                    beats.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await beats
            result["operator_peak_rss_mib"] = round(rss.peak / 2**20, 1)
        finally:
            rss.stop()
            op.stop()
            result["operator_log_tail"] = op.tail(15).splitlines()
    result["environment"]["load_average_end"] = load_average()
    return result


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.webhook", description=__doc__)
    parser.add_argument("--nodes", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--step-s", type=float, default=20.0, help="seconds per open-loop step")
    parser.add_argument("--rates", type=float, nargs="+", default=[50, 100, 200, 400])
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
        help="agents' heartbeat period in the background (0: none)",
    )
    parser.add_argument("--skip-direct", action="store_true", help="only the end-to-end part")
    parser.add_argument("--hotpath-rounds", type=int, default=2000, help="in-process reviews")
    parser.add_argument("--timeout-s", type=float, default=600.0)
    parser.add_argument("--out", type=Path, default=report.DOCS, help="docs folder to write to")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    print(f"webhook benchmark: {args.nodes} nodes, {args.rounds} round(s)", flush=True)
    # The handler alone first, in this process, before the plane adds its own load.
    handler = hotpath.measure(hotpath.fleet_state(args.nodes), args.hotpath_rounds)
    for shape, row in handler.items():
        print(f"  in-process {shape}: p50 {row['p50_ms']} p99 {row['p99_ms']} ms", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-webhook-") as folder, bench_plane() as plane:
        result = asyncio.run(run_on(plane, args, Path(folder)))
    result["in_process"] = {"reviews_per_shape": args.hotpath_rounds, "shapes": handler}
    path = report.write_json("webhook", result, args.out)
    page = report.update_markdown("webhook", "Webhook benchmark", render, args.out)
    print(f"wrote {path} and {page}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
