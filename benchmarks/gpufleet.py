"""A mixed GPU fleet as agents would publish it: kwok nodes and their GPUNodeProfiles.

Profiles are built from the contract models the agent itself uses (SM counts as
CUDA and NVML report them, MIG slices read, never derived; summaries from
`maxtune.contract.assess`), so the operator sees what production sends it,
sizes included: measured GPUs carry what an agent measures (testkit.production), so an
8-GPU measured node is ~34 KB of JSON, as eight of the H200's measured GPUs would be.
The expected labels of every node come from the same contract code, independently of
the operator, which is what "every label is right" is checked against.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from maxtune.contract.assess import node_labels
from maxtune.contract.models import ApiModel, PolicySpec, ProfileStatus
from maxtune.contract.names import RESOURCE_GPU, mig_resource
from maxtune_dev.localplane import kwok_node
from maxtune_dev.testkit.profiles import A100, H100, L4, RTX3070, T4, Product, profile_body
from maxtune_dev.testkit.profiles import status as product_status

# The gain a changed profile reports: below the policy's minimum, so its mode becomes default.
CHANGED_GAIN = -0.05


@dataclass(frozen=True, slots=True)
class NodeKind:
    """One shape of node in the fleet; `gain` None: not measured (not capable, or MIG)."""

    key: str
    product: Product
    count: int
    gain: float | None
    mig: tuple[str, ...] = ()


# Mixed classes, each branch of the advice: capable and worth it, capable but measured
# below the minimum gain, not capable, MIG slices on both sides of the gate.
KINDS: tuple[NodeKind, ...] = (
    NodeKind("h100", H100, 8, 0.08),
    NodeKind("a100", A100, 8, 0.05),
    NodeKind("l4", L4, 4, None),
    NodeKind("h100-fast", H100, 8, 0.12),
    NodeKind("t4", T4, 4, None),
    NodeKind("a100-slow", A100, 8, 0.01),
    NodeKind("rtx3070", RTX3070, 2, None),
    NodeKind("h100-mig", H100, 1, None, ("1g.10gb",) * 7),
    NodeKind("a100-mig", A100, 2, None, ("3g.20gb", "3g.20gb")),
)


def node_name(i: int) -> str:
    return f"gpu-{i:05d}"


def kind_of(i: int) -> NodeKind:
    return KINDS[i % len(KINDS)]


def status(kind: NodeKind, node: str, *, gain: float | None, heartbeat: datetime) -> ProfileStatus:
    """The status an agent on `node` would publish (simulation source, like the demo's)."""
    return product_status(
        kind.product,
        kind.count,
        gain=gain,
        mig=kind.mig,
        heartbeat=heartbeat,
        node=node,
        simulation="benchmarks",
        shape="production",
    )


def allocatable(kind: NodeKind) -> dict[str, str]:
    if not kind.mig:
        return {RESOURCE_GPU: str(kind.count)}
    found: dict[str, int] = {}
    for p in kind.mig:
        found[mig_resource(p)] = found.get(mig_resource(p), 0) + kind.count
    return {k: str(v) for k, v in found.items()}


@dataclass(frozen=True, slots=True)
class PlannedNode:
    """One node of the benchmark fleet: its manifest, its profile and the labels it must get."""

    name: str
    kind: NodeKind
    node: dict[str, Any]
    profile_spec: dict[str, Any]
    profile_status: dict[str, Any]
    expected: Mapping[str, str]


def plan_node(
    i: int, *, gain: float | None = None, heartbeat: datetime | None = None
) -> PlannedNode:
    """Node `i` of the fleet; `gain` overrides the kind's measured gain (a changed profile)."""
    kind = kind_of(i)
    name = node_name(i)
    beat = heartbeat or datetime.now(UTC)
    measured = kind.gain if gain is None or kind.gain is None else gain
    st = status(kind, name, gain=measured, heartbeat=beat)
    profile = profile_body(name, st)
    zone = f"zone-{'abc'[i % 3]}"
    return PlannedNode(
        name=name,
        kind=kind,
        node=kwok_node(
            name,
            capacity=allocatable(kind),
            labels={"topology.kubernetes.io/zone": zone, "maxtune.bench/kind": kind.key},
        ),
        profile_spec={
            "apiVersion": profile["apiVersion"],
            "kind": profile["kind"],
            "metadata": {"name": name},
            "spec": profile["spec"],
        },
        profile_status={"status": profile["status"]},
        expected=dict(node_labels(st, PolicySpec(), beat)),
    )


def full_precision_status(planned: PlannedNode) -> dict[str, Any]:
    """`planned`'s status as agents wrote it before contract.precision: every float as
    measured (the heartbeat benchmark weighs the two)."""
    st = status(planned.kind, planned.name, gain=planned.kind.gain, heartbeat=datetime.now(UTC))
    return ApiModel.wire(st)


def changeable(n: int) -> list[int]:
    """Indexes of measured nodes whose mode a lower gain flips to default (the 10% change)."""
    return [i for i in range(n) if (kind_of(i).gain or 0) >= PolicySpec().min_measured_gain]
