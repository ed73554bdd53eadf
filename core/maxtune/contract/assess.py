"""From measured devices to advice: per-resource summaries and node labels.

The agent runs this to fill its profile's summary; the operator runs the same
code, with the cluster's policy, to derive labels and admission decisions. The
rule throughout: capable only what was measured, recommend a max-autotune mode
only where a measurement on the node showed it pays (design.md: "capable is
not beneficial").
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from maxtune.contract import gate
from maxtune.contract.gpuclass import mixed_class
from maxtune.contract.models import (
    Gpu,
    MigInstance,
    PolicySpec,
    ProfileStatus,
    ProfileSummary,
    ResourceSummary,
)
from maxtune.contract.modes import AUTOTUNE_MODES, Mode, weakest
from maxtune.contract.names import (
    LABEL_CAPABLE,
    LABEL_CLASS,
    LABEL_MODE,
    LABEL_SM_COUNT,
    RESOURCE_GPU,
)
from maxtune.contract.policy import torch_rule


def gpu_capable(gpu: Gpu, torch_version: str) -> bool:
    """The gate on the measured SM count, and no failed Triton check on this GPU."""
    if gpu.mig_enabled or gpu.sm_count is None:
        return False
    if not gate.verdict(sm_count=gpu.sm_count, torch_version=torch_version).capable:
        return False
    gemm = gpu.measurements.gemm if gpu.measurements else []
    return not (gemm and not any(m.ok for m in gemm))


def mig_capable(instance: MigInstance, torch_version: str) -> bool:
    return gate.verdict(sm_count=instance.sm_count, torch_version=torch_version).capable


@dataclass(frozen=True, slots=True)
class Advice:
    mode: Mode
    gain: float | None  # median measured gain of the best max-autotune mode
    reason: str


def advise(gpus: list[Gpu], *, capable: bool, min_gain: float) -> Advice:
    """One mode for a group of GPUs of one class, from their median measured gains."""
    if not capable:
        return Advice(Mode.DEFAULT, None, "not capable")
    gains: dict[Mode, list[float]] = defaultdict(list)
    for gpu in gpus:
        compile_ = gpu.measurements.compile if gpu.measurements else None
        if compile_ is None or not compile_.ok:
            continue
        for timing in compile_.modes:
            if timing.mode in AUTOTUNE_MODES:
                gains[timing.mode].append(timing.gain)
    if not gains:
        return Advice(Mode.DEFAULT, None, "capable, gain not measured")
    medians = {mode: statistics.median(values) for mode, values in gains.items()}
    best = max(medians, key=lambda m: medians[m])
    if medians[best] >= min_gain:
        return Advice(best, medians[best], f"measured gain {medians[best]:+.1%}")
    return Advice(
        Mode.DEFAULT, medians[best], f"best measured gain {medians[best]:+.1%} < {min_gain:.1%}"
    )


def _whole_gpu_summary(gpus: list[Gpu], spec: PolicySpec) -> ResourceSummary:
    tv = torch_rule(spec)
    by_class: dict[str, list[Gpu]] = defaultdict(list)
    for gpu in gpus:
        by_class[gpu.gpu_class].append(gpu)
    advices = [
        advise(
            group,
            capable=all(gpu_capable(g, tv) for g in group),
            min_gain=spec.min_measured_gain,
        )
        for group in by_class.values()
    ]
    mode = weakest([a.mode for a in advices])
    gains = [a.gain for a in advices if a.gain is not None]
    sms = [g.sm_count for g in gpus if g.sm_count is not None]
    return ResourceSummary(
        name=RESOURCE_GPU,
        count=len(gpus),
        sm_count=min(sms) if len(sms) == len(gpus) else None,
        capable=all(gpu_capable(g, tv) for g in gpus),
        gpu_class=mixed_class(by_class),
        recommended_mode=mode,
        measured_gain=min(gains) if len(gains) == len(advices) else None,
    )


def _mig_summaries(gpus: list[Gpu], spec: PolicySpec) -> list[ResourceSummary]:
    tv = torch_rule(spec)
    by_resource: dict[str, list[MigInstance]] = defaultdict(list)
    for gpu in gpus:
        for instance in gpu.mig_instances:
            by_resource[instance.resource].append(instance)
    summaries = []
    for resource, instances in sorted(by_resource.items()):
        sms = [i.sm_count for i in instances if i.sm_count is not None]
        summaries.append(
            ResourceSummary(
                name=resource,
                count=len(instances),
                sm_count=min(sms) if len(sms) == len(instances) else None,
                capable=all(mig_capable(i, tv) for i in instances),
                gpu_class=mixed_class(i.gpu_class for i in instances),
                # MIG slices are not measured (the reference runs on whole GPUs),
                # so the advice for them never rests on a measurement: default.
                recommended_mode=Mode.DEFAULT,
            )
        )
    return summaries


def summarize(gpus: list[Gpu], spec: PolicySpec) -> tuple[list[ResourceSummary], ProfileSummary]:
    """Per-resource summaries and the node summary, under `spec`'s torch rule and gain."""
    whole = [g for g in gpus if g.resource == RESOURCE_GPU and not g.mig_enabled]
    resources = ([_whole_gpu_summary(whole, spec)] if whole else []) + _mig_summaries(gpus, spec)
    if whole:
        head = resources[0]
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
