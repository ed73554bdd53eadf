"""The admission handler alone, in-process: what one review costs at fleet size.

    python -m benchmarks.hotpath [--nodes 2000] [--rounds 2000]

No network, no TLS, no other process: a FleetState filled from the benchmark
fleet exactly as the watches fill it (the same record readers, labels as the
labeller leaves them), and `admission.review` timed on each shape of the
load mix. This isolates the decision's own cost from HTTP and from CPU
contention, so a change to the operator's hot path can be compared before
and after on a shared machine (run both back to back).
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from typing import Any

from benchmarks import reviews
from benchmarks.gpufleet import plan_node
from benchmarks.stats import latency_summary
from maxtune.operator import admission
from maxtune.operator.fleet import FleetState
from maxtune.operator.records import read_node, read_profile


def fleet_state(nodes: int) -> FleetState:
    fleet = FleetState()
    for i in range(nodes):
        planned = plan_node(i)
        node = json.loads(json.dumps(planned.node))
        node["metadata"]["labels"].update(planned.expected)
        node["metadata"].update(uid=f"uid-{planned.name}", resourceVersion=str(2 * i + 1))
        record = read_node(node)
        assert record is not None
        fleet.upsert_node(record)
        profile = {
            **planned.profile_spec,
            **planned.profile_status,
            "metadata": {
                "name": planned.name,
                "uid": f"puid-{planned.name}",
                "resourceVersion": str(2 * i + 2),
            },
        }
        found = read_profile(profile)
        assert found is not None
        fleet.upsert_profile(found)
    while fleet.warm(fleet.cluster_policy(), 500):
        pass
    return fleet


def measure(fleet: FleetState, rounds: int) -> dict[str, Any]:
    """Per shape of the mix: the result and the latency of `rounds` reviews, after a warm-up."""
    found: dict[str, Any] = {}
    gc.collect()
    for shape, body in reviews.mixed_bodies().items():
        times = []
        outcome = None
        for _ in range(min(50, rounds)):  # warm caches and the shape's mode tables
            admission.review(body, fleet=fleet, own_namespace="maxtune-system", version="bench")
        for _ in range(rounds):
            started = time.perf_counter()
            outcome = admission.review(
                body, fleet=fleet, own_namespace="maxtune-system", version="bench"
            )
            times.append(time.perf_counter() - started)
        assert outcome is not None
        found[shape] = {"result": outcome.result, **latency_summary(times)}
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hotpath", description=__doc__)
    parser.add_argument("--nodes", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2000)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    fleet = fleet_state(args.nodes)
    print(f"{args.nodes} nodes, {args.rounds} reviews per shape, one at a time (ms):")
    for shape, row in measure(fleet, args.rounds).items():
        print(
            f"  {shape:14s} {row['result']:9s} p50 {row['p50_ms']:6.3f}  p99 {row['p99_ms']:6.3f}"
            f"  max {row['max_ms']:7.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
