"""The interval arithmetic behind every gain, and the break-even count."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from maxtune.contract.gains import (
    break_even_steps,
    coverage,
    median_interval,
    mode_gain,
    paired_gains,
)


def test_coverage_is_the_sign_test_s() -> None:
    # 10 rounds: [x(2), x(9)] covers the median with 1 - 2 * 11/1024.
    assert coverage(10, 2) == pytest.approx(1 - 2 * 11 / 1024)
    assert coverage(10, 1) == pytest.approx(1 - 2 / 1024)
    with pytest.raises(ValueError, match="does not bound"):
        coverage(10, 6)


def test_the_interval_is_the_narrowest_with_the_confidence_asked() -> None:
    values = [float(v) for v in range(10)]
    got = median_interval(values, 0.95)
    assert (got.low, got.high) == (1.0, 8.0)  # the 2nd and 9th: 97.9%; the 3rd would give 89%
    assert got.coverage >= 0.95
    few = median_interval([3.0, 1.0, 2.0], 0.95)  # too few rounds for 95%: min..max, and says so
    assert (few.low, few.high) == (1.0, 3.0) and few.coverage == pytest.approx(0.75)
    with pytest.raises(ValueError, match="at least one round"):
        median_interval([])


@given(st.lists(st.floats(-1.0, 1.0, allow_nan=False), min_size=1, max_size=40), st.randoms())
def test_the_order_of_the_rounds_never_changes_the_interval(
    values: list[float], rnd: random.Random
) -> None:
    shuffled = list(values)
    rnd.shuffle(shuffled)
    assert median_interval(values) == median_interval(shuffled)


def test_paired_gains_pair_each_round_with_the_default_of_the_same_round() -> None:
    assert paired_gains([2.0, 4.0], [1.0, 4.0]) == [1.0, 0.0]
    with pytest.raises(ValueError, match="rounds"):
        paired_gains([1.0], [1.0, 1.0])


def test_drift_shared_by_the_modes_cancels_in_paired_gains() -> None:
    # The GPU slows down 20% over the rounds; the mode stays 5% faster than default in each.
    drift = [1.0 + 0.02 * i for i in range(10)]
    default = [1.0 * d for d in drift]
    mode = [1.0 / 1.05 * d for d in drift]
    got = mode_gain([default], [mode])
    assert got.low == pytest.approx(0.05) and got.high == pytest.approx(0.05)


def test_a_process_that_does_not_see_the_gain_widens_the_interval_to_it() -> None:
    default = [1.0] * 10
    fast = [1 / 1.06] * 10
    same = [1.0] * 10
    one = mode_gain([default], [fast])
    both = mode_gain([default, default], [fast, same])
    assert one.low == pytest.approx(0.06)
    assert both.low == pytest.approx(0.0) and both.high == pytest.approx(0.06)
    # Swapping the processes changes nothing.
    assert mode_gain([default, default], [same, fast]) == both


def test_break_even() -> None:
    assert break_even_steps(default_step_seconds=0.5, gain=1.0, extra_compile_seconds=10.0) == 40
    assert break_even_steps(default_step_seconds=0.5, gain=1.0, extra_compile_seconds=-2.0) == 0
    assert break_even_steps(default_step_seconds=0.5, gain=0.0, extra_compile_seconds=1.0) is None
    assert break_even_steps(default_step_seconds=0.5, gain=-0.1, extra_compile_seconds=1.0) is None
    # The H200 MLP (facts/h200.md): default 1.488 ms; a 3% gain and 5.5 s more compile.
    n = break_even_steps(default_step_seconds=1.488e-3, gain=0.03, extra_compile_seconds=5.5)
    assert n is not None and n == math.ceil(5.5 / (1.488e-3 * 0.03 / 1.03))
    assert 120_000 < n < 130_000
