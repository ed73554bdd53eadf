"""A mixed GPU fleet as agents would publish it: kwok nodes and their GPUNodeProfiles.

Profiles are built from the contract models the agent itself uses (SM counts as
CUDA and NVML report them, MIG slices read, never derived; summaries from
`maxtune.contract.assess`), so the operator sees what production sends it,
sizes included (an 8-GPU measured node is ~10 KB of JSON). The expected labels
of every node come from the same contract code, independently of the operator,
which is what "every label is right" is checked against.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from maxtune.contract import gate
from maxtune.contract.assess import node_labels, summarize
from maxtune.contract.gpuclass import gpu_class
from maxtune.contract.models import (
    CompileMeasurement,
    GateVerdict,
    GemmMeasurement,
    Gpu,
    GPUNodeProfile,
    Measurements,
    MigInstance,
    ModeTiming,
    PolicySpec,
    ProfileStatus,
    Software,
)
from maxtune.contract.modes import Mode
from maxtune.contract.names import RESOURCE_GPU, mig_resource
from maxtune.contract.rounds import BlockRounds, ModeRounds, compile_measurement
from maxtune.localplane import kwok_node

TORCH = "2.11"
# The gain a changed profile reports: below the policy's minimum, so its mode becomes default.
CHANGED_GAIN = -0.05


@dataclass(frozen=True, slots=True)
class Product:
    name: str
    sm_count: int
    compute_capability: str
    memory_mib: int
    mig: Mapping[str, int]  # MIG profile -> SMs, as `nvidia-smi mig -lgip` reports them


H100 = Product(
    "NVIDIA H100 80GB HBM3",
    132,
    "9.0",
    81559,
    {"1g.10gb": 16, "1g.20gb": 26, "2g.20gb": 32, "3g.40gb": 60, "4g.40gb": 64, "7g.80gb": 132},
)
A100 = Product(
    "NVIDIA A100-SXM4-40GB",
    108,
    "8.0",
    40960,
    {"1g.5gb": 14, "2g.10gb": 28, "3g.20gb": 42, "4g.20gb": 56, "7g.40gb": 98},
)
L4 = Product("NVIDIA L4", 58, "8.9", 23034, {})
T4 = Product("Tesla T4", 40, "7.5", 15360, {})
RTX3070 = Product("NVIDIA GeForce RTX 3070", 46, "8.6", 8192, {})


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


def _verdict(sm: int) -> GateVerdict:
    v = gate.verdict(sm_count=sm, torch_version=TORCH)
    return GateVerdict(capable=v.capable, rule=v.rule, torch_version=TORCH)


def _measurements(gain: float) -> Measurements:
    default_step = 0.0016
    return Measurements(
        gemm=[
            GemmMeasurement(
                ok=True,
                size=4096,
                best_config="BLOCK_M=128,BLOCK_N=256,BLOCK_K=64",
                configs_tried=8,
                triton_flops=7.0e14,
                cublas_flops=7.4e14,
                ratio_to_cublas=0.95,
                autotune_seconds=7.2,
            )
        ],
        # The advice rests on the training reference: every round the same step times, so
        # the interval is the gain itself (contract.rounds computes it as for a real one).
        training=compile_measurement(
            BlockRounds(
                block="transformer block train step",
                workload="training",
                calls_per_round=20,
                modes=tuple(
                    ModeRounds(mode, seconds, ((default_step / (1 + g),) * 10,) * 2)
                    for mode, g, seconds in (
                        (Mode.DEFAULT, 0.0, 3.8),
                        (Mode.MAX_AUTOTUNE_NO_CUDAGRAPHS, gain, 8.7),
                        (Mode.MAX_AUTOTUNE, gain + 0.01, 9.1),
                    )
                ),
            )
        ),
        compile=CompileMeasurement(
            ok=True,
            block="mlp gelu(x@w1)@w2 bf16 4096x4096x16384",
            eager_step_seconds=0.0017,
            modes=[
                ModeTiming(
                    mode=Mode.DEFAULT, step_seconds=default_step, compile_seconds=3.8, gain=0
                ),
                ModeTiming(
                    mode=Mode.MAX_AUTOTUNE_NO_CUDAGRAPHS,
                    step_seconds=default_step / (1 + gain),
                    compile_seconds=8.7,
                    gain=gain,
                ),
                ModeTiming(
                    mode=Mode.MAX_AUTOTUNE,
                    step_seconds=default_step / (1 + gain + 0.01),
                    compile_seconds=9.1,
                    gain=gain + 0.01,
                ),
            ],
        ),
    )


def status(kind: NodeKind, node: str, *, gain: float | None, heartbeat: datetime) -> ProfileStatus:
    """The status an agent on `node` would publish (simulation source, like the demo's)."""
    product = kind.product
    gpus: list[Gpu] = []
    for i in range(kind.count):
        instances = [
            MigInstance(
                profile=p,
                resource=mig_resource(p),
                uuid=f"MIG-{node}-{i}-{j}",
                gpu_instance_id=j + 1,
                compute_instance_id=0,
                sm_count=product.mig[p],
                gpu_class=gpu_class(product.name, product.mig[p], p),
                verdict=_verdict(product.mig[p]),
            )
            for j, p in enumerate(kind.mig)
        ]
        gpus.append(
            Gpu(
                index=i,
                uuid=f"GPU-{node}-{i}",
                product=product.name,
                memory_mib=product.memory_mib,
                compute_capability=product.compute_capability,
                sm_count=product.sm_count,
                mig_enabled=bool(kind.mig),
                resource=None if kind.mig else RESOURCE_GPU,
                gpu_class=gpu_class(product.name, product.sm_count),
                verdict=_verdict(product.sm_count),
                mig_instances=instances,
                measurements=None if kind.mig or gain is None else _measurements(gain),
            )
        )
    resources, summary = summarize(gpus, PolicySpec())
    return ProfileStatus(
        source="simulation",
        simulation="benchmarks",
        level="full" if gain is not None else "inventory",
        heartbeat_time=heartbeat,
        fingerprint=f"{kind.key}-{gain}",
        software=Software(agent_version="0.1.0", driver_version="580.159.04", torch_version=TORCH),
        gpus=gpus,
        resources=resources,
        summary=summary,
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
    profile = GPUNodeProfile.model_validate(
        {"metadata": {"name": name}, "spec": {"nodeName": name}, "status": st.wire()}
    ).wire()
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


def changeable(n: int) -> list[int]:
    """Indexes of measured nodes whose mode a lower gain flips to default (the 10% change)."""
    return [i for i in range(n) if (kind_of(i).gain or 0) >= PolicySpec().min_measured_gain]
