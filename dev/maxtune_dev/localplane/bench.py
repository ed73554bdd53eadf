"""Numbers for docs/benchmarks/control-plane.md: build times and plane start-up.

    python -m maxtune_dev.localplane.bench            # warm build + start-up (3 runs)
    python -m maxtune_dev.localplane.bench --cold     # also a cold build in fresh Go caches

The cold build runs `python -m maxtune_dev.localplane build` in a subprocess with
GOMODCACHE, GOCACHE and MAXTUNE_CACHE_DIR pointing at new temporary folders,
so it downloads and compiles everything as a fresh machine would. Start-up is
measured to /readyz, to a fully ready plane (controllers healthy, `default`
service account made), to the first kwok GPU node being schedulable and to a
GPU pod running on it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kubernetes import client

from maxtune_dev.localplane.build import ensure_binaries
from maxtune_dev.localplane.kwok import kwok_node_model
from maxtune_dev.localplane.plane import LocalPlane
from maxtune_dev.localplane.waits import wait_node_ready, wait_pod_running


def _timed_build(env: dict[str, str]) -> float:
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "maxtune_dev.localplane", "build"],
        env=env,
        check=True,
    )
    return time.monotonic() - started


def cold_build() -> float:
    """Fresh module cache, build cache and binary cache: what a new machine pays."""
    scratch = Path(tempfile.mkdtemp(prefix="localplane-cold-"))
    env = {
        **os.environ,
        "GOMODCACHE": str(scratch / "gomodcache"),
        "GOCACHE": str(scratch / "gocache"),
        "MAXTUNE_CACHE_DIR": str(scratch / "cache"),
    }
    try:
        return _timed_build(env)
    finally:
        # The module cache is read-only by design; make it removable.
        subprocess.run(["chmod", "-R", "u+w", str(scratch)], check=False)
        shutil.rmtree(scratch, ignore_errors=True)


def relink_build() -> float:
    """Go caches warm, no binaries: a fresh checkout on a machine that built before."""
    scratch = Path(tempfile.mkdtemp(prefix="localplane-relink-"))
    try:
        return _timed_build({**os.environ, "MAXTUNE_CACHE_DIR": str(scratch)})
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def warm_build() -> float:
    """Binaries present: what every `make test` after the first pays."""
    return _timed_build(dict(os.environ))


def start_up() -> dict[str, float]:
    started = time.monotonic()
    with LocalPlane() as plane:
        numbers = {"readyz_s": plane.timings["readyz_s"], "ready_s": plane.timings["ready_s"]}
        with plane.api_client() as api:
            core = client.CoreV1Api(api)
            core.create_node(kwok_node_model("bench-gpu", capacity={"nvidia.com/gpu": 8}))
            wait_node_ready(api, "bench-gpu")
            numbers["schedulable_node_s"] = time.monotonic() - started
            pod = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "bench"},
                "spec": {
                    "containers": [
                        {
                            "name": "c",
                            "image": "registry.invalid/c:1",
                            "resources": {"limits": {"nvidia.com/gpu": "1"}},
                        }
                    ]
                },
            }
            core.create_namespaced_pod("default", client.V1Pod.model_validate(pod))
            wait_pod_running(api, "default", "bench")
            numbers["gpu_pod_running_s"] = time.monotonic() - started
        stop_started = time.monotonic()
    numbers["stop_s"] = time.monotonic() - stop_started
    return numbers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m maxtune_dev.localplane.bench")
    parser.add_argument("--cold", action="store_true", help="also time a cold build (minutes)")
    parser.add_argument("--runs", type=int, default=3, help="start-up runs (default 3)")
    args = parser.parse_args(argv)
    found = ensure_binaries()
    go = subprocess.run(["go", "env", "GOVERSION"], capture_output=True, text=True, check=False)
    print(f"date: {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}")
    print(f"machine: {os.cpu_count()} cpus, {platform.platform()}, {go.stdout.strip()}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in found.versions.items()))
    print("load average before: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    if args.cold:
        print(f"cold build (fresh GOMODCACHE, GOCACHE, binary cache): {cold_build():.1f}s")
        print("load average (1/5/15 min): " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
        print(f"relink build (Go caches warm, no binaries): {relink_build():.1f}s")
    print(f"warm build (binaries present): {warm_build():.2f}s")
    runs = [start_up() for _ in range(args.runs)]
    for key in runs[0]:
        values = [run[key] for run in runs]
        print(
            f"start-up {key}: median {statistics.median(values):.2f}s "
            f"(runs: {', '.join(f'{v:.2f}' for v in values)})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
