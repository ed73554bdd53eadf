"""(b) of the webhook benchmark: pods created through the API server, arm by arm.

Per load (N creators in a closed loop, or paced to R pods/s) and round, every
arm in turn (benchmarks.webhookarms: maxtune, the reference webhooks, bare),
the order rotated by one each round so every arm runs in every position. Per
phase: the creators' latencies (their own process), the API server's latency
of its webhook calls (its histogram, by the webhook's name, which every arm
shares), the CPU seconds of every process, the connections the API server
opened to the arm's server (benchmarks.connwatch: each is a TLS handshake),
the server's own transport counts where it keeps them, and optionally a CPU
profile of kube-apiserver (`--pprof DIR`).

What maxtune adds is read against what the reference adds over bare, in the
same rounds: the p99 overhead and the plane's CPU per admitted pod.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
from typing import Any

from benchmarks import apimetrics, stats
from benchmarks.connwatch import ConnWatch
from benchmarks.fleetsetup import ensure_namespace
from benchmarks.kubeapi import Api
from benchmarks.procstat import CpuWindow
from benchmarks.webhookarms import Arm, stats_delta
from benchmarks.webhookparts import delete_pods, run_child, set_webhook, webhook_configuration
from maxtune.operator.metrics import ADMISSION_DURATION
from maxtune.operator.metrics import LOOP_LAG as LOOP_LAG_SPEC
from maxtune_dev.localplane import LocalPlane
from maxtune_dev.testkit.operator import OperatorProcess, WebhookPki

E2E_NAMESPACE = "bench-e2e"
OPERATOR_NAMESPACE = "maxtune-system"
HISTOGRAM = ADMISSION_DURATION.name
LOOP_LAG = LOOP_LAG_SPEC.name
WEBHOOK_NAME = "pod-opt-in.webhook.maxtune.io"
# The plane's processes whose CPU an admitted pod costs (the creators' client is not one).
PLANE = ("kube-apiserver", "etcd", "kube-scheduler", "kube-controller-manager", "kwok")


def parse_load(text: str) -> tuple[int, float]:
    """ "50": 50 creators in a closed loop; "50@25": 50 creators paced to 25 pods/s in all."""
    concurrency, _, rate = text.partition("@")
    return int(concurrency), float(rate or 0)


def load_name(text: str) -> str:
    concurrency, rate = parse_load(text)
    return f"{concurrency} creators" + (f" at {rate:g}/s" if rate else "")


def expected_decision(arm: str) -> str | None:
    """What the probe pod's decision annotation says when `arm` answers (None: no webhook)."""
    if arm == "bare":
        return None
    return "reference" if arm.startswith("reference") else "maxtune"


async def phase(
    api: Api,
    *,
    plane: LocalPlane,
    op: OperatorProcess,
    arm: Arm,
    pids: dict[str, int],
    load: str,
    round_no: int,
    args: argparse.Namespace,
) -> dict[str, Any]:
    concurrency, rate = parse_load(load)
    before_api = await apimetrics.scrape(api)
    before_samples = op.samples()
    before_op = stats.histogram(before_samples, HISTOGRAM)
    before_lag = stats.histogram(before_samples, LOOP_LAG)
    before_ref = await asyncio.to_thread(arm.samples)
    before_stats = await asyncio.to_thread(arm.transport_stats)
    conns = ConnWatch(arm.port).start() if arm.port else None
    window = CpuWindow(pids).start()
    profile = None
    if args.pprof is not None and round_no == 0 and arm.name != "bare":
        path = args.pprof / f"apiserver-{load.replace('@', 'at')}-{arm.name}.pprof"
        profile = asyncio.create_task(apimetrics.pprof(api, args.pprof_seconds, path))
    creators = {
        "kubeconfig": str(plane.kubeconfig),
        "namespace": E2E_NAMESPACE,
        "prefix": f"c{concurrency}-{int(rate)}-r{round_no}-{arm.name}",
        "count": args.e2e_pods,
        "concurrency": concurrency,
        "rate": rate,
    }
    result, _ = await asyncio.to_thread(run_child, "benchmarks.creators", creators)
    result["cpu"] = window.stop()
    if profile is not None:
        await profile
    after_api = await apimetrics.scrape(api)
    match = {"name": WEBHOOK_NAME}
    seen_by_api = stats.histogram_delta(
        stats.histogram(after_api, apimetrics.WEBHOOK_DURATION, match),
        stats.histogram(before_api, apimetrics.WEBHOOK_DURATION, match),
    )
    after_samples = op.samples()
    server = stats.histogram_delta(stats.histogram(after_samples, HISTOGRAM), before_op)
    after_ref = await asyncio.to_thread(arm.samples)
    reference_lag = None
    if before_ref is not None and after_ref is not None:
        reference_lag = loop_lag(
            stats.histogram(after_ref, LOOP_LAG), stats.histogram(before_ref, LOOP_LAG)
        )
    result.update(
        load=load,
        arm=arm.name,
        round=round_no,
        connections=conns.stop() if conns is not None else None,
        server_transport=stats_delta(await asyncio.to_thread(arm.transport_stats), before_stats),
        apiserver_webhook_call={
            "p50": stats.histogram_quantile(seen_by_api, 0.5),
            "p99": stats.histogram_quantile(seen_by_api, 0.99),
            "share_within_5ms": stats.fraction_at_most(seen_by_api, 0.005),
            "share_within_25ms": stats.fraction_at_most(seen_by_api, 0.025),
        },
        apiserver_pod_create=apimetrics.request_latency(after_api, before_api, "POST", "pods"),
        operator_handler={"p99": stats.histogram_quantile(server, 0.99)},
        # The operator runs in every arm (it labels the fleet); it serves admissions in one.
        operator_loop_lag=loop_lag(stats.histogram(after_samples, LOOP_LAG), before_lag),
        reference_loop_lag=reference_lag,
        cleanup_s=round(await delete_pods(api, E2E_NAMESPACE), 2),
    )
    return result


def loop_lag(after: stats.Buckets, before: stats.Buckets) -> dict[str, Any]:
    """How late a server's event loop ran its due timers over a phase (its lag probe's
    histogram, maxtune.operator.looplag): what every admission it served waited besides."""
    delta = stats.histogram_delta(after, before)
    return {
        "p50": stats.histogram_quantile(delta, 0.5),
        "p99": stats.histogram_quantile(delta, 0.99),
        "max_bucket_ms": stats.highest_bucket(delta),
    }


async def end_to_end(
    api: Api,
    *,
    plane: LocalPlane,
    op: OperatorProcess,
    arms: dict[str, Arm],
    pki: WebhookPki,
    pids: dict[str, int],
    args: argparse.Namespace,
) -> dict[str, Any]:
    await ensure_namespace(api, E2E_NAMESPACE)
    excluded = ["kube-system", OPERATOR_NAMESPACE]
    configs = {
        name: webhook_configuration(arm.url, pki.ca_pem, excluded)
        for name, arm in arms.items()
        if arm.url is not None
    }
    names = list(arms)
    phases = []
    for load in args.e2e_loads:
        for round_no in range(args.rounds):
            shift = round_no % len(names)
            for name in names[shift:] + names[:shift]:
                toggle_s = await set_webhook(
                    api, E2E_NAMESPACE, configs.get(name), expected_decision(name)
                )
                await asyncio.sleep(1)
                found = await phase(
                    api,
                    plane=plane,
                    op=op,
                    arm=arms[name],
                    pids=pids,
                    load=load,
                    round_no=round_no,
                    args=args,
                )
                found["toggle_s"] = round(toggle_s, 2)
                phases.append(found)
                lat = found["latency"]
                conns = (found["connections"] or {}).get("new_connections")
                print(
                    f"  e2e {load_name(load):>16} round {round_no} {name:>15}: "
                    f"{found['creates_per_s']:6.1f} creates/s p50 {lat.get('p50_ms')} "
                    f"p99 {lat.get('p99_ms')} ms, mutated {found['mutated']}/{found['created']}, "
                    f"errors {found['errors']}, new connections {conns}",
                    flush=True,
                )
                await asyncio.sleep(2)
    await set_webhook(api, E2E_NAMESPACE, None, None)
    return {"arms": names, "phases": phases, "summary": summarize(phases, names)}


def _added_cpu_ms(per_pod: dict[str, dict[str, float]], arm: str) -> float:
    """CPU ms per pod the arm adds over bare, summed over the plane and every webhook server."""
    procs = [p for p in per_pod[arm] if p in PLANE or p == "operator" or p.startswith("ref")]
    return round(sum(per_pod[arm].get(p, 0.0) - per_pod["bare"].get(p, 0.0) for p in procs), 3)


def summarize(phases: list[dict[str, Any]], names: list[str]) -> list[dict[str, Any]]:
    """Per load: every arm pooled over rounds, overheads over bare per round, CPU per pod, and
    maxtune's additions over the reference's as ratios."""
    found = []
    for load in dict.fromkeys(p["load"] for p in phases):
        mine = [p for p in phases if p["load"] == load]
        pooled = {
            arm: stats.latency_summary(
                x / 1e3 for p in mine if p["arm"] == arm for x in p["latencies_ms"]
            )
            for arm in names
        }
        per_pod = {
            arm: {
                proc: round(
                    sum(p["cpu"]["cpu_s"].get(proc, 0.0) for p in mine if p["arm"] == arm)
                    / max(1, sum(p["created"] for p in mine if p["arm"] == arm))
                    * 1e3,
                    3,
                )
                for proc in mine[0]["cpu"]["cpu_s"]
            }
            for arm in names
        }
        per_round: list[dict[str, Any]] = []
        for r in sorted({p["round"] for p in mine}):
            lat = {p["arm"]: p["latency"] for p in mine if p["round"] == r}
            per_round.append(
                {
                    "round": r,
                    "p99_overhead_ms": {
                        arm: round(lat[arm]["p99_ms"] - lat["bare"]["p99_ms"], 2)
                        for arm in names
                        if arm != "bare"
                    },
                }
            )
        overhead = {
            arm: {
                "p50_ms": round(pooled[arm]["p50_ms"] - pooled["bare"]["p50_ms"], 2),
                "p99_ms": round(pooled[arm]["p99_ms"] - pooled["bare"]["p99_ms"], 2),
                "added_cpu_ms_per_pod": _added_cpu_ms(per_pod, arm),
            }
            for arm in names
            if arm != "bare"
        }
        summary: dict[str, Any] = {
            "load": load,
            "name": load_name(load),
            "concurrency": parse_load(load)[0],
            "rate": parse_load(load)[1] or None,
            "pooled": pooled,
            "cpu_ms_per_pod": per_pod,
            "overhead": overhead,
            "per_round": per_round,
        }
        if "maxtune" in overhead and "reference" in overhead:
            summary["maxtune_over_reference"] = _ratios(overhead, per_round)
        found.append(summary)
    return found


def _ratios(
    overhead: dict[str, dict[str, float]], per_round: list[dict[str, Any]]
) -> dict[str, Any]:
    """maxtune's additions over bare divided by the reference's (1.0: no cost of its own)."""

    def ratio(a: float, b: float) -> float | None:
        return round(a / b, 2) if b > 0 else None

    rounds = [
        ratio(r["p99_overhead_ms"]["maxtune"], r["p99_overhead_ms"]["reference"]) for r in per_round
    ]
    return {
        "p99_overhead_pooled": ratio(
            overhead["maxtune"]["p99_ms"], overhead["reference"]["p99_ms"]
        ),
        "p99_overhead_per_round": rounds,
        "p99_overhead_median_round": (
            statistics.median([x for x in rounds if x is not None])
            if any(x is not None for x in rounds)
            else None
        ),
        "added_cpu_per_pod": ratio(
            overhead["maxtune"]["added_cpu_ms_per_pod"],
            overhead["reference"]["added_cpu_ms_per_pod"],
        ),
    }
