"""From an inventory and measurements to the GPUNodeProfile status the agent publishes.

Pure functions of their inputs (the clock is a parameter), so every rule here
is unit-tested without a GPU or a cluster: the verdict per GPU and MIG slice
(the contract's gate under the policy's torch rule), the summaries (the
contract's `summarize`), the fingerprint that decides when to re-measure, and
the conditions, whose lastTransitionTime moves only when their status does.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from maxtune.agent.inventory import GpuDevice, Inventory
from maxtune.contract import gate
from maxtune.contract.assess import summarize
from maxtune.contract.gpuclass import gpu_class
from maxtune.contract.models import (
    Condition,
    GateVerdict,
    Gpu,
    Measurements,
    MigInstance,
    PolicySpec,
    ProfileStatus,
    Software,
    TorchRule,
)
from maxtune.contract.names import RESOURCE_GPU, mig_resource
from maxtune.contract.policy import torch_rule

LEVELS: tuple[str, ...] = ("inventory", "gemm", "full")

INVENTORIED = "Inventoried"
GEMM_MEASURED = "GemmMeasured"
COMPILE_MEASURED = "CompileMeasured"
READY = "Ready"
CONDITION_TYPES = (INVENTORIED, GEMM_MEASURED, COMPILE_MEASURED, READY)


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

    def complete_for(self, gpus: Sequence[GpuDevice], level: str) -> bool:
        """Every whole GPU has the measurements `level` asks for (skipped ones do not count)."""
        if level == "inventory":
            return True
        for gpu in gpus:
            if gpu.mig_enabled:
                continue
            found = self.by_gpu.get(gpu.uuid)
            if found is None or not found.gemm:
                return False
            if level == "full" and found.compile is None:
                return False
        return True

    @classmethod
    def from_status(cls, status: ProfileStatus | None) -> MeasurementState:
        """Measurements of a published profile, to keep them when the fingerprint matches."""
        if status is None:
            return cls()
        return cls(
            fingerprint=status.fingerprint,
            by_gpu={g.uuid: g.measurements for g in status.gpus if g.measurements is not None},
            measured_time=status.measured_time,
        )


def _verdict(sm_count: int | None, torch_version: str) -> GateVerdict:
    result = gate.verdict(sm_count=sm_count, torch_version=torch_version)
    return GateVerdict(capable=result.capable, rule=result.rule, torch_version=result.torch)


def build_gpus(
    inventory: Inventory, torch_version: str, measurements: Mapping[str, Measurements]
) -> list[Gpu]:
    gpus = []
    for dev in inventory.gpus:
        mig = [
            MigInstance(
                profile=m.profile,
                resource=mig_resource(m.profile),
                uuid=m.uuid,
                gpu_instance_id=m.gpu_instance_id,
                compute_instance_id=m.compute_instance_id,
                sm_count=m.sm_count,
                gpu_class=gpu_class(dev.product, m.sm_count, m.profile),
                verdict=_verdict(m.sm_count, torch_version),
            )
            for m in dev.mig
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
                resource=None if dev.mig_enabled else RESOURCE_GPU,
                gpu_class=gpu_class(dev.product, dev.sm_count),
                verdict=_verdict(None if dev.mig_enabled else dev.sm_count, torch_version),
                mig_instances=mig,
                measurements=None if dev.mig_enabled else measurements.get(dev.uuid),
            )
        )
    return gpus


# ------------------------------------------------------------------ conditions


def _cond(kind: str, ok: bool, reason: str, message: str, now: datetime) -> Condition:
    return Condition(
        type=kind,
        status="True" if ok else "False",
        reason=reason,
        message=message[:4000],
        last_transition_time=now,
    )


def _inventoried(inventory: Inventory, node: str, now: datetime) -> Condition:
    whole = sum(1 for g in inventory.gpus if not g.mig_enabled)
    slices = sum(len(g.mig) for g in inventory.gpus)
    found = f"{len(inventory.gpus)} GPU(s): {whole} whole, {slices} MIG instance(s)"
    if inventory.source == "none" or (not inventory.gpus and inventory.problems):
        why = "; ".join(m for _, m in inventory.problems) or "no GPU found"
        reason = inventory.problems[0][0] if inventory.problems else "NoGPU"
        return _cond(INVENTORIED, False, reason, f"no GPU on this node: {why}", now)
    if inventory.problems:
        reason = inventory.problems[0][0]
        detail = "; ".join(m for _, m in inventory.problems)
        return _cond(INVENTORIED, False, reason, f"{found}; incomplete: {detail}", now)
    if inventory.source == "simulation":
        return _cond(
            INVENTORIED,
            True,
            "Simulated",
            f"SIMULATED from fleet file {inventory.simulation} as node {node}, not real "
            f"hardware: {found}",
            now,
        )
    if not inventory.gpus:
        return _cond(INVENTORIED, False, "NoGPU", "NVML lists no GPU on this node", now)
    return _cond(INVENTORIED, True, "Inventoried", found, now)


def _measured(
    kind: str,
    inventory: Inventory,
    level: str,
    state: MeasurementState,
    now: datetime,
) -> Condition:
    wants = "gemm" if kind == GEMM_MEASURED else "full"
    what = "reference GEMM" if kind == GEMM_MEASURED else "torch.compile comparison"
    if LEVELS.index(level) < LEVELS.index(wants):
        return _cond(kind, False, "NotRequested", f"level {level}: the {what} is not run", now)
    whole = [g for g in inventory.gpus if not g.mig_enabled]
    if not whole:
        if inventory.gpus:
            return _cond(
                kind,
                False,
                "NoWholeGPU",
                "every GPU is in MIG mode; MIG slices are not measured",
                now,
            )
        return _cond(kind, False, "NoGPU", "no GPU to measure", now)
    failures: list[tuple[str, str]] = []
    pending: list[str] = []
    notes: list[str] = []
    for gpu in whole:
        found = state.by_gpu.get(gpu.uuid)
        if kind == GEMM_MEASURED:
            results = found.gemm if found else []
            if not results:
                pending.append(f"GPU {gpu.index}")
                continue
            for m in results:
                if m.ok:
                    notes.append(f"GPU {gpu.index} {m.size}: {m.ratio_to_cublas:.1%} of cuBLAS")
                else:
                    failures.append(
                        (m.reason or "MeasurementFailed", f"GPU {gpu.index} {m.size}: {m.message}")
                    )
        else:
            comp = found.compile if found else None
            if comp is None:
                pending.append(f"GPU {gpu.index}")
            elif not comp.ok:
                failures.append(
                    (comp.reason or "MeasurementFailed", f"GPU {gpu.index}: {comp.message}")
                )
            else:
                gains = ", ".join(
                    f"{t.mode.value} {t.gain:+.1%}" for t in comp.modes if t.mode.value != "default"
                )
                notes.append(f"GPU {gpu.index}: {gains}")
    if failures:
        return _cond(kind, False, failures[0][0], "; ".join(m for _, m in failures), now)
    if pending:
        busy = [state.skipped[g.uuid] for g in whole if g.uuid in state.skipped]
        if busy:
            return _cond(kind, False, busy[0][0], "; ".join(m for _, m in busy), now)
        return _cond(kind, False, "Pending", f"not measured yet: {', '.join(pending)}", now)
    prefix = "SIMULATED " if inventory.source == "simulation" else ""
    return _cond(kind, True, "Measured", prefix + "; ".join(notes), now)


def conditions(
    *,
    inventory: Inventory,
    level: str,
    state: MeasurementState,
    node: str,
    previous: Sequence[Condition],
    now: datetime,
) -> list[Condition]:
    fresh = [
        _inventoried(inventory, node, now),
        _measured(GEMM_MEASURED, inventory, level, state, now),
        _measured(COMPILE_MEASURED, inventory, level, state, now),
    ]
    inventoried = fresh[0].status == "True"
    requested = [c for c in fresh[1:] if c.reason != "NotRequested"]
    waiting = [c for c in requested if c.reason in ("Pending", "GPUBusy")]
    if not inventoried:
        ready = _cond(READY, False, "InventoryFailed", fresh[0].message, now)
    elif waiting:
        ready = _cond(READY, False, "MeasurementPending", waiting[0].message, now)
    else:
        ready = _cond(READY, True, "ProfileComplete", f"level {level} profile complete", now)
    fresh.append(ready)
    return keep_transition_times(fresh, previous)


def keep_transition_times(
    fresh: Sequence[Condition], previous: Sequence[Condition]
) -> list[Condition]:
    """A condition whose status did not change keeps its lastTransitionTime."""
    before = {c.type: c for c in previous}
    out = []
    for cond in fresh:
        old = before.get(cond.type)
        if old is not None and old.status == cond.status:
            out.append(cond.model_copy(update={"last_transition_time": old.last_transition_time}))
        else:
            out.append(cond)
    return out


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
) -> ProfileStatus:
    gpus = build_gpus(inventory, torch_rule(spec), state.by_gpu)
    resources, summary = summarize(gpus, spec)
    return ProfileStatus(
        source=inventory.source,
        simulation=inventory.simulation,
        level=level,
        heartbeat_time=now,
        measured_time=state.measured_time,
        fingerprint=fingerprint(inventory, software, level),
        software=software,
        gpus=gpus,
        resources=resources,
        summary=summary,
        conditions=conditions(
            inventory=inventory,
            level=level,
            state=state,
            node=node,
            previous=previous.conditions if previous else [],
            now=now,
        ),
    )
