"""From an inventory and measurements to the GPUNodeProfile status the agent publishes.

Pure functions of their inputs (the clock is a parameter), so every rule here
is unit-tested without a GPU or a cluster: the verdict per GPU and MIG slice
(the contract's gate under the policy's torch rule), what the device plugin
schedules under the node's MIG strategy (migstrategy.py), the summaries (the
contract's `summarize`), the fingerprint that decides when to re-measure, and
the conditions (conditions.py).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from maxtune.agent import migstrategy
from maxtune.agent.conditions import (
    COMPILE_MEASURED,
    CONDITION_TYPES,
    GEMM_MEASURED,
    INVENTORIED,
    LEVELS,
    READY,
    conditions,
    keep_transition_times,
)
from maxtune.agent.inventory import Inventory
from maxtune.agent.targets import Target, targets
from maxtune.contract import gate
from maxtune.contract.assess import summarize
from maxtune.contract.gpuclass import gpu_class
from maxtune.contract.models import (
    CompileCacheProof,
    GateVerdict,
    Gpu,
    Measurements,
    MigInstance,
    MigStrategy,
    PolicySpec,
    ProfileStatus,
    Software,
    TorchRule,
)
from maxtune.contract.policy import torch_rule

__all__ = [
    "COMPILE_MEASURED",
    "CONDITION_TYPES",
    "GEMM_MEASURED",
    "INVENTORIED",
    "LEVELS",
    "READY",
    "MeasurementState",
    "build_gpus",
    "build_status",
    "conditions",
    "fingerprint",
    "keep_transition_times",
    "lacks",
    "local_policy_spec",
]


def local_policy_spec() -> PolicySpec:
    """The spec used when no cluster policy is readable: the installed torch's rule."""
    major, minor = gate.parse_torch_version(gate.default_torch_version())
    return PolicySpec(torch=TorchRule(version=f"{major}.{minor}"))


def fingerprint(inventory: Inventory, software: Software, level: str) -> str:
    """Hash of what a measurement depends on: hardware, driver, torch, triton, level.

    Busy processes, indices and the heartbeat are left out: they change without
    changing what the GPU can do.
    """
    facts = {
        "source": inventory.source,
        "simulation": inventory.simulation,
        "level": level,
        "driver": software.driver_version,
        "cuda": software.cuda_driver_version,
        "torch": software.torch_version,
        "triton": software.triton_version,
        "gpus": sorted(
            [
                g.uuid,
                g.product,
                g.memory_mib,
                list(g.compute_capability),
                g.sm_count,
                g.mig_enabled,
                sorted([m.profile, m.sm_count or 0] for m in g.mig),
            ]
            for g in inventory.gpus
        ),
    }
    digest = hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()
    return f"sha256:{digest[:32]}"


@dataclass
class MeasurementState:
    """What the agent holds about measurements between rounds (and across restarts)."""

    fingerprint: str | None = None
    by_gpu: dict[str, Measurements] = field(default_factory=dict)
    skipped: dict[str, tuple[str, str]] = field(default_factory=dict)  # uuid -> (reason, msg)
    measured_time: datetime | None = None
    # The agent's proof of each sharing group's compile cache (cacheproof.py); never a verdict.
    compile_cache: list[CompileCacheProof] = field(default_factory=list)

    def complete_for(self, devices: Sequence[Target], level: str) -> bool:
        """Every device has the measurements `level` asks for (skipped ones do not count)."""
        return level == "inventory" or not any(
            lacks(self.by_gpu.get(t.uuid), level) for t in devices
        )

    @classmethod
    def from_status(cls, status: ProfileStatus | None) -> MeasurementState:
        """Measurements of a published profile, to keep them when the fingerprint matches."""
        if status is None:
            return cls()
        by_uuid = {g.uuid: g.measurements for g in status.gpus if g.measurements is not None}
        for gpu in status.gpus:
            for m in gpu.mig_instances:
                if m.uuid is not None and m.measurements is not None:
                    by_uuid[m.uuid] = m.measurements
        return cls(
            fingerprint=status.fingerprint,
            by_gpu=by_uuid,
            measured_time=status.measured_time,
            compile_cache=list(status.compile_cache),
        )


def lacks(found: Measurements | None, level: str) -> bool:
    """True when `found` misses what `level` measures (GEMM; at full also both blocks)."""
    if level == "inventory":
        return False
    if found is None or not found.gemm:
        return True
    return level == "full" and (found.training is None or found.compile is None)


def _verdict(sm_count: int | None, torch_version: str) -> GateVerdict:
    result = gate.verdict(sm_count=sm_count, torch_version=torch_version)
    return GateVerdict(capable=result.capable, rule=result.rule, torch_version=result.torch)


def build_gpus(
    inventory: Inventory,
    torch_version: str,
    measurements: Mapping[str, Measurements],
    strategy: MigStrategy = migstrategy.DEFAULT,
) -> list[Gpu]:
    """The contract's GPUs, each scheduled as the device plugin would under `strategy`."""
    plan = migstrategy.layout(inventory, strategy)
    gpus = []
    for dev, (resource, slice_resources) in zip(inventory.gpus, plan.gpus, strict=True):
        mig = [
            MigInstance(
                profile=m.profile,
                resource=slice_resource,
                uuid=m.uuid,
                gpu_instance_id=m.gpu_instance_id,
                compute_instance_id=m.compute_instance_id,
                sm_count=m.sm_count,
                gpu_class=gpu_class(dev.product, m.sm_count, m.profile),
                verdict=_verdict(m.sm_count, torch_version),
                measurements=measurements.get(m.uuid) if m.uuid is not None else None,
            )
            for m, slice_resource in zip(dev.mig, slice_resources, strict=True)
        ]
        gpus.append(
            Gpu(
                index=dev.index,
                uuid=dev.uuid,
                product=dev.product,
                memory_mib=dev.memory_mib,
                compute_capability=f"{dev.compute_capability[0]}.{dev.compute_capability[1]}",
                sm_count=dev.sm_count,
                mig_enabled=dev.mig_enabled,
                resource=resource,
                gpu_class=gpu_class(dev.product, dev.sm_count),
                verdict=_verdict(None if dev.mig_enabled else dev.sm_count, torch_version),
                mig_instances=mig,
                measurements=None if dev.mig_enabled else measurements.get(dev.uuid),
            )
        )
    return gpus


def build_status(
    *,
    inventory: Inventory,
    software: Software,
    level: str,
    spec: PolicySpec,
    state: MeasurementState,
    node: str,
    previous: ProfileStatus | None,
    now: datetime,
    mig_strategy: MigStrategy = migstrategy.DEFAULT,
    devices: Sequence[Target] | None = None,
) -> ProfileStatus:
    """The status to publish, as published: its measured numbers rounded as the wire form
    rounds them (contract.precision), so what the agent holds is what it wrote and what it
    reads back. `devices` are what the backend measures (its `targets`); by default the
    whole GPUs and the slices that pass the installed torch's gate."""
    if devices is None:
        devices = targets(inventory, gate.default_torch_version())
    gpus = build_gpus(inventory, torch_rule(spec), state.by_gpu, mig_strategy)
    resources, summary = summarize(gpus, spec)
    status = ProfileStatus(
        source=inventory.source,
        simulation=inventory.simulation,
        level=level,
        mig_strategy=mig_strategy,
        heartbeat_time=now,
        measured_time=state.measured_time,
        fingerprint=fingerprint(inventory, software, level),
        software=software,
        gpus=gpus,
        resources=resources,
        summary=summary,
        compile_cache=list(state.compile_cache),
        conditions=conditions(
            inventory=inventory,
            devices=devices,
            level=level,
            state=state,
            node=node,
            previous=previous.conditions if previous else [],
            now=now,
            layout_problem=migstrategy.layout(inventory, mig_strategy).problem,
        ),
    )
    return ProfileStatus.model_validate(status.wire())
