"""The labeller at fleet scale on a real local plane: a measurement, not a test.

    .venv/bin/python tests/operator/fleet_probe.py [NODES]

Starts its own LocalPlane, creates NODES kwok nodes with GPUNodeProfiles, then
starts `maxtune operator` and reports: time to ready, time until every node is
labelled, label writes, and the operator's peak RSS; then changes 10% of the
profiles (their measured gain drops, so the mode changes) and reports the same.
Issue 6 turns this into the fleet benchmark.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from tempfile import mkdtemp

sys.path.insert(0, str(Path(__file__).parent))

import psutil

from maxtune.kube import Kube
from maxtune_dev.localplane import LocalPlane, kwok_node, wait_for
from maxtune_dev.testkit import A100, H100, RTX3070, T4, profile
from maxtune_dev.testkit.cluster import apply_crds, put_profile
from maxtune_dev.testkit.operator import OperatorProcess, write_pki

PRODUCTS = [(H100, 8, 0.08), (A100, 8, 0.05), (T4, 4, None), (RTX3070, 2, None), (H100, 8, 0.12)]
MODE = "maxtune.io/recommended-mode"


def count_nodes(kube: Kube, ok: Callable[[dict[str, str], str], bool]) -> int:
    found = 0
    for page, _ in kube.list_pages("/api/v1/nodes"):
        for body in page:
            found += ok(body["metadata"].get("labels") or {}, body["metadata"]["name"])
    return found


def main(n: int) -> None:
    work = Path(mkdtemp(prefix="fleet-probe-"))
    with LocalPlane() as plane:
        kube = Kube.connect(plane.kubeconfig)
        apply_crds(kube)

        def make(i: int) -> None:
            product, count, gain = PRODUCTS[i % len(PRODUCTS)]
            name = f"n{i:05d}"
            kube.request(
                "POST", "/api/v1/nodes", body=kwok_node(name, capacity={"nvidia.com/gpu": count})
            )
            put_profile(kube, profile(name, product, count, gain=gain))

        started = time.time()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(make, range(n)))
        print(f"created {n} nodes and profiles in {time.time() - started:.1f} s", flush=True)
        kube.request("POST", "/api/v1/namespaces", body={"metadata": {"name": "maxtune-system"}})
        op = OperatorProcess(plane.kubeconfig, write_pki(work / "pki"), "maxtune-system", work)
        peak, stop = [0], threading.Event()
        started = time.time()
        op.start(wait=False)
        assert op.proc is not None
        process = psutil.Process(op.proc.pid)

        def sample() -> None:
            while not stop.is_set():
                with contextlib.suppress(psutil.Error):
                    peak[0] = max(peak[0], process.memory_info().rss)
                time.sleep(0.2)

        threading.Thread(target=sample, daemon=True).start()
        op.wait_ready(timeout_s=600)
        print(f"ready after {time.time() - started:.1f} s", flush=True)
        wait_for(
            lambda: count_nodes(kube, lambda labels, _: MODE in labels) >= n,
            timeout_s=900,
            interval_s=1,
            what="every node labelled",
        )
        writes = op.metric("maxtune_operator_label_writes_total")
        print(
            f"all {n} labelled {time.time() - started:.1f} s after start; {writes:.0f} writes; "
            f"peak RSS {peak[0] / 2**20:.0f} MiB",
            flush=True,
        )

        changed = [i for i in range(n) if PRODUCTS[i % len(PRODUCTS)][2] is not None][: n // 10]
        names = {f"n{i:05d}" for i in changed}
        started = time.time()
        with ThreadPoolExecutor(8) as pool:
            list(
                pool.map(
                    lambda i: put_profile(
                        kube,
                        profile(
                            f"n{i:05d}",
                            PRODUCTS[i % len(PRODUCTS)][0],
                            PRODUCTS[i % len(PRODUCTS)][1],
                            gain=-0.05,
                        ),
                    ),
                    changed,
                )
            )
        wait_for(
            lambda: (
                count_nodes(
                    kube, lambda labels, name: name in names and labels.get(MODE) == "default"
                )
                >= len(changed)
            ),
            timeout_s=600,
            interval_s=1,
            what="changed nodes relabelled",
        )
        time.sleep(5)  # and no more writes after that
        more = op.metric("maxtune_operator_label_writes_total") - writes
        print(
            f"{len(changed)} profiles changed: converged {time.time() - started - 5:.1f} s "
            f"after the first change; {more:.0f} writes; peak RSS {peak[0] / 2**20:.0f} MiB",
            flush=True,
        )
        stop.set()
        op.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
