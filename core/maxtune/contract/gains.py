"""Gains with their noise, and what a mode's compile time costs: the arithmetic of the advice.

A gain is judged on repeated, interleaved rounds (docs/decisions/0012-stable-gains.md): in
each round every mode is timed right after the others, so the default's time and a mode's
time in one round share the GPU's state of that moment, and their ratio is one *paired*
gain. The gains of a process's rounds give a distribution-free confidence interval for
their median (order statistics, the sign test's interval: no assumption about the shape of
the noise, and unaffected by the order the rounds come in). The interval of a measurement
taken in several processes is the union of the processes' intervals, so a gain counts only
when every process saw it.

Pure functions of numbers: the agent uses them to summarise what a worker timed, the
simulation to turn a fleet file's figures into the same shape, the contract's `assess` to
weigh compile seconds against the gain.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

CONFIDENCE = 0.95  # the smallest coverage asked of each process's interval


@dataclass(frozen=True, slots=True)
class Interval:
    """A confidence interval for a median; `coverage` is its exact nominal coverage."""

    low: float
    high: float
    coverage: float


def coverage(n: int, k: int) -> float:
    """P(x_(k) <= median <= x_(n+1-k)) for n independent draws of a continuous quantity.

    The median lies below x_(k) only if fewer than k draws fall below it, which for the
    median has probability P(Binomial(n, 1/2) <= k - 1); the same holds above.
    """
    if not 1 <= k <= (n + 1) // 2:
        raise ValueError(f"order statistic {k} of {n} does not bound a median interval")
    tail = sum(math.comb(n, i) for i in range(k)) / float(2**n)
    return max(0.0, 1.0 - 2.0 * tail)


def median_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """The narrowest order-statistic interval [x_(k), x_(n+1-k)] covering at least `confidence`.

    With too few values for `confidence` (n <= 5 at 95%) it is [min, max] and says its
    smaller coverage. Only the sorted values matter, so the rounds' order cannot change it.
    """
    n = len(values)
    if n == 0:
        raise ValueError("no values: an interval needs at least one round")
    ordered = sorted(values)
    k = 1
    while k + 1 <= (n + 1) // 2 and coverage(n, k + 1) >= confidence:
        k += 1
    return Interval(ordered[k - 1], ordered[n - k], coverage(n, k))


def paired_gains(default: Sequence[float], mode: Sequence[float]) -> list[float]:
    """Per round: default's step time / the mode's - 1 (positive = the mode is faster)."""
    if len(default) != len(mode):
        raise ValueError(f"{len(default)} default rounds but {len(mode)} rounds of the mode")
    return [d / m - 1.0 for d, m in zip(default, mode, strict=True)]


@dataclass(frozen=True, slots=True)
class ModeGain:
    """One mode's step time and gain over default from the rounds of one or more processes."""

    step_seconds: float  # median of every round's step time
    gain: float  # median of every paired gain
    low: float  # the lowest per-process interval bound
    high: float  # the highest
    coverage: float  # the smallest per-process coverage


def mode_gain(
    default_rounds: Sequence[Sequence[float]],
    mode_rounds: Sequence[Sequence[float]],
    confidence: float = CONFIDENCE,
) -> ModeGain:
    """Combine per-process rounds (`[process][round]` step seconds) of default and a mode.

    Each process's paired gains get their own interval; the combined interval spans all of
    them (union), because noise between processes is larger than within one (facts/h200.md:
    the same block measured 1.47 to 1.60 ms in separate processes) and a gain that one
    process does not confirm is not a gain to advise on.
    """
    if not default_rounds or len(default_rounds) != len(mode_rounds):
        raise ValueError("default and the mode need rounds from the same processes")
    gains: list[float] = []
    intervals: list[Interval] = []
    for d, m in zip(default_rounds, mode_rounds, strict=True):
        paired = paired_gains(d, m)
        gains += paired
        intervals.append(median_interval(paired, confidence))
    steps = [s for rounds in mode_rounds for s in rounds]
    return ModeGain(
        step_seconds=statistics.median(steps),
        gain=statistics.median(gains),
        low=min(i.low for i in intervals),
        high=max(i.high for i in intervals),
        coverage=min(i.coverage for i in intervals),
    )


def block_gains(
    rounds: Mapping[str, Sequence[Sequence[float]]], default: str = "default"
) -> dict[str, ModeGain]:
    """Every mode's gain over `default` (default's own: 0 with a zero-width interval)."""
    base = rounds[default]
    return {mode: mode_gain(base, mode_rounds) for mode, mode_rounds in rounds.items()}


# ------------------------------------------------------------------ compile cost


def saving_per_step(default_step_seconds: float, gain: float) -> float:
    """Seconds a step saves at `gain`: default step - default step / (1 + gain)."""
    return default_step_seconds * gain / (1.0 + gain)


def break_even_steps(
    *, default_step_seconds: float, gain: float, extra_compile_seconds: float
) -> int | None:
    """Steps of the reference after which a mode's extra compile time is paid back.

    0 when the mode compiles no slower than default; None when it never pays back
    (`gain` <= 0: each step saves nothing). The agent's advice passes the *lower* bound
    of the gain's interval, so the count is one the measurement supports.
    """
    if extra_compile_seconds <= 0:
        return 0
    if gain <= 0 or default_step_seconds <= 0:
        return None
    return math.ceil(extra_compile_seconds / saving_per_step(default_step_seconds, gain))
