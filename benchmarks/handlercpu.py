"""The webhook server's own CPU per review, maxtune against the reference, and before a change.

    python -m benchmarks.handlercpu [--before REV] [--rate 300] [--seconds 20] [--rounds 3]
        [--nodes 2000] [--out docs/benchmarks]

No control plane: each arm is a server process on 127.0.0.1 serving /mutate
exactly as the operator does (maxtune.operator.server: aiohttp, TLS, the
admission histogram), and vegeta sends it the benchmark's review mix at
`--rate` for `--seconds`. Measured: the server process's CPU (user + system)
per answered review, and vegeta's latency. Arms:

- `maxtune`: this tree's webhook over a FleetState of `--nodes` benchmark
  nodes (benchmarks.hotpath.fleet_state, frozen as the operator freezes it);
- `before`: the same, with the operator's code from git revision `--before`
  (a detached worktree, removed afterwards); only with `--before`;
- `reference`: the constant-patch reference webhook (benchmarks.refwebhook).

The arms run one after another, the order rotated each round, so a drift of
the machine hits each alike; the ratios are taken within the run. On the full
plane the same webhook shares two cores with the API server (benchmarks.webhook);
this isolates what the server itself costs per review.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from benchmarks import report, reviews
from benchmarks.envinfo import code_state
from benchmarks.hotpath import fleet_state
from benchmarks.vegeta import Vegeta
from maxtune.operator import server
from maxtune.operator.metrics import Metrics
from maxtune.operator.runtime import freeze_heap
from maxtune.operator.tls import server_context
from maxtune_dev.localplane.certs import write_serving_pki

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "operator", "agent", "dev")


async def _serve(arm: str, port: int, pki: Path, nodes: int) -> None:
    tls = server_context(pki / "tls.crt", pki / "tls.key")
    if arm == "reference":
        # Imported here: the `before` arm runs this module over an older tree, which need
        # not have what the reference uses of this one (its JSON codec, say).
        from benchmarks.refwebhook import Transport, apps  # noqa: PLC0415

        app, _ = apps(Transport())
    else:
        fleet = fleet_state(nodes)
        metrics = Metrics("bench", fleet)
        app = server.webhook_app(
            fleet, metrics, own_namespace="maxtune-system", version="bench", ready=lambda: True
        )
        freeze_heap()
    runner, _ = await server.start(app, "127.0.0.1", port, tls)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    await stop.wait()
    await runner.cleanup()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _environment(tree: Path | None) -> dict[str, str]:
    """The server's environment: the `before` arm imports maxtune from its own worktree."""
    env = dict(os.environ)
    if tree is not None:
        paths = [str(tree / p) for p in PACKAGES] + [str(ROOT)]
        env["PYTHONPATH"] = os.pathsep.join([*paths, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _one(
    arm: str, tree: Path | None, args: argparse.Namespace, work: Path, pki: Any
) -> dict[str, Any]:
    port = _free_port()
    command = [sys.executable, "-m", "benchmarks.handlercpu", "serve", arm, str(port)]
    command += [str(pki.cert.parent), str(args.nodes)]
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, text=True, env=_environment(tree), cwd=ROOT
    )
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the {arm} server did not start")
        bodies = reviews.mixed_bodies()
        url = f"https://127.0.0.1:{port}/mutate"
        expect = {shape: True for shape in bodies}  # every shape of the mix is patched
        vegeta = Vegeta(
            url,
            pki.ca_cert,
            bodies=bodies,
            expect_patch=expect,
            order=reviews.rotation(),
            work=work,
        )
        warm, _, _ = vegeta.attack({"mode": "open", "rate": args.rate}, 3.0)
        warm.unlink(missing_ok=True)
        process = psutil.Process(proc.pid)
        before = process.cpu_times()
        path, _, client_cpu = vegeta.attack({"mode": "open", "rate": args.rate}, args.seconds)
        after = process.cpu_times()
        hits = vegeta.results(path)
        errors = sum(1 for hit in hits if vegeta.check(hit)[1])
        latencies = sorted(int(hit["latency"]) / 1e6 for hit in hits)
        cpu = (after.user + after.system) - (before.user + before.system)
        return {
            "arm": arm,
            "reviews": len(hits),
            "errors": errors,
            "server_cpu_ms_per_review": round(1000 * cpu / max(len(hits), 1), 3),
            "client_cpu_s": round(client_cpu, 3),
            "p50_ms": round(latencies[len(latencies) // 2], 3) if latencies else None,
            "p99_ms": round(latencies[int(len(latencies) * 0.99)], 3) if latencies else None,
        }
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    arms: list[tuple[str, Path | None]] = [("maxtune", None), ("reference", None)]
    with tempfile.TemporaryDirectory(prefix="handlercpu-") as tmp:
        work = Path(tmp)
        pki = write_serving_pki(work / "pki")
        tree = None
        if args.before:
            tree = work / "before"
            subprocess.run(
                ["git", "worktree", "add", "--detach", "-q", str(tree), args.before],
                cwd=ROOT,
                check=True,
            )
            arms.insert(1, ("before", tree))
        try:
            steps = []
            for round_ in range(args.rounds):
                shift = round_ % len(arms)
                for arm, source in arms[shift:] + arms[:shift]:
                    step = {"round": round_, **_one(arm, source, args, work, pki)}
                    print(
                        f"  round {round_} {arm:>9}: {step['server_cpu_ms_per_review']:.3f} ms "
                        f"CPU per review, p50 {step['p50_ms']} p99 {step['p99_ms']} ms, "
                        f"errors {step['errors']}",
                        flush=True,
                    )
                    steps.append(step)
        finally:
            if tree is not None:
                subprocess.run(
                    ["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False
                )
    return {"steps": steps, "summary": summarize(steps, [a for a, _ in arms])}


def summarize(steps: list[dict[str, Any]], arms: list[str]) -> dict[str, Any]:
    """Per arm the median CPU per review; ratios per round, then their median."""
    cpu = {a: [s["server_cpu_ms_per_review"] for s in steps if s["arm"] == a] for a in arms}
    rounds = sorted({s["round"] for s in steps})
    by_round = {(s["round"], s["arm"]): s["server_cpu_ms_per_review"] for s in steps}
    ratios: dict[str, list[float]] = {}
    for arm in arms:
        for other in arms:
            if arm != other and (other == "reference" or (arm, other) == ("before", "maxtune")):
                ratios[f"{arm}/{other}"] = [
                    round(by_round[(r, arm)] / by_round[(r, other)], 3) for r in rounds
                ]
    return {
        "cpu_ms_per_review": {a: round(statistics.median(v), 3) for a, v in cpu.items() if v},
        "ratios_per_round": ratios,
        "ratios": {k: round(statistics.median(v), 3) for k, v in ratios.items() if v},
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:
        arm, port, pki, nodes = argv[1:5]
        sys.setswitchinterval(0.001)  # as maxtune.operator.runtime.run sets it
        asyncio.run(_serve(arm, int(port), Path(pki), int(nodes)))
        return 0
    parser = argparse.ArgumentParser(prog="python -m benchmarks.handlercpu", description=__doc__)
    parser.add_argument("--before", help="git revision whose operator code is the 'before' arm")
    parser.add_argument("--rate", type=float, default=300.0, help="reviews per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="per arm and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--nodes", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=report.DOCS)
    args = parser.parse_args(argv)
    sys.setswitchinterval(0.001)
    started = time.time()
    print(f"handler CPU: {args.nodes} nodes, {args.rate:g} reviews/s, {args.rounds} round(s)")
    result: dict[str, Any] = {
        "command": "python -m benchmarks.handlercpu " + " ".join(argv),
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(started)),
        "machine": {"cores": psutil.cpu_count(), "load_average": list(os.getloadavg())},
        "code": code_state(),
        "before": args.before,
        "nodes": args.nodes,
        "rate": args.rate,
        "seconds": args.seconds,
        **measure(args),
    }
    path = report.write_json("handlercpu", result, args.out)
    print(f"summary: {result['summary']}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
