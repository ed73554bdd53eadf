"""Realistic GPUNodeProfiles, nodes and pods for the operator's tests.

Profiles are built from the contract models exactly as an agent would publish
them (SM counts as NVML/CUDA report them, MIG slices read, never derived), so
the operator's tests exercise the same summaries as production.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

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
from maxtune.operator.fleet import FleetState
from maxtune.operator.records import read_node, read_profile

TORCH = "2.11"


@dataclass(frozen=True)
class Product:
    name: str
    sm_count: int
    compute_capability: str
    memory_mib: int
    mig: dict[str, int]  # MIG profile -> SMs, as `nvidia-smi mig -lgip` reports them


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
RTX3070 = Product("NVIDIA GeForce RTX 3070", 46, "8.6", 8192, {})
T4 = Product("Tesla T4", 40, "7.5", 15360, {})


def _verdict(sm: int | None) -> GateVerdict:
    v = gate.verdict(sm_count=sm, torch_version=TORCH)
    return GateVerdict(capable=v.capable, rule=v.rule, torch_version=TORCH)


def _measurements(gain: float | None, gemm_ok: bool = True) -> Measurements | None:
    if gain is None:
        return None
    default_step = 0.0016
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


def status(
    product: Product,
    count: int = 8,
    *,
    gain: float | None = 0.08,
    mig: list[str] | None = None,
    heartbeat: datetime | None = None,
) -> ProfileStatus:
    """A node of `count` GPUs of `product`; with `mig`, every GPU is split into those slices."""
    gpus: list[Gpu] = []
    for i in range(count):
        cls = gpu_class(product.name, product.sm_count)
        instances = [
            MigInstance(
                profile=p,
                resource=mig_resource(p),
                uuid=f"MIG-{i}-{j}",
                gpu_instance_id=j,
                compute_instance_id=0,
                sm_count=product.mig[p],
                gpu_class=gpu_class(product.name, product.mig[p], p),
                verdict=_verdict(product.mig[p]),
            )
            for j, p in enumerate(mig or [])
        ]
        gpus.append(
            Gpu(
                index=i,
                uuid=f"GPU-{product.sm_count}-{i}",
                product=product.name,
                memory_mib=product.memory_mib,
                compute_capability=product.compute_capability,
                sm_count=product.sm_count,
                mig_enabled=bool(mig),
                resource=None if mig else RESOURCE_GPU,
                gpu_class=cls,
                verdict=_verdict(product.sm_count),
                mig_instances=instances,
                measurements=None if mig else _measurements(gain),
            )
        )
    spec = PolicySpec()
    resources, summary = summarize(gpus, spec)
    return ProfileStatus(
        source="simulation",
        simulation="opkit",
        level="full" if gain is not None else "inventory",
        heartbeat_time=heartbeat or datetime.now(UTC),
        fingerprint=f"{product.name}-{count}-{mig}",
        software=Software(agent_version="0.1.0", driver_version="580.159.04", torch_version=TORCH),
        gpus=gpus,
        resources=resources,
        summary=summary,
    )


def profile(node: str, product: Product, count: int = 8, **kw: Any) -> dict[str, Any]:
    """The GPUNodeProfile body (wire form) for `node`."""
    return GPUNodeProfile.model_validate(
        {
            "metadata": {"name": node},
            "spec": {"nodeName": node},
            "status": status(product, count, **kw).wire(),
        }
    ).wire()


def allocatable(product: Product, count: int = 8, mig: list[str] | None = None) -> dict[str, str]:
    if not mig:
        return {RESOURCE_GPU: str(count)}
    found: dict[str, int] = {}
    for p in mig:
        found[mig_resource(p)] = found.get(mig_resource(p), 0) + count
    return {k: str(v) for k, v in found.items()}


def node(
    name: str,
    gpus: dict[str, str] | None = None,
    *,
    labels: dict[str, str] | None = None,
    taints: list[dict[str, str]] | None = None,
    rv: str = "1",
    unschedulable: bool = False,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "uid": f"uid-{name}",
            "resourceVersion": rv,
            "labels": {"kubernetes.io/hostname": name, **(labels or {})},
        },
        "spec": {"taints": taints or []},
        "status": {"allocatable": {"cpu": "32", "memory": "256Gi", "pods": "110", **(gpus or {})}},
    }
    if unschedulable:
        body["spec"]["unschedulable"] = True
    return body


class Fleet:
    """A FleetState filled the way the watches fill it, with labels already in sync.

    `clock` is the POSIX time its fresh heartbeats were written: a fleet kept for a whole
    module answers as of then (pass `now=fleet.clock`), since a long suite would otherwise
    age its heartbeats past the staleness window and change every decision mid-run.
    """

    def __init__(self) -> None:
        self.state = FleetState()
        self.clock = time.time()
        self._rv = 1

    def add(
        self,
        name: str,
        product: Product | None,
        count: int = 8,
        *,
        mig: list[str] | None = None,
        gain: float | None = 0.08,
        labels: dict[str, str] | None = None,
        taints: list[dict[str, str]] | None = None,
        with_profile: bool = True,
        synced: bool = True,
        heartbeat: datetime | None = None,
    ) -> None:
        from maxtune.contract.assess import node_labels

        gpus = allocatable(product, count, mig) if product is not None else {}
        all_labels = dict(labels or {})
        prof = None
        if product is not None and with_profile:
            prof = profile(name, product, count, gain=gain, mig=mig, heartbeat=heartbeat)
            if synced:
                st = ProfileStatus.model_validate(prof["status"])
                now = datetime.now(UTC)
                all_labels.update(node_labels(st, self.state.cluster_policy().spec, now))
        self._rv += 1
        rec = read_node(node(name, gpus, labels=all_labels, taints=taints, rv=str(self._rv)))
        assert rec is not None
        self.state.upsert_node(rec)
        if prof is not None:
            prof = copy.deepcopy(prof)
            prof["metadata"].update(uid=f"puid-{name}", resourceVersion=str(self._rv))
            p = read_profile(prof)
            assert p is not None
            self.state.upsert_profile(p)


def mixed_fleet() -> Fleet:
    """H100, A100, RTX 3070, T4 and MIG nodes, as the integration fleet uses."""
    f = Fleet()
    f.add("h100-a", H100, 8, gain=0.08)
    f.add("h100-b", H100, 8, gain=0.12)
    f.add("a100-a", A100, 8, gain=0.05)
    f.add("a100-slow", A100, 8, gain=-0.05)  # capable, but measured slower: default
    f.add("rtx-a", RTX3070, 2)
    f.add("t4-a", T4, 4)
    f.add("mig-h100", H100, 1, mig=["1g.10gb"] * 7)
    f.add("mig-a100", A100, 1, mig=["3g.20gb", "3g.20gb"])
    return f


def stale(hours: float = 1) -> datetime:
    return datetime.now(UTC) - timedelta(hours=hours)


def pod(
    *containers: dict[str, Any],
    labels: dict[str, str] | None = None,
    spec: dict[str, Any] | None = None,
    annotations: dict[str, str] | None = None,
    name: str = "train",
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {"maxtune.io/inject": "true", **(labels or {})}}
    if annotations is not None:
        meta["annotations"] = annotations
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {"containers": list(containers) or [gpu_container()], **(spec or {})},
    }


def gpu_container(
    name: str = "main", resource: str = RESOURCE_GPU, count: str = "1", **extra: Any
) -> dict[str, Any]:
    return {"name": name, "image": "pytorch", "resources": {"limits": {resource: count}}, **extra}


def review(obj: dict[str, Any], namespace: str = "team", operation: str = "CREATE") -> bytes:
    import json

    return json.dumps(
        {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": namespace,
                "operation": operation,
                "userInfo": {"username": "admin"},
                "object": obj,
                "dryRun": False,
            },
        }
    ).encode()


def now() -> float:
    return time.time()
