"""`maxtune status`: which GPU nodes are ready for max-autotune, and are their labels right.

One row per node that has GPUs, a profile or maxtune labels: its GPU
resources, class, SM count, capability and recommended mode (under the
cluster policy), the measured gain, whether its profile is fresh, and whether
the node's labels match what the labeller would write. Under it, the cluster's
speed table: per GPU class, the training reference's step time in default and
in the recommended mode, the gain and its interval, the extra compile and its
break-even (speed.py). Then, where agents proved a compile cache, per GPU class and
sharing group whether it works and what it saves a pod's start (cachestatus.py).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from typing import IO

from maxtune.contract.names import (
    LABEL_CAPABLE,
    LABEL_CLASS,
    LABEL_MODE,
    LABEL_SM_COUNT,
    RESOURCE_GPU,
)
from maxtune.kube import Kube
from maxtune.operator.cachestatus import class_caches
from maxtune.operator.cachestatus import table as cache_table
from maxtune.operator.fleet import FleetState
from maxtune.operator.labeller import label_patch
from maxtune.operator.offline import USER_AGENT, fleet_from_cluster
from maxtune.operator.speed import class_speeds
from maxtune.operator.speed import table as speed_table


@dataclass(frozen=True, slots=True)
class Row:
    node: str
    gpus: str
    gpu_class: str
    sm_count: str
    capable: str
    mode: str
    gain: str
    profile: str
    labels: str


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.0f}h"


def rows(fleet: FleetState, now: float) -> list[Row]:
    policy = fleet.cluster_policy()
    names = sorted(
        {n for n, rec in fleet.nodes.items() if rec.gpus or rec.maxtune_labels()}
        | set(fleet.profiles)
    )
    found = []
    for name in names:
        node = fleet.nodes.get(name)
        profile = fleet.profiles.get(name)
        desired = fleet.desired_labels(name, now)
        if profile is None:
            state = "none"
        elif not profile.has_status:
            state = f"invalid: {profile.problem}"
        elif profile.heartbeat is not None:
            state = ("stale " if fleet.is_stale(name, now) else "fresh ") + _age(
                now - profile.heartbeat
            )
        else:
            state = "unknown"
        if node is None:
            labels = "node gone"
        elif label_patch(node.labels, desired):
            labels = "differ" if node.maxtune_labels() else "missing"
        else:
            labels = "in sync" if desired else "-"
        gain = "-"
        if profile is not None and profile.has_status and not fleet.is_stale(name, now):
            whole = fleet.summaries(name, policy).get(RESOURCE_GPU)
            if whole is not None and whole.measured_gain is not None:
                gain = f"{whole.measured_gain:+.1%}"
        gpus = ",".join(
            f"{r.removeprefix('nvidia.com/')}:{c}"
            for r, c in sorted((node.gpus if node else {}).items())
        )
        found.append(
            Row(
                node=name,
                gpus=gpus or "-",
                gpu_class=desired.get(LABEL_CLASS, "-"),
                sm_count=desired.get(LABEL_SM_COUNT, "-"),
                capable=desired.get(LABEL_CAPABLE, "-"),
                mode=desired.get(LABEL_MODE, "-"),
                gain=gain,
                profile=state,
                labels=labels,
            )
        )
    return found


HEADERS = ("NODE", "GPUS", "CLASS", "SMS", "CAPABLE", "MODE", "GAIN", "PROFILE", "LABELS")


def table(found: list[Row]) -> str:
    cells = [HEADERS, *[tuple(asdict(r).values()) for r in found]]
    widths = [max(len(str(row[i])) for row in cells) for i in range(len(HEADERS))]
    return "\n".join(
        "  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
        for row in cells
    )


def summary(found: list[Row], fleet: FleetState) -> dict[str, object]:
    return {
        "nodes": len(found),
        "profiles": len(fleet.profiles),
        "capable": sum(r.capable == "true" for r in found),
        "stale": sum(r.profile.startswith("stale") for r in found),
        "labelsOutOfSync": sum(r.labels in ("differ", "missing") for r in found),
        "classes": sorted({r.gpu_class for r in found if r.gpu_class != "-"}),
        "policy": fleet.cluster_policy().metadata.name,
    }


def status_command(args: argparse.Namespace, out: IO[str]) -> int:
    fleet = fleet_from_cluster(Kube.connect(args.kubeconfig, user_agent=USER_AGENT))
    return report(fleet, time.time(), out, as_json=args.json)


def report(fleet: FleetState, now: float, out: IO[str], *, as_json: bool) -> int:
    """The per-node table, the per-class speed table and a summary line (or one JSON object)."""
    found = rows(fleet, now)
    facts = summary(found, fleet)
    speeds = class_speeds(fleet, now)
    caches = class_caches(fleet, now)
    if as_json:
        json.dump(
            {
                "summary": facts,
                "nodes": [asdict(r) for r in found],
                "gpuClasses": [s.wire() for s in speeds],
                "compileCaches": [c.wire() for c in caches],
            },
            out,
            indent=2,
        )
        out.write("\n")
        return 0
    if not found:
        out.write("no GPU nodes, profiles or maxtune labels in this cluster\n")
        return 0
    out.write(table(found) + "\n\n")
    if speeds:
        out.write(speed_table(speeds) + "\n\n")
    if caches:
        out.write(cache_table(caches) + "\n\n")
    out.write(
        f"{facts['nodes']} GPU node(s), {facts['profiles']} profile(s), "
        f"{facts['capable']} max-autotune capable, {facts['stale']} stale, "
        f"{facts['labelsOutOfSync']} with labels out of sync; policy {facts['policy']}\n"
    )
    return 0
