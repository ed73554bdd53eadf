"""From measured devices to advice: per-resource summaries and node labels.

The agent runs this to fill its profile's summary; the operator runs the same
code, with the cluster's policy, to derive labels and admission decisions. The
rule throughout: capable only what was measured, recommend a max-autotune mode
only where a measurement on the node showed it pays beyond its noise and its
compile cost (design.md: "capable is not beneficial"; the rule is in advice.py).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from maxtune.contract import gate
from maxtune.contract.advice import advise
from maxtune.contract.gpuclass import mixed_class
from maxtune.contract.models import (
    Gpu,
    Measurements,
    MigInstance,
    PolicySpec,
    ProfileStatus,
    ProfileSummary,
    ResourceSummary,
)
from maxtune.contract.modes import Mode, weakest
from maxtune.contract.names import (
    LABEL_CAPABLE,
    LABEL_CLASS,
    LABEL_MODE,
    LABEL_SM_COUNT,
    RESOURCE_GPU,
)
from maxtune.contract.policy import torch_rule


def _gemm_ok(measurements: Measurements | None) -> bool:
    """False only when the Triton check ran and failed at every size."""
    gemm = measurements.gemm if measurements else []
    return not (gemm and not any(m.ok for m in gemm))


def gpu_capable(gpu: Gpu, torch_version: str) -> bool:
    """The gate on the measured SM count, and no failed Triton check on this GPU."""
    if gpu.mig_enabled or gpu.sm_count is None:
        return False
    if not gate.verdict(sm_count=gpu.sm_count, torch_version=torch_version).capable:
        return False
    return _gemm_ok(gpu.measurements)


def mig_capable(instance: MigInstance, torch_version: str) -> bool:
    """The gate on the slice's own SM count, and no failed Triton check on the slice."""
    if not gate.verdict(sm_count=instance.sm_count, torch_version=torch_version).capable:
        return False
    return _gemm_ok(instance.measurements)


@dataclass(frozen=True, slots=True)
class _Unit:
    """One schedulable device: a whole GPU or a MIG slice, as a resource offers it."""

    gpu_class: str
    sm_count: int | None
    capable: bool
    measurements: Measurements | None
    mig_profile: str | None


def _units(gpus: list[Gpu], torch_version: str) -> dict[str, list[_Unit]]:
    """Devices by the resource they are scheduled as (whole GPUs and slices alike)."""
    by_resource: dict[str, list[_Unit]] = defaultdict(list)
    for gpu in gpus:
        if gpu.resource is not None:
            by_resource[gpu.resource].append(
                _Unit(
                    gpu.gpu_class,
                    None if gpu.mig_enabled else gpu.sm_count,
                    gpu_capable(gpu, torch_version),
                    None if gpu.mig_enabled else gpu.measurements,
                    None,
                )
            )
        for instance in gpu.mig_instances:
            if instance.resource is not None:
                by_resource[instance.resource].append(
                    _Unit(
                        instance.gpu_class,
                        instance.sm_count,
                        mig_capable(instance, torch_version),
                        instance.measurements,
                        instance.profile,
                    )
                )
    return by_resource


def _summary(name: str, units: list[_Unit], spec: PolicySpec) -> ResourceSummary:
    by_class: dict[str, list[_Unit]] = defaultdict(list)
    for unit in units:
        by_class[unit.gpu_class].append(unit)
    advices = {
        cls: advise(
            [u.measurements.training if u.measurements else None for u in group],
            capable=all(u.capable for u in group),
            spec=spec,
        )
        for cls, group in sorted(by_class.items())
    }
    mode = weakest([a.mode for a in advices.values()])
    # The class that decides: the weakest mode, and of those the least assured gain.
    deciding = min(
        (a for a in advices.values() if a.mode is mode),
        key=lambda a: a.about.gain_low if a.about is not None else float("-inf"),
    )
    about = deciding.about
    if len(advices) == 1:
        text = deciding.reason
    else:
        text = "; ".join(f"{cls}: {a.reason}" for cls, a in advices.items())
    sms = [u.sm_count for u in units if u.sm_count is not None]
    profiles = {u.mig_profile for u in units}
    return ResourceSummary(
        name=name,
        count=len(units),
        sm_count=min(sms) if len(sms) == len(units) else None,
        capable=all(u.capable for u in units),
        gpu_class=mixed_class(by_class),
        recommended_mode=mode,
        measured_gain=about.gain if about is not None else None,
        mig_profile=next(iter(profiles)) if len(profiles) == 1 else None,
        mode=about.mode if about is not None else None,
        gain_low=about.gain_low if about is not None else None,
        gain_high=about.gain_high if about is not None else None,
        extra_compile_seconds=about.extra_compile_seconds if about is not None else None,
        break_even_steps=about.break_even_steps if about is not None else None,
        advice=text[:2048],
        modes=list(deciding.modes),
    )


def summarize(gpus: list[Gpu], spec: PolicySpec) -> tuple[list[ResourceSummary], ProfileSummary]:
    """Per-resource summaries and the node summary, under `spec`'s torch rule and gain.

    Resources are what the device plugin advertises: whole GPUs and, under the single MIG
    strategy, MIG slices as `nvidia.com/gpu`; slices as `nvidia.com/mig-<profile>` under
    the mixed strategy. The node summary (and so the node labels) describes
    `nvidia.com/gpu`, whatever devices stand behind it.
    """
    grouped = _units(gpus, torch_rule(spec))
    names = sorted(grouped, key=lambda n: (n != RESOURCE_GPU, n))
    resources = [_summary(name, grouped[name], spec) for name in names]
    head = resources[0] if resources and resources[0].name == RESOURCE_GPU else None
    if head is not None:
        summary = ProfileSummary(
            gpus=len(gpus),
            sm_count=head.sm_count,
            capable=head.capable,
            recommended_mode=head.recommended_mode,
            gpu_class=head.gpu_class,
        )
    else:
        sms = [r.sm_count for r in resources if r.sm_count is not None]
        summary = ProfileSummary(
            gpus=len(gpus),
            sm_count=min(sms) if sms else None,
            capable=False,
            recommended_mode=Mode.DEFAULT,
            gpu_class=mixed_class(r.gpu_class for r in resources) if resources else None,
        )
    return resources, summary


def is_stale(status: ProfileStatus, spec: PolicySpec, now: datetime) -> bool:
    return now - status.heartbeat_time > timedelta(seconds=spec.stale_after_seconds)


def node_labels(status: ProfileStatus | None, spec: PolicySpec, now: datetime) -> Mapping[str, str]:
    """The maxtune labels a node should carry; empty means "none at all"."""
    if status is None or not status.gpus or is_stale(status, spec, now):
        return {}
    _, summary = summarize(status.gpus, spec)
    labels = {
        LABEL_CAPABLE: "true" if summary.capable else "false",
        LABEL_MODE: summary.recommended_mode.value,
    }
    if summary.sm_count is not None:
        labels[LABEL_SM_COUNT] = str(summary.sm_count)
    if summary.gpu_class is not None:
        labels[LABEL_CLASS] = summary.gpu_class
    return labels


def resources_by_name(resources: Iterable[ResourceSummary]) -> dict[str, ResourceSummary]:
    return {r.name: r for r in resources}
