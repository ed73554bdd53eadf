"""The webhook server's own CPU per review, by transport: HTTP/2, HTTP/1.1, and aiohttp before.

    python -m benchmarks.webhookproto [--rate 300] [--seconds 10] [--rounds 2]

Each arm is a server process on 127.0.0.1 answering one opted-in GPU pod's review
from a small in-memory fleet (maxtune_dev.testkit.mixed_fleet), driven by vegeta
(the same binary and TLS verification as benchmarks.vegeta) at a fixed open-loop
rate; the server's CPU seconds (user + system, from /proc through psutil) over
the attack, divided by the answers, is its cost per review. Arms:

- `h2`: `maxtune.operator.server.serve_webhook` (hypercorn), vegeta with `-http2`
  (ALPN h2, as kube-apiserver offers it): one multiplexed connection;
- `h1`: the same server, vegeta with `-http2=false` (HTTP/1.1, kept-alive connections);
- `aiohttp-h1`: the operator's webhook before decision 0009, an aiohttp handler making
  the same call (`admission.review`) behind the same TLS context, HTTP/1.1.

The decision itself is the same in every arm, so the differences are the transports'.
This is not the end-to-end benchmark (benchmarks.webhook): no API server, no plane.
The arms run one after the other, the order rotated each round; on a shared machine
the per-round numbers say how much to trust the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
from aiohttp import web

from benchmarks.vegeta import binary
from maxtune.operator import admission, server
from maxtune.operator.metrics import Metrics
from maxtune.operator.tls import server_context
from maxtune_dev.testkit import mixed_fleet, pod, review
from maxtune_dev.testkit.operator import write_pki

ARMS = ("h2", "h1", "aiohttp-h1")


async def _serve(stack: str, port_file: Path, cert: Path, key: Path) -> None:
    fleet = mixed_fleet().state
    metrics = Metrics("bench", fleet)
    tls = server_context(cert, key)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if stack == "hypercorn":
        app = server.webhook_app(fleet, metrics, own_namespace="x", version="b", ready=lambda: True)
        listener = await server.serve_webhook(app, "127.0.0.1", 0, tls)
        await asyncio.to_thread(port_file.write_text, str(listener.port))
        await stop.wait()
        await listener.close()
        return

    async def mutate(request: web.Request) -> web.Response:  # the handler before 0009
        started = time.perf_counter()
        outcome = admission.review(
            await request.read(), fleet=fleet, own_namespace="x", version="b", ready=True
        )
        metrics.admission_requests.labels(outcome.result).inc()
        metrics.admission_duration.observe(time.perf_counter() - started)
        return web.Response(body=outcome.body, content_type="application/json")

    hook = web.Application(client_max_size=server.MAX_BODY + 1)
    hook.router.add_post("/mutate", mutate)
    runner, port = await server.start(hook, "127.0.0.1", 0, tls)
    await asyncio.to_thread(port_file.write_text, str(port))
    await stop.wait()
    await runner.cleanup()


def _attack(
    url: str, ca: Path, body: Path, work: Path, *, arm: str, rate: int, seconds: int
) -> int:
    targets = work / "targets.txt"
    targets.write_text(f"POST {url}\nContent-Type: application/json\n@{body}\n\n")
    out = work / f"{arm}.bin"
    command = [
        str(binary()),
        "attack",
        f"-targets={targets}",
        f"-rate={rate}/1s",
        f"-duration={seconds}s",
        f"-root-certs={ca}",
        "-keepalive=true",
        f"-http2={'true' if arm == 'h2' else 'false'}",
        f"-output={out}",
    ]
    subprocess.run(command, check=True, capture_output=True)
    report = subprocess.run(
        [str(binary()), "report", "-type=json", str(out)], check=True, capture_output=True
    )
    summary = json.loads(report.stdout)
    codes = summary.get("status_codes", {})
    if set(codes) != {"200"}:
        raise RuntimeError(f"{arm}: answers other than 200: {codes} {summary.get('errors')}")
    return int(codes["200"])


def run_arm(arm: str, work: Path, rate: int, seconds: int) -> dict[str, Any]:
    pki = write_pki(work / "pki")
    body = work / "review.json"
    body.write_bytes(review(pod()))
    port_file = work / f"{arm}.port"
    port_file.unlink(missing_ok=True)
    stack = "aiohttp" if arm == "aiohttp-h1" else "hypercorn"
    serve = ["serve", stack, str(port_file), str(pki.cert), str(pki.key)]
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.webhookproto", *serve])
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text():
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"{arm}: the server did not start")
            time.sleep(0.05)
        url = f"https://127.0.0.1:{port_file.read_text()}/mutate"
        _attack(
            url, pki.ca_cert, body, work, arm=arm, rate=rate, seconds=2
        )  # warm-up: imports, first tables
        cpu = psutil.Process(proc.pid).cpu_times()
        answered = _attack(url, pki.ca_cert, body, work, arm=arm, rate=rate, seconds=seconds)
        after = psutil.Process(proc.pid).cpu_times()
        used = (after.user - cpu.user) + (after.system - cpu.system)
        return {"arm": arm, "answers": answered, "cpu_ms_per_review": 1000 * used / answered}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else argv
    if args_in[:1] == ["serve"]:
        stack, port_file, cert, key = args_in[1:5]
        asyncio.run(_serve(stack, Path(port_file), Path(cert), Path(key)))
        return 0
    parser = argparse.ArgumentParser(prog="python -m benchmarks.webhookproto", description=__doc__)
    parser.add_argument("--rate", type=int, default=300, help="reviews per second (open loop)")
    parser.add_argument("--seconds", type=int, default=10, help="each attack's length")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(args_in)
    load = psutil.getloadavg()
    rows: dict[str, list[float]] = {arm: [] for arm in ARMS}
    with tempfile.TemporaryDirectory(prefix="webhookproto-") as tmp:
        for round_ in range(args.rounds):
            order = ARMS[round_ % len(ARMS) :] + ARMS[: round_ % len(ARMS)]
            for arm in order:
                found = run_arm(arm, Path(tmp), args.rate, args.seconds)
                rows[arm].append(found["cpu_ms_per_review"])
                print(json.dumps({"round": round_, **found}), flush=True)
    print(f"load average at start {load[0]:.2f}/{load[1]:.2f}; at end {psutil.getloadavg()[0]:.2f}")
    print("| arm | server CPU ms per review, median | per round |")
    print("|---|---|---|")
    for arm, values in rows.items():
        rounds = ", ".join(f"{v:.3f}" for v in values)
        print(f"| {arm} | {statistics.median(values):.3f} | {rounds} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
