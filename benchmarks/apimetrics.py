"""The API server's own counters: node PATCHes by subresource, webhook call latency.

`apiserver_request_total{verb="PATCH",resource="nodes"}` counts every node
patch whoever sent it; the operator writes only `metadata.labels` (subresource
""), kwok's heartbeats go to `status`. The API server also times every call it
makes to a webhook (`apiserver_admission_webhook_admission_duration_seconds`,
by webhook name): the overhead the webhook adds as the API server sees it.
"""

from __future__ import annotations

from benchmarks.kubeapi import Api
from maxtune_dev.testkit.promtext import Samples, parse

REQUESTS = "apiserver_request_total"
WEBHOOK_DURATION = "apiserver_admission_webhook_admission_duration_seconds"


async def scrape(api: Api) -> Samples:
    async with api.session.get("/metrics") as response:
        response.raise_for_status()
        text = await response.text()
    return parse(text, (REQUESTS, WEBHOOK_DURATION))


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
