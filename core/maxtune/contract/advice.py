"""Which torch.compile mode a group of identical GPUs (or MIG slices) should get, and why.

The advice rests on the training reference (a transformer block's forward, backward and
optimizer step: the pods maxtune serves are training pods); the inference MLP is reported
beside it but decides nothing. A max-autotune mode is recommended only when

- the measurement is complete: timed in at least `MIN_PROCESSES` processes (the noise
  between processes is larger than within one, docs/decisions/0012-stable-gains.md);
- the LOWER bound of its gain's interval reaches the policy's `minMeasuredGain`;
- its extra compile time stays within the policy's bounds (`maxExtraCompileSeconds`, and
  `maxBreakEvenSteps`: the steps of the reference after which the extra compile time is
  paid back, at that lower bound).

Of the modes that qualify, the one with the highest lower bound wins (the weaker mode on a
tie). Several GPUs of one class pool their figures by median. Every rejection says which
rule rejected it, with the numbers.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from maxtune.contract.gains import break_even_steps
from maxtune.contract.models import CompileMeasurement, ModeAdvice, PolicySpec
from maxtune.contract.modes import AUTOTUNE_MODES, Mode, strength

MIN_PROCESSES = 2


@dataclass(frozen=True, slots=True)
class Advice:
    """One group's mode; `about` is the mode the figures describe (chosen, else best)."""

    mode: Mode
    reason: str
    about: ModeAdvice | None = None
    modes: tuple[ModeAdvice, ...] = ()

    @property
    def gain(self) -> float | None:
        return self.about.gain if self.about is not None else None


@dataclass(frozen=True, slots=True)
class _Figures:
    gain: float
    low: float
    high: float
    step: float
    extra: float
    warm_extra: float | None


def _pct(x: float) -> str:
    return f"{x:+.1%}"


def _steps(n: int | None) -> str:
    return "never" if n is None else f"{n:,} steps"


def usable(measurement: CompileMeasurement | None) -> str | None:
    """Why a training measurement cannot carry advice; None when it can."""
    if measurement is None:
        return "training reference not measured"
    if not measurement.ok:
        return f"training reference failed ({measurement.reason}: {measurement.message})"
    if measurement.processes < MIN_PROCESSES:
        return (
            f"training reference timed in {measurement.processes} process(es), "
            f"{MIN_PROCESSES} needed to know its run-to-run noise"
        )
    if not any(t.mode is Mode.DEFAULT for t in measurement.modes):
        return "training reference has no default-mode timing"
    return None


def _figures(measurement: CompileMeasurement, mode: Mode) -> _Figures | None:
    timings = {t.mode: t for t in measurement.modes}
    default, timing = timings.get(Mode.DEFAULT), timings.get(mode)
    if default is None or timing is None or timing.gain_low is None or timing.gain_high is None:
        return None
    warm = (
        timing.warm_compile_seconds - default.warm_compile_seconds
        if timing.warm_compile_seconds is not None and default.warm_compile_seconds is not None
        else None
    )
    return _Figures(
        gain=timing.gain,
        low=timing.gain_low,
        high=timing.gain_high,
        step=default.step_seconds,
        extra=timing.compile_seconds - default.compile_seconds,
        warm_extra=warm,
    )


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def judge(mode: Mode, figures: Sequence[_Figures], spec: PolicySpec) -> ModeAdvice:
    """One mode's pooled figures and verdict under the policy."""
    low = _median([f.low for f in figures])
    step = _median([f.step for f in figures])
    extra = _median([f.extra for f in figures])
    warms = [f.warm_extra for f in figures if f.warm_extra is not None]
    warm = _median(warms) if len(warms) == len(figures) else None
    breakeven = break_even_steps(default_step_seconds=step, gain=low, extra_compile_seconds=extra)
    warm_breakeven = (
        break_even_steps(default_step_seconds=step, gain=low, extra_compile_seconds=warm)
        if warm is not None
        else None
    )
    gain, high = _median([f.gain for f in figures]), _median([f.high for f in figures])
    figures_text = (
        f"{mode.value}: gain {_pct(gain)} [{_pct(low)}, {_pct(high)}], compile "
        f"{extra:+.1f} s"
        + (f" ({warm:+.1f} s warm)" if warm is not None else "")
        + (
            f", pays back after {_steps(breakeven)}"
            + (f" ({_steps(warm_breakeven)} warm)" if warm_breakeven is not None else "")
            if breakeven is not None
            else ", never pays back"
        )
    )
    bound_steps = spec.max_break_even_steps
    if low < spec.min_measured_gain:
        verdict = f"lower bound {_pct(low)} < minimum {spec.min_measured_gain:.1%}"
    elif spec.max_extra_compile_seconds is not None and extra > spec.max_extra_compile_seconds:
        verdict = f"{extra:.1f} s extra compile > the policy's {spec.max_extra_compile_seconds:g} s"
    elif bound_steps is not None and (breakeven is None or breakeven > bound_steps):
        verdict = (
            f"pays back after {breakeven:,} steps > the policy's {bound_steps:,}"
            if breakeven is not None
            else f"never pays back (the policy's bound: {bound_steps:,} steps)"
        )
    else:
        verdict = ""
    return ModeAdvice(
        mode=mode,
        gain=gain,
        gain_low=low,
        gain_high=high,
        step_seconds=step,
        extra_compile_seconds=extra,
        warm_extra_compile_seconds=warm,
        break_even_steps=breakeven,
        warm_break_even_steps=warm_breakeven,
        recommended=not verdict,
        reason=(figures_text + (f"; not recommended: {verdict}" if verdict else ""))[:512],
    )


def advise(
    trainings: Sequence[CompileMeasurement | None], *, capable: bool, spec: PolicySpec
) -> Advice:
    """The mode for a group of identical devices, from their training measurements."""
    if not capable:
        return Advice(Mode.DEFAULT, "not capable")
    # A device not measured yet (busy, pending) is judged by its measured siblings of the
    # same class; one whose measurement failed or is incomplete leaves the group's gain
    # unknown there, and the group gets default.
    present = [m for m in trainings if m is not None]
    if not present:
        return Advice(Mode.DEFAULT, "capable; training reference not measured")
    problems = [why for m in present if (why := usable(m)) is not None]
    if problems:
        return Advice(Mode.DEFAULT, f"capable; {problems[0]}")
    measured = list(present)
    judged: list[ModeAdvice] = []
    for mode in AUTOTUNE_MODES:
        figures = [f for m in measured if (f := _figures(m, mode)) is not None]
        if len(figures) == len(measured) and figures:
            judged.append(judge(mode, figures, spec))
    if not judged:
        return Advice(Mode.DEFAULT, "capable; no max-autotune mode was measured")
    rounds = measured[0]
    basis = (
        f" ({len(measured)} device(s), {rounds.processes} processes x {rounds.rounds} rounds "
        f"of {rounds.block})"
    )
    chosen = [a for a in judged if a.recommended]
    if chosen:
        best = max(chosen, key=lambda a: (a.gain_low, -strength(a.mode)))
        return Advice(best.mode, f"{best.reason}{basis}", best, tuple(judged))
    best = max(judged, key=lambda a: (a.gain_low, -strength(a.mode)))
    return Advice(
        Mode.DEFAULT,
        "default: " + "; ".join(a.reason for a in judged) + basis,
        best,
        tuple(judged),
    )
