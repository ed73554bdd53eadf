"""Admission hot path at fleet scale, in-process: a measurement, not a test.

    .venv/bin/python tests/operator/hotpath_probe.py [NODES]

Fills a FleetState with NODES simulated nodes (H100, A100, T4, RTX 3070, MIG H100,
in turn) and times `admission.review` on a few shapes of pod, one at a time.
Issue 6 turns this into the webhook benchmark (load, concurrency, end to end).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from maxtune.operator import admission
from maxtune_dev.testkit import A100, H100, RTX3070, T4, Fleet, gpu_container, pod, review

PRODUCTS = [
    (H100, 8, None, 0.08),
    (A100, 8, None, 0.05),
    (T4, 4, None, None),
    (RTX3070, 2, None, None),
    (H100, 1, ["1g.10gb"] * 7, None),
]


def main(nodes: int = 2000, rounds: int = 2000) -> None:
    fleet = Fleet()
    for i in range(nodes):
        product, count, mig, gain = PRODUCTS[i % len(PRODUCTS)]
        fleet.add(
            f"n{i:05d}",
            product,
            count,
            mig=mig,
            gain=gain,
            labels={"topology.kubernetes.io/zone": f"z{i % 3}"},
        )
    while fleet.state.warm(fleet.state.cluster_policy(), 500):
        pass
    zone_affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {
                                "key": "topology.kubernetes.io/zone",
                                "operator": "NotIn",
                                "values": ["z0"],
                            }
                        ]
                    }
                ]
            }
        }
    }
    bodies = {
        "steered": review(pod()),
        "nodeSelector": review(pod(spec={"nodeSelector": {"topology.kubernetes.io/zone": "z1"}})),
        "affinity": review(pod(spec={"affinity": zone_affinity})),
        "mig": review(pod(gpu_container(resource="nvidia.com/mig-1g.10gb"))),
        "not-opted-in": review(
            {"metadata": {"name": "x"}, "spec": {"containers": [{"name": "a"}]}}
        ),
    }
    print(f"{nodes} nodes, {rounds} requests each, one at a time")
    for name, body in bodies.items():
        times = []
        for _ in range(rounds):
            started = time.perf_counter()
            outcome = admission.review(
                body, fleet=fleet.state, own_namespace="maxtune", version="probe"
            )
            times.append(time.perf_counter() - started)
        times.sort()
        p50, p99 = times[len(times) // 2], times[int(len(times) * 0.99)]
        print(
            f"  {name:13s} {outcome.result:9s} p50 {p50 * 1e3:6.3f} ms  p99 {p99 * 1e3:6.3f} ms"
            f"  max {times[-1] * 1e3:6.3f} ms"
        )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
