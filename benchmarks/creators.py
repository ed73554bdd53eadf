"""Concurrent pod creators against the API server, in a process of their own.

    python -m benchmarks.creators CONFIG.json RESULT.json

`concurrency` workers each create the next pod as soon as the previous create
returned (a closed loop, like Kyverno's k6 virtual users), until `count` pods
exist. With `rate` > 0 the same workers are paced: pod i is due at
start + i/rate, and a worker waits for its next pod's moment (it never sends
early, and sends at once when late), so the plane is loaded at a set rate
below what it can take and the latency is not just queueing.

The latency is the whole POST /api/v1/namespaces/NS/pods: authentication,
admission (with or without the webhook), validation and the etcd write. Each
answer is the stored pod, so whether the webhook mutated it is read from its
`maxtune.io/decision` annotation: the "with webhook" phases must be 100%
mutated and the bare ones 0%, or the phase does not measure what it says.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.kubeapi import Api, ApiError, Credentials
from benchmarks.stats import latency_summary

DECISION = "maxtune.io/decision"


def user_pod(name: str) -> dict[str, Any]:
    """A training pod as a user submits it (opted in by its label)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {"app": "train", "maxtune.io/inject": "true", "team": "research"},
        },
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "trainer",
                    "image": "nvcr.io/nvidia/pytorch:25.10-py3",
                    "command": ["torchrun", "--nproc-per-node=1", "train.py"],
                    "env": [{"name": "NCCL_DEBUG", "value": "WARN"}],
                    "resources": {"limits": {"nvidia.com/gpu": "1"}},
                }
            ],
        },
    }


async def create_all(config: dict[str, Any]) -> dict[str, Any]:
    credentials = Credentials.from_kubeconfig(Path(config["kubeconfig"]))
    namespace = config["namespace"]
    prefix = config["prefix"]
    count = int(config["count"])
    path = f"/api/v1/namespaces/{namespace}/pods"
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    mutated = 0
    names = iter(range(count))
    rate = float(config.get("rate") or 0.0)
    async with Api(credentials, connections=int(config["concurrency"]) + 4) as api:
        began = time.monotonic()

        async def worker() -> None:
            nonlocal mutated
            for i in names:
                if rate > 0:
                    delay = began + i / rate - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                started = time.monotonic()
                try:
                    pod = await api.call("POST", path, user_pod(f"{prefix}-{i:05d}"))
                except ApiError as exc:
                    errors[f"http {exc.status}"] += 1
                    continue
                except (TimeoutError, OSError) as exc:
                    errors[type(exc).__name__] += 1
                    continue
                latencies.append(time.monotonic() - started)
                if DECISION in ((pod.get("metadata") or {}).get("annotations") or {}):
                    mutated += 1

        cpu = _cpu()
        await asyncio.gather(*(worker() for _ in range(int(config["concurrency"]))))
        wall = time.monotonic() - began
    return {
        "count": count,
        "concurrency": int(config["concurrency"]),
        "rate": rate or None,
        "created": len(latencies),
        "mutated": mutated,
        "errors": dict(errors),
        "wall_s": round(wall, 3),
        "creates_per_s": round(len(latencies) / wall, 1) if wall else 0.0,
        "latency": latency_summary(latencies),
        "latencies_ms": [round(x * 1e3, 3) for x in latencies],
        "client_cpu_s": round(_cpu() - cpu, 3),
    }


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str]) -> int:
    config = json.loads(Path(argv[1]).read_text())
    result = asyncio.run(create_all(config))
    Path(argv[2]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
