"""Where the operator's start-up time goes: operator variants against one settled fleet.

    python -m benchmarks.fleetvariants [--nodes 5000] [--rounds 2]
        [--variants "" "--label-concurrency 32"] [--py-spy DIR] [--pprof DIR] [--out DIR]

Setting up 5,000 nodes takes minutes; comparing operator settings run by run
would compare different machines' moods too. This puts the fleet on the plane
once (agents renewing their Leases throughout, as in benchmarks.fleet) and then,
round after round, for each variant (extra `maxtune operator` arguments; the
order reversed every other round): strips every `maxtune.io/` label, starts the
operator (a variant's leading NAME=VALUE words go to its environment), and
measures the start phase only: ready, every label right, peak
RSS, CPU seconds of the operator, kube-apiserver and etcd, and the API
server's own latency for the operator's requests. Ratios between variants come
from the same plane and the same minutes.

`--py-spy DIR` samples the operator (all threads, native frames off) during
each start with py-spy, written as collapsed stacks; `--pprof DIR` takes a CPU
profile of kube-apiserver over the same start (the plane is started with
`--profiling=true`). Results print as a table and go to
DIR/fleetvariants-*.json (not to docs: the numbers are quoted by hand).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import apimetrics, report
from benchmarks.agentleases import LeaseAgents
from benchmarks.benchplane import bench_plane, prepare_fleet, result_header
from benchmarks.kubeapi import MERGE_PATCH, Api, Credentials, bounded
from benchmarks.nodewatch import NodeWatcher
from benchmarks.procstat import CpuWindow, RssSampler, load_average
from maxtune_dev.localplane import LocalPlane
from maxtune_dev.testkit.operator import OperatorProcess, write_pki

NAMESPACE = "maxtune-system"
MIB = 2**20
PY_SPY = Path(sys.executable).parent / "py-spy"


async def strip_labels(api: Api, watcher: NodeWatcher, names: list[str]) -> float:
    """Remove every maxtune label (as `maxtune cleanup` would); returns the seconds it took."""
    started = time.monotonic()
    labelled = [n for n in names if watcher.current.get(n)]

    async def strip(name: str) -> None:
        labels: dict[str, None] = dict.fromkeys(watcher.current.get(name) or {})
        body = {"metadata": {"labels": labels}}
        await api.call("PATCH", f"/api/v1/nodes/{name}", body, content_type=MERGE_PATCH)

    watcher.expect({name: {} for name in names})
    await bounded([functools.partial(strip, n) for n in labelled], 32)
    await watcher.wait_all_right(300)
    return time.monotonic() - started


class Sampler:
    """py-spy on the operator, from its start until stopped (SIGINT makes it write)."""

    def __init__(self, pid: int, path: Path) -> None:
        self.path = path
        self.proc = subprocess.Popen(
            [
                *(str(PY_SPY), "record", "--pid", str(pid), "--rate", "200", "--threads"),
                *("--format", "raw", "--output", str(path), "--nonblocking"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


async def one_start(
    plane: LocalPlane,
    api: Api,
    watcher: NodeWatcher,
    expected: dict[str, dict[str, str]],
    variant: str,
    *,
    tag: str,
    work: Path,
    args: argparse.Namespace,
) -> dict[str, Any]:
    words = shlex.split(variant)
    env = dict(w.split("=", 1) for w in words if "=" in w and not w.startswith("-"))
    op = OperatorProcess(
        plane.kubeconfig,
        write_pki(work / f"pki-{tag}"),
        NAMESPACE,
        work,
        identity=f"variant-{tag}",
        timings="chart",
        extra=tuple(w for w in words if not ("=" in w and not w.startswith("-"))),
    )
    pids = plane.pids()
    before = await apimetrics.scrape(api)
    window = CpuWindow(pids).start()
    watcher.expect(expected)
    watcher.reset_counts()
    profile_task = None
    if args.pprof is not None:
        path = args.pprof / f"apiserver-{tag}.pprof"
        profile_task = asyncio.create_task(apimetrics.pprof(api, args.pprof_seconds, path))
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)  # the operator's environment: NAME=VALUE words of the variant
    try:
        op.start(wait=False)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    window.track("operator", op.pid)
    rss = RssSampler(op.pid).start()
    spy = Sampler(op.pid, args.py_spy / f"operator-{tag}.txt") if args.py_spy else None
    try:
        ready_s = await asyncio.to_thread(op.wait_ready, args.timeout_s)
        right_at = await watcher.wait_all_right(args.timeout_s)
        all_right_s = right_at - op.started_at
        if spy is not None:
            spy.stop()
        await asyncio.sleep(args.settle_s)
        cpu = window.stop()
        after = await apimetrics.scrape(api)
        writes = op.metric("maxtune_operator_label_writes_total")
        if profile_task is not None:
            await profile_task
    finally:
        rss.stop()
        if spy is not None and spy.proc.poll() is None:
            spy.stop()
        op.stop()
    return {
        "variant": variant,
        "ready_s": round(ready_s, 2),
        "all_labels_right_s": round(all_right_s, 2),
        "label_writes": int(writes),
        "max_changes_per_node": watcher.change_summary(len(expected))["max_per_node"],
        "peak_rss_mib": round(rss.peak / MIB, 1),
        "cpu": cpu,
        "apiserver_latency": {
            "PATCH nodes": apimetrics.request_latency(after, before, "PATCH", "nodes"),
            "LIST gpunodeprofiles": apimetrics.request_latency(
                after, before, "LIST", "gpunodeprofiles"
            ),
            "LIST nodes": apimetrics.request_latency(after, before, "LIST", "nodes"),
        },
        "apf": apimetrics.apf(after, before),
        "load_average": load_average(),
    }


async def run_on(plane: LocalPlane, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    result = result_header("fleetvariants", plane, args.nodes)
    result["variants"] = args.variants
    runs: list[dict[str, Any]] = []
    result["runs"] = runs
    async with Api(Credentials.from_kubeconfig(plane.kubeconfig)) as api:
        agents = LeaseAgents(api, NAMESPACE, interval_s=60.0)
        try:
            prepared = await prepare_fleet(plane, api, args.nodes, agents=agents)
            result["setup"] = prepared.timings
            expected = {p.name: dict(p.expected) for p in prepared.nodes}
            watcher = NodeWatcher(api)
            await watcher.start()
            try:
                for round_no in range(args.rounds):
                    order = list(enumerate(args.variants))
                    if round_no % 2:
                        order.reverse()
                    for index, variant in order:
                        strip_s = await strip_labels(api, watcher, list(expected))
                        await asyncio.sleep(args.settle_s)
                        tag = f"r{round_no}-v{index}"
                        found = await one_start(
                            plane,
                            api,
                            watcher,
                            expected,
                            variant,
                            tag=tag,
                            work=work,
                            args=args,
                        )
                        found.update(round=round_no, strip_s=round(strip_s, 1))
                        runs.append(found)
                        agents.check()
                        print(f"  {tag} {variant or '(defaults)'}: {_line(found)}", flush=True)
            finally:
                await watcher.stop()
        finally:
            await agents.stop()
            result["agent_lease_counts"] = dict(agents.counts)
    result["environment"]["load_average_end"] = load_average()
    return result


def _line(found: dict[str, Any]) -> str:
    cpu = found["cpu"]["cpu_s"]
    patch = found["apiserver_latency"]["PATCH nodes"]
    return (
        f"ready {found['ready_s']} s, all right {found['all_labels_right_s']} s, "
        f"writes {found['label_writes']}, peak {found['peak_rss_mib']} MiB, CPU s operator "
        f"{cpu.get('operator')}, apiserver {cpu.get('kube-apiserver')}, etcd {cpu.get('etcd')}; "
        f"PATCH nodes p50 {patch['p50'].get('value_ms')} p99 {patch['p99'].get('value_ms')} ms; "
        f"load {found['load_average'][0]}"
    )


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fleetvariants", description=__doc__)
    parser.add_argument("--nodes", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--variants", nargs="+", default=[""])
    parser.add_argument("--settle-s", type=float, default=3.0)
    parser.add_argument("--timeout-s", type=float, default=600.0)
    parser.add_argument("--py-spy", type=Path, help="folder for py-spy's collapsed stacks")
    parser.add_argument("--pprof", type=Path, help="folder for kube-apiserver CPU profiles")
    parser.add_argument("--pprof-seconds", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    for folder in (args.py_spy, args.pprof):
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
    print(f"fleet variants: {args.nodes} nodes, {len(args.variants)} variant(s)", flush=True)
    with (
        tempfile.TemporaryDirectory(prefix="bench-variants-") as folder,
        bench_plane(profiling=args.pprof is not None) as plane,
    ):
        result = asyncio.run(run_on(plane, args, Path(folder)))
    path = report.write_json("fleetvariants", result, args.out)
    print(f"wrote {path}", flush=True)
    print(json.dumps([_line(r) for r in result["runs"]], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
