"""The API server's own counters: node PATCHes by subresource, webhook call latency, request
latency and priority-and-fairness waits (what says whether the API server is the limit).

`apiserver_request_total{verb="PATCH",resource="nodes"}` counts every node
patch whoever sent it; the operator writes only `metadata.labels` (subresource
""), kwok's heartbeats go to `status`. The API server also times every call it
makes to a webhook (`apiserver_admission_webhook_admission_duration_seconds`,
by webhook name): the overhead the webhook adds as the API server sees it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks import stats
from benchmarks.kubeapi import Api
from maxtune_dev.testkit.promtext import Samples, parse

REQUESTS = "apiserver_request_total"
WEBHOOK_DURATION = "apiserver_admission_webhook_admission_duration_seconds"
REQUEST_DURATION = "apiserver_request_duration_seconds"
APF_WAIT = "apiserver_flowcontrol_request_wait_duration_seconds"
APF_REJECTED = "apiserver_flowcontrol_rejected_requests_total"


async def scrape(api: Api) -> Samples:
    async with api.session.get("/metrics") as response:
        response.raise_for_status()
        text = await response.text()
    return parse(text, (REQUESTS, WEBHOOK_DURATION, REQUEST_DURATION, APF_WAIT, APF_REJECTED))


def request_latency(
    after: Samples, before: Samples, verb: str, resource: str, subresource: str = ""
) -> dict[str, Any]:
    """The API server's own latency for one kind of request between two scrapes (from
    authentication to the answer written, as `apiserver_request_duration_seconds` counts it;
    watches are not in it)."""
    match = {"verb": verb, "resource": resource, "subresource": subresource}
    delta = stats.histogram_delta(
        stats.histogram(after, REQUEST_DURATION, match),
        stats.histogram(before, REQUEST_DURATION, match),
    )
    return {
        "p50": stats.histogram_quantile(delta, 0.5),
        "p99": stats.histogram_quantile(delta, 0.99),
    }


def apf(after: Samples, before: Samples) -> dict[str, Any]:
    """Time requests waited in priority-and-fairness queues, and rejections, by priority level
    (`exempt` never waits: system:masters, which the benchmarks' clients are)."""
    levels = {labels.get("priority_level", "") for labels, _ in after.get(f"{APF_WAIT}_bucket", [])}
    found: dict[str, Any] = {}
    for level in sorted(levels):
        delta = stats.histogram_delta(
            stats.histogram(after, APF_WAIT, {"priority_level": level}),
            stats.histogram(before, APF_WAIT, {"priority_level": level}),
        )
        count = stats.histogram_quantile(delta, 0.99).get("count", 0)
        if count:
            found[level] = {"requests": count, "wait_p99": stats.histogram_quantile(delta, 0.99)}
    rejected = {
        labels.get("priority_level", ""): value for labels, value in after.get(APF_REJECTED, [])
    }
    for labels, value in before.get(APF_REJECTED, []):
        level = labels.get("priority_level", "")
        rejected[level] = rejected.get(level, 0.0) - value
    return {"waits": found, "rejected": {k: int(v) for k, v in rejected.items() if v}}


WRITE_VERBS = frozenset({"PATCH", "PUT", "APPLY", "POST", "DELETE"})


def node_writes(samples: Samples) -> dict[str, float]:
    """Write requests on nodes so far, keyed "VERB" (the node) or "VERB subresource"."""
    found: dict[str, float] = {}
    for labels, value in samples.get(REQUESTS, []):
        verb = labels.get("verb", "")
        if verb in WRITE_VERBS and labels.get("resource") == "nodes":
            sub = labels.get("subresource", "")
            key = f"{verb} {sub}" if sub else verb
            found[key] = found.get(key, 0.0) + value
    return found


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, int]:
    return {k: int(v - before.get(k, 0.0)) for k, v in sorted(after.items())}


async def pprof(api: Api, seconds: int, path: Path) -> None:
    """kube-apiserver's CPU profile over the next `seconds` into `path` (`go tool pprof` reads
    it); the plane must run with `--profiling=true` (benchplane.bench_plane(profiling=True))."""
    timeout = aiohttp.ClientTimeout(total=seconds + 30)
    async with api.session.get(
        "/debug/pprof/profile", params={"seconds": str(seconds)}, timeout=timeout
    ) as response:
        response.raise_for_status()
        data = await response.read()
    await asyncio.to_thread(path.write_bytes, data)
