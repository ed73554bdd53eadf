"""The benchmarks' arithmetic and checks, without a plane."""

from __future__ import annotations

import math

import pytest

from benchmarks import stats
from benchmarks.gpufleet import CHANGED_GAIN, changeable, kind_of, plan_node
from benchmarks.reviews import MIX, mixed_bodies, rotation
from maxtune_dev.localplane import LocalPlane


def test_percentile_is_a_seen_value() -> None:
    values = [float(i) for i in range(1, 101)]
    assert stats.percentile(values, 50) == 50.0
    assert stats.percentile(values, 99) == 99.0
    assert stats.percentile(values, 100) == 100.0
    assert math.isnan(stats.percentile([], 50))


def test_histogram_quantile_interpolates_inside_the_bucket() -> None:
    buckets = {0.001: 50.0, 0.005: 90.0, 0.01: 100.0, math.inf: 100.0}
    q = stats.histogram_quantile(buckets, 0.99)
    assert q["bucket_ms"] == [5.0, 10.0]
    assert q["value_ms"] == pytest.approx(9.5)
    assert stats.fraction_at_most(buckets, 0.005) == 0.9
    beyond = stats.histogram_quantile({0.001: 1.0, math.inf: 10.0}, 0.99)
    assert beyond["value_ms"] is None


def test_changed_profiles_flip_the_mode_to_default() -> None:
    for i in changeable(90)[:6]:
        before, after = plan_node(i), plan_node(i, gain=CHANGED_GAIN)
        assert before.expected["maxtune.io/recommended-mode"] != "default"
        assert after.expected["maxtune.io/recommended-mode"] == "default"
        assert kind_of(i).gain is not None


def test_the_review_mix_is_what_it_says() -> None:
    order = rotation()
    assert sorted(set(order)) == sorted(MIX)
    assert set(mixed_bodies()) == set(MIX)


def test_extra_args_only_for_known_components() -> None:
    with pytest.raises(ValueError, match="unknown components"):
        LocalPlane(extra_args={"kubelet": ["--v=2"]})
