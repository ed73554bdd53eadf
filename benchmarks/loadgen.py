"""Load generator for the webhook: AdmissionReviews over TLS, in a process of its own.

    python -m benchmarks.loadgen CONFIG.json RESULT.json

It runs apart from the benchmark's driver so that its CPU use is its own and
can be reported next to the server's (on 2 cores the two compete; the driver
measures both). Python + aiohttp on one event loop, keep-alive connections,
the server certificate verified against the webhook's CA, as the API server
verifies it.

Two modes:
- open loop: request i is due at start + i/rate whatever happened before
  (the API server does not wait for one admission to send the next). Latency
  is reported from the moment the request was sent and, separately, from the
  moment it was due: the second also counts the generator's own lateness, so
  a client that fell behind cannot hide a slow server (coordinated omission).
- closed loop: `concurrency` workers each send the next request as soon as
  the previous answer is in.

Every answer is checked: HTTP 200, an AdmissionReview echoing the request's
uid, allowed, and a patch exactly when the shape's preflight answer had one.
Anything else is an error, by kind.
"""

from __future__ import annotations

import asyncio
import json
import resource
import ssl
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.reviews import UID_PLACEHOLDER
from benchmarks.stats import latency_summary

TIMEOUT_S = 10.0


@dataclass
class Step:
    name: str
    mode: str  # "open" or "closed"
    duration_s: float
    warmup_s: float
    rate: float = 0.0
    concurrency: int = 0


@dataclass
class Recorder:
    from_send: list[float] = field(default_factory=list)
    from_due: list[float] = field(default_factory=list)
    by_shape: dict[str, list[float]] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    sent: int = 0
    first_send: float = float("inf")
    last_done: float = 0.0
    max_lag: float = 0.0


class Client:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        bodies: dict[str, bytes],
        expect_patch: dict[str, bool],
        order: list[str],
    ) -> None:
        self.session = session
        self.url = url
        self.bodies = bodies
        self.expect_patch = expect_patch
        self.order = order
        self.placeholder = UID_PLACEHOLDER.encode()

    async def send(self, i: int, due: float, rec: Recorder | None) -> None:
        shape = self.order[i % len(self.order)]
        uid = str(uuid.uuid4())
        body = self.bodies[shape].replace(self.placeholder, uid.encode(), 1)
        sent = time.monotonic()
        error = ""
        try:
            async with self.session.post(
                self.url, data=body, headers={"Content-Type": "application/json"}
            ) as response:
                data = await response.read()
                status = response.status
            done = time.monotonic()
            error = self._check(status, data, uid, shape)
        except TimeoutError:
            done, error = time.monotonic(), "timeout"
        except aiohttp.ClientError as exc:
            done, error = time.monotonic(), f"connection: {type(exc).__name__}"
        if rec is None:
            return
        rec.sent += 1
        rec.first_send = min(rec.first_send, sent)
        rec.last_done = max(rec.last_done, done)
        if error:
            rec.errors[error] += 1
            return
        rec.from_send.append(done - sent)
        rec.from_due.append(done - due)
        rec.by_shape.setdefault(shape, []).append(done - sent)

    def _check(self, status: int, data: bytes, uid: str, shape: str) -> str:
        if status != 200:
            return f"http {status}"
        try:
            answer = json.loads(data)["response"]
        except (ValueError, KeyError, TypeError):
            return "not an AdmissionReview"
        if answer.get("uid") != uid:
            return "uid not echoed"
        if answer.get("allowed") is not True:
            return "not allowed"
        if ("patch" in answer) != self.expect_patch[shape]:
            return "patch differs from preflight"
        return ""


async def open_loop(client: Client, step: Step) -> Recorder:
    rec = Recorder()
    warm = int(step.warmup_s * step.rate)
    total = warm + int(step.duration_s * step.rate)
    start = time.monotonic() + 0.05
    tasks: list[asyncio.Task[None]] = []
    for i in range(total):
        due = start + i / step.rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        measured = i >= warm
        if measured:
            rec.max_lag = max(rec.max_lag, time.monotonic() - due)
        tasks.append(asyncio.create_task(client.send(i, due, rec if measured else None)))
    await asyncio.gather(*tasks)
    return rec


async def closed_loop(client: Client, step: Step) -> Recorder:
    rec = Recorder()
    began = time.monotonic()
    measure_from = began + step.warmup_s
    end = measure_from + step.duration_s
    counter = iter(range(10**9))

    async def worker() -> None:
        while True:
            now = time.monotonic()
            if now >= end:
                return
            await client.send(next(counter), now, rec if now >= measure_from else None)

    await asyncio.gather(*(worker() for _ in range(step.concurrency)))
    return rec


def summarize(step: Step, rec: Recorder, cpu_s: float) -> dict[str, Any]:
    window = max(rec.last_done - rec.first_send, 1e-9) if rec.sent else 0.0
    ok = len(rec.from_send)
    return {
        "name": step.name,
        "mode": step.mode,
        "target_rate": step.rate or None,
        "concurrency": step.concurrency or None,
        "duration_s": step.duration_s,
        "sent": rec.sent,
        "ok": ok,
        "errors": dict(rec.errors),
        "error_count": sum(rec.errors.values()),
        "window_s": round(window, 3),
        "achieved_rps": round(ok / window, 1) if window else 0.0,
        "latency": latency_summary(rec.from_send),
        "latency_from_due": latency_summary(rec.from_due),
        "by_shape": {shape: latency_summary(v) for shape, v in sorted(rec.by_shape.items())},
        "max_send_lag_ms": round(rec.max_lag * 1e3, 3),
        "client_cpu_s": round(cpu_s, 3),
    }


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run(config: dict[str, Any]) -> dict[str, Any]:
    context = ssl.create_default_context(cafile=config["ca"])
    bodies = {name: text.encode() for name, text in config["bodies"].items()}
    step = Step(**config["step"])
    connector = aiohttp.TCPConnector(ssl=context, limit=256)
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        client = Client(
            session, config["url"], bodies, config["expect_patch"], list(config["order"])
        )
        cpu = _cpu()
        if step.mode == "open":
            rec = await open_loop(client, step)
        else:
            rec = await closed_loop(client, step)
        return summarize(step, rec, _cpu() - cpu)


def main(argv: list[str]) -> int:
    config = json.loads(Path(argv[1]).read_text())
    result = asyncio.run(run(config))
    Path(argv[2]).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
