"""From timed rounds to the published `CompileMeasurement`: one path for real and simulated.

The measurement worker times each mode in interleaved rounds, in one or more processes;
the agent's parent process, the simulation backend and the tests all hand their rounds
to `compile_measurement`, so a simulated profile goes through the same interval
arithmetic (contract.gains) as a measured one.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from maxtune.contract.gains import CONFIDENCE, block_gains
from maxtune.contract.models import MAX_ROUNDS, CompileMeasurement, ModeTiming, Workload
from maxtune.contract.modes import Mode


@dataclass(frozen=True, slots=True)
class ModeRounds:
    """One mode of one block: its compile times and the step seconds of each round.

    `rounds[p][r]` is the median step time of round r in timing process p.
    """

    mode: Mode
    compile_seconds: float
    rounds: tuple[tuple[float, ...], ...]
    warm_compile_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class BlockRounds:
    """Everything timed for one reference block, ready to become a CompileMeasurement."""

    block: str
    workload: Workload
    calls_per_round: int
    modes: tuple[ModeRounds, ...]
    eager_rounds: tuple[tuple[float, ...], ...] = ()
    problems: tuple[str, ...] = field(default_factory=tuple)


def _shape(modes: Sequence[ModeRounds]) -> tuple[int, int]:
    processes = {len(m.rounds) for m in modes}
    rounds = {len(r) for m in modes for r in m.rounds}
    if len(processes) != 1 or len(rounds) != 1:
        raise ValueError("every mode needs the same number of processes and rounds")
    return processes.pop(), rounds.pop()


def compile_measurement(data: BlockRounds, *, confidence: float = CONFIDENCE) -> CompileMeasurement:
    """The block's measurement; not ok when default has no rounds (no gain can be had)."""
    default = next((m for m in data.modes if m.mode is Mode.DEFAULT), None)
    message = "; ".join(data.problems) or None
    if default is None or not default.rounds or not default.rounds[0]:
        return CompileMeasurement(
            ok=False,
            reason="MeasurementFailed",
            message="default mode could not be measured, so no gain can be"
            + (f": {message}" if message else ""),
            block=data.block,
            workload=data.workload,
        )
    processes, rounds = _shape(data.modes)
    if processes * rounds > MAX_ROUNDS:
        raise ValueError(f"{processes} x {rounds} rounds exceed the {MAX_ROUNDS} a profile keeps")
    gains = block_gains(
        {m.mode.value: [list(r) for r in m.rounds] for m in data.modes}, Mode.DEFAULT.value
    )
    timings = []
    for m in data.modes:
        g = gains[m.mode.value]
        timings.append(
            ModeTiming(
                mode=m.mode,
                step_seconds=g.step_seconds,
                compile_seconds=m.compile_seconds,
                warm_compile_seconds=m.warm_compile_seconds,
                gain=g.gain,
                gain_low=g.low,
                gain_high=g.high,
                round_step_seconds=[s for r in m.rounds for s in r],
            )
        )
    eager = [s for r in data.eager_rounds for s in r]
    return CompileMeasurement(
        ok=True,
        message=message,
        block=data.block,
        workload=data.workload,
        eager_step_seconds=statistics.median(eager) if eager else None,
        processes=processes,
        rounds=rounds,
        calls_per_round=data.calls_per_round,
        confidence=min(
            gains[m.mode.value].coverage for m in data.modes if m.mode is not Mode.DEFAULT
        )
        if len(data.modes) > 1
        else None,
        modes=timings,
    )


def spread_rounds(
    step_seconds: float, spread: float, *, processes: int, rounds: int, seed: int
) -> tuple[tuple[float, ...], ...]:
    """Rounds scattered uniformly within +-`spread` (a fraction) of `step_seconds`, for
    simulations and tests. A seeded generator keeps them the same on every run; give each
    mode its own seed, or their paired gains would not scatter.
    """
    rng = random.Random(seed)
    values = [
        step_seconds * (1.0 + spread * rng.uniform(-1.0, 1.0)) for _ in range(processes * rounds)
    ]
    return tuple(tuple(values[p * rounds : (p + 1) * rounds]) for p in range(processes))
