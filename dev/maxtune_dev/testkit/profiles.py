"""GPUNodeProfiles as agents publish them, for the tests and the benchmarks.

Profiles are built from the contract models the agent itself uses (SM counts as
CUDA and NVML report them, MIG slices read, never derived; summaries from
`maxtune.contract.assess`). The plain shape times every round alike, so tests get
exact intervals; `shape="production"` (testkit.production) is what an agent sends,
sizes included, for the benchmarks. Every status is a named simulation
(`source: simulation`), like the demo's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from maxtune.contract import gate
from maxtune.contract.assess import summarize
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
from maxtune_dev.testkit import production

TORCH = "2.11"
DEFAULT_STEP_SECONDS = 0.0016


@dataclass(frozen=True, slots=True)
class Product:
    name: str
    sm_count: int
    compute_capability: str
    memory_mib: int
    mig: Mapping[str, int]  # MIG profile -> SMs, as `nvidia-smi mig -lgip` reports them
    # Default-mode step of the training reference (illustrative, as examples/fleets/demo.yaml:
    # the classes differ in speed, so a cluster's speed table has something to show).
    training_step: float = DEFAULT_STEP_SECONDS


H100 = Product(
    "NVIDIA H100 80GB HBM3",
    132,
    "9.0",
    81559,
    {"1g.10gb": 16, "1g.20gb": 26, "2g.20gb": 32, "3g.40gb": 60, "4g.40gb": 64, "7g.80gb": 132},
    training_step=0.0011,
)
A100 = Product(
    "NVIDIA A100-SXM4-40GB",
    108,
    "8.0",
    40960,
    {"1g.5gb": 14, "2g.10gb": 28, "3g.20gb": 42, "4g.20gb": 56, "7g.40gb": 98},
    training_step=0.0026,
)
L4 = Product("NVIDIA L4", 58, "8.9", 23034, {}, training_step=0.0098)
T4 = Product("Tesla T4", 40, "7.5", 15360, {}, training_step=0.064)
RTX3070 = Product("NVIDIA GeForce RTX 3070", 46, "8.6", 8192, {}, training_step=0.027)


def verdict(sm: int | None) -> GateVerdict:
    v = gate.verdict(sm_count=sm, torch_version=TORCH)
    return GateVerdict(capable=v.capable, rule=v.rule, torch_version=TORCH)


def measurements(
    gain: float, *, gemm_ok: bool = True, default_step: float = DEFAULT_STEP_SECONDS
) -> Measurements:
    """A reference GEMM and a compile comparison whose best max-autotune mode gains `gain`+1%.

    Every round of the training reference takes the same time, so each gain's interval is
    the gain itself; the warm compiles are what a second process on the first one's caches
    took (as the agent measures them).
    """
    return Measurements(
        gemm=[
            GemmMeasurement(
                ok=gemm_ok,
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
                    ModeRounds(mode, seconds, ((default_step / (1 + g),) * 10,) * 2, warm)
                    for mode, g, seconds, warm in (
                        (Mode.DEFAULT, 0.0, 3.8, 1.1),
                        (Mode.MAX_AUTOTUNE_NO_CUDAGRAPHS, gain, 8.7, 1.5),
                        (Mode.MAX_AUTOTUNE, gain + 0.01, 9.1, 1.6),
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


def status(
    product: Product,
    count: int = 8,
    *,
    gain: float | None = 0.08,
    mig: Sequence[str] | None = None,
    heartbeat: datetime | None = None,
    node: str | None = None,
    gemm_ok: bool = True,
    default_step: float | None = None,
    simulation: str = "testkit",
    shape: Literal["plain", "production"] = "plain",
) -> ProfileStatus:
    """A node of `count` GPUs of `product`; with `mig`, every GPU is split into those slices.

    `gain` None: not measured (inventory level). MIG GPUs are never measured. The training
    reference's default step is the product's unless `default_step` says otherwise.
    `shape="production"`: measurements, software and conditions as a real agent's
    (testkit.production), for benchmarks that weigh what agents send.
    """
    if shape == "production" and not gemm_ok:
        raise ValueError("the production shape measures every GEMM fine")
    beat = heartbeat or datetime.now(UTC)
    mig = list(mig or [])
    default_step = product.training_step if default_step is None else default_step
    tag = node or str(product.sm_count)
    gpus: list[Gpu] = []
    for i in range(count):
        instances = [
            MigInstance(
                profile=p,
                resource=mig_resource(p),
                uuid=f"MIG-{tag}-{i}-{j}",
                gpu_instance_id=j + 1,
                compute_instance_id=0,
                sm_count=product.mig[p],
                gpu_class=gpu_class(product.name, product.mig[p], p),
                verdict=verdict(product.mig[p]),
            )
            for j, p in enumerate(mig)
        ]
        measured = None
        if not mig and gain is not None:
            measured = (
                production.measurements(gain, default_step)
                if shape == "production"
                else measurements(gain, gemm_ok=gemm_ok, default_step=default_step)
            )
        gpus.append(
            Gpu(
                index=i,
                uuid=f"GPU-{tag}-{i}",
                product=product.name,
                memory_mib=product.memory_mib,
                compute_capability=product.compute_capability,
                sm_count=product.sm_count,
                mig_enabled=bool(mig),
                resource=None if mig else RESOURCE_GPU,
                gpu_class=gpu_class(product.name, product.sm_count),
                verdict=verdict(product.sm_count),
                mig_instances=instances,
                measurements=measured,
            )
        )
    resources, summary = summarize(gpus, PolicySpec())
    return ProfileStatus(
        source="simulation",
        simulation=simulation,
        level="full" if gain is not None else "inventory",
        heartbeat_time=beat,
        fingerprint=f"{product.name}-{count}-{mig}-{gain}-{default_step}",
        software=production.software()
        if shape == "production"
        else Software(agent_version="0.1.0", driver_version="580.159.04", torch_version=TORCH),
        gpus=gpus,
        resources=resources,
        summary=summary,
        conditions=production.conditions(count, gpus[0].measurements if gpus else None, beat)
        if shape == "production"
        else [],
    )


def profile_body(node: str, st: ProfileStatus) -> dict[str, Any]:
    """The GPUNodeProfile (wire form) of `node` with status `st`."""
    return GPUNodeProfile.model_validate(
        {"metadata": {"name": node}, "spec": {"nodeName": node}, "status": st.wire()}
    ).wire()


def profile(node: str, product: Product, count: int = 8, **kw: Any) -> dict[str, Any]:
    """The GPUNodeProfile body (wire form) for `node`; keywords as for `status`."""
    return profile_body(node, status(product, count, node=node, **kw))


def allocatable(
    product: Product | None, count: int = 8, mig: Sequence[str] | None = None
) -> dict[str, str]:
    """The node's allocatable GPU resources as the device plugin (mixed strategy) reports them."""
    if product is None:
        return {}
    if not mig:
        return {RESOURCE_GPU: str(count)}
    found: dict[str, int] = {}
    for p in mig:
        found[mig_resource(p)] = found.get(mig_resource(p), 0) + count
    return {k: str(v) for k, v in found.items()}


def stale(hours: float = 1) -> datetime:
    """A heartbeat time well past any staleness window."""
    return datetime.now(UTC) - timedelta(hours=hours)
