"""The cluster's speed table: per GPU class, what max-autotune does to the training reference.

`maxtune status` prints it under the per-node table. One row per GPU class (whole
GPUs and MIG slices alike, as `maxtune.io/gpu-class` names them) among the nodes
with a current profile: how many nodes and devices, how many pass the gate, the
mode the nodes of the class are advised (their `nvidia.com/...` resources'
recommended mode under the cluster policy), and the training reference's figures
pooled over every capable, measured device of the class the way the agent pools
one node's devices (`contract.advice.advise`: medians of the per-device figures).

The figures are those of the recommended mode; where the class is advised
`default`, those of its best measured mode, so an operator sees how far it was
from qualifying.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from maxtune.contract.advice import advise, usable
from maxtune.contract.assess import gpu_capable, mig_capable
from maxtune.contract.models import CompileMeasurement, ModeAdvice, ProfileStatus
from maxtune.contract.modes import Mode, weakest
from maxtune.contract.policy import torch_rule
from maxtune.operator.fleet import FleetState

MIXED = "mixed"  # the class's nodes are advised different modes


@dataclass(frozen=True, slots=True)
class _Device:
    gpu_class: str
    resource: str
    capable: bool
    training: CompileMeasurement | None


def _devices(status: ProfileStatus, rule: str) -> Iterator[_Device]:
    """Every schedulable device: the grouping of `contract.assess.summarize`."""
    for gpu in status.gpus:
        if gpu.resource is not None:
            measured = None if gpu.mig_enabled else gpu.measurements
            yield _Device(
                gpu.gpu_class,
                gpu.resource,
                gpu_capable(gpu, rule),
                measured.training if measured is not None else None,
            )
        for mig in gpu.mig_instances:
            if mig.resource is not None:
                yield _Device(
                    mig.gpu_class,
                    mig.resource,
                    mig_capable(mig, rule),
                    mig.measurements.training if mig.measurements is not None else None,
                )


@dataclass(frozen=True, slots=True)
class ClassSpeed:
    """One GPU class of the cluster and the training reference's figures on it."""

    gpu_class: str
    nodes: int
    gpus: int  # devices: whole GPUs, or MIG slices for a MIG class
    capable: int
    measured: int  # capable devices with a usable training measurement
    mode: str  # the recommended mode of every node of the class, or "mixed"
    node_modes: dict[str, int] = field(default_factory=dict)  # mode -> nodes advised it
    about: ModeAdvice | None = None  # the mode the figures describe
    mode_step_seconds: float | None = None  # the training step in that mode

    def wire(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "gpuClass": self.gpu_class,
            "nodes": self.nodes,
            "gpus": self.gpus,
            "capable": self.capable,
            "measured": self.measured,
            "mode": self.mode,
            "nodeModes": dict(self.node_modes),
        }
        a = self.about
        if a is not None:
            body["figures"] = {
                "mode": a.mode.value,
                "recommended": a.recommended,
                "defaultStepSeconds": a.step_seconds,
                "modeStepSeconds": self.mode_step_seconds,
                "gain": a.gain,
                "gainLow": a.gain_low,
                "gainHigh": a.gain_high,
                "extraCompileSeconds": a.extra_compile_seconds,
                "warmExtraCompileSeconds": a.warm_extra_compile_seconds,
                "breakEvenSteps": a.break_even_steps,
                "warmBreakEvenSteps": a.warm_break_even_steps,
            }
        return body


@dataclass(slots=True)
class _Class:
    nodes: set[str] = field(default_factory=set)
    gpus: int = 0
    capable: int = 0
    trainings: list[CompileMeasurement] = field(default_factory=list)
    modes: dict[str, list[Mode]] = field(default_factory=dict)  # node -> its resources' modes


def _median_step(trainings: list[CompileMeasurement], mode: Mode) -> float | None:
    steps = [t.step_seconds for m in trainings for t in m.modes if t.mode is mode]
    return float(statistics.median(steps)) if steps else None


def class_speeds(fleet: FleetState, now: float) -> list[ClassSpeed]:
    """Per GPU class among the nodes with a current profile, under the cluster policy."""
    policy = fleet.cluster_policy()
    rule = torch_rule(policy.spec)
    classes: dict[str, _Class] = {}
    for name, record in sorted(fleet.profiles.items()):
        if fleet.is_stale(name, now):
            continue
        status = record.status
        if status is None:
            continue
        summaries = fleet.summaries(name, policy)
        for device in _devices(status, rule):
            acc = classes.setdefault(device.gpu_class, _Class())
            acc.nodes.add(name)
            acc.gpus += 1
            if device.capable:
                acc.capable += 1
                if device.training is not None and usable(device.training) is None:
                    acc.trainings.append(device.training)
            summary = summaries.get(device.resource)
            if summary is not None:
                acc.modes.setdefault(name, []).append(summary.recommended_mode)
    found = []
    for gpu_class, acc in sorted(classes.items()):
        per_node = Counter(weakest(modes).value for modes in acc.modes.values())
        mode = next(iter(per_node)) if len(per_node) == 1 else MIXED
        about = None
        if acc.trainings:
            advice = advise(acc.trainings, capable=True, spec=policy.spec)
            about = next((a for a in advice.modes if a.mode.value == mode), advice.about)
        found.append(
            ClassSpeed(
                gpu_class=gpu_class,
                nodes=len(acc.nodes),
                gpus=acc.gpus,
                capable=acc.capable,
                measured=len(acc.trainings),
                mode=mode,
                node_modes=dict(sorted(per_node.items())),
                about=about,
                mode_step_seconds=_median_step(acc.trainings, about.mode) if about else None,
            )
        )
    return found


# ---------------------------------------------------------------- the table


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    ms = seconds * 1e3
    return f"{ms:.2f} ms" if ms < 10 else f"{ms:.1f} ms" if ms < 100 else f"{ms:,.0f} ms"


def _capable(row: ClassSpeed) -> str:
    if row.capable == row.gpus:
        return "yes"
    return "no" if row.capable == 0 else f"{row.capable} of {row.gpus}"


def _figures(row: ClassSpeed) -> tuple[str, ...] | None:
    a = row.about
    if a is None:
        return None
    measured = a.mode.value if a.recommended else f"({a.mode.value})"
    gain = f"{a.gain:+.1%} [{a.gain_low:+.1%}, {a.gain_high:+.1%}]"
    steps = "never" if a.break_even_steps is None else f"{a.break_even_steps:,}"
    return (
        measured,
        _ms(a.step_seconds),
        _ms(row.mode_step_seconds),
        gain,
        f"{a.extra_compile_seconds:+.1f} s",
        steps,
    )


TOP = ("GPU CLASS", "NODES", "GPUS", "CAPABLE", "MODE")
BOTTOM = ("MEASURED MODE", "DEFAULT", "IN MODE", "GAIN [INTERVAL]", "COMPILE", "PAYS BACK")
RIGHT = {"NODES", "GPUS", "DEFAULT", "IN MODE", "COMPILE", "PAYS BACK"}
INDENT = "  "
LEGEND = (
    "Under each class: the training reference (a transformer block's training step) pooled "
    "over its measured devices, in the recommended mode (in parentheses where none is: the "
    "best measured one): step in default and in that mode, gain over default [interval], "
    "extra cold compile, steps until that compile pays back at the interval's lower bound."
)


def _lines(header: tuple[str, ...], cells: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in (header, *cells)) for i in range(len(header))]
    right = [h in RIGHT for h in header]

    def line(row: tuple[str, ...]) -> str:
        return "  ".join(
            v.rjust(w) if r else v.ljust(w) for v, w, r in zip(row, widths, right, strict=True)
        ).rstrip()

    return [line(header), *(line(c) for c in cells)]


def _wrap(text: str, width: int) -> list[str]:
    lines, current = [], ""
    for word in text.split():
        if current and len(current) + 1 + len(word) > width:
            lines.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    return [*lines, current] if current else lines


def table(rows: list[ClassSpeed], width: int = 100) -> str:
    """Per class a line of counts and mode, then (indented) one of figures where it has any;
    both kinds of line are aligned across classes and fit in `width` columns."""
    top = _lines(TOP, [(r.gpu_class, str(r.nodes), str(r.gpus), _capable(r), r.mode) for r in rows])
    figures = [_figures(r) for r in rows]
    bottom = iter(_lines(BOTTOM, [f for f in figures if f is not None]))
    out = [top[0], INDENT + next(bottom)]
    for first, shown in zip(top[1:], figures, strict=True):
        out.append(first)
        if shown is not None:  # classes not capable or not measured have no figures
            out.append(INDENT + next(bottom))
    for r in rows:
        if r.mode == MIXED:
            split = ", ".join(f"{mode} on {n} node(s)" for mode, n in r.node_modes.items())
            out += _wrap(f"{r.gpu_class} is mixed: {split}.", width)
    return "\n".join([*out, "", *_wrap(LEGEND, width)])
