"""Percentiles of measured latencies and of Prometheus histograms.

Latencies measured by the load generator are exact samples: percentiles use
the nearest-rank rule (p99 of 4,000 samples is the 3,960th smallest), so every
number reported is one that was seen. Server-side histograms only know their
buckets: their quantiles are interpolated inside the bucket, as Prometheus'
histogram_quantile does, and reported with the bucket's bounds next to them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from maxtune_dev.testkit.promtext import Samples


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (q in 0..100)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def latency_summary(seconds: Iterable[float]) -> dict[str, float | int]:
    """count, p50/p90/p99/p99.9, max and mean, in milliseconds."""
    values = sorted(seconds)
    if not values:
        return {"count": 0}
    ms = 1e3
    return {
        "count": len(values),
        "p50_ms": round(percentile(values, 50) * ms, 3),
        "p90_ms": round(percentile(values, 90) * ms, 3),
        "p99_ms": round(percentile(values, 99) * ms, 3),
        "p999_ms": round(percentile(values, 99.9) * ms, 3),
        "max_ms": round(values[-1] * ms, 3),
        "mean_ms": round(sum(values) / len(values) * ms, 3),
    }


Buckets = dict[float, float]  # upper bound ("le") -> cumulative count


def histogram(samples: Samples, name: str, match: Mapping[str, str] | None = None) -> Buckets:
    """The cumulative buckets of histogram `name` (summed over series matching `match`)."""
    buckets: Buckets = {}
    for labels, value in samples.get(f"{name}_bucket", []):
        if match and any(labels.get(k) != v for k, v in match.items()):
            continue
        bound = float(labels["le"])
        buckets[bound] = buckets.get(bound, 0.0) + value
    return dict(sorted(buckets.items()))


def histogram_delta(after: Buckets, before: Buckets) -> Buckets:
    return {bound: count - before.get(bound, 0.0) for bound, count in after.items()}


def histogram_quantile(buckets: Buckets, q: float) -> dict[str, Any]:
    """Quantile q (0..1) of cumulative buckets: interpolated value and the bucket it lies in."""
    if not buckets:
        return {"count": 0}
    bounds = sorted(buckets)
    total = buckets[bounds[-1]]
    if total <= 0:
        return {"count": 0}
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return {
                    "count": int(total),
                    "value_ms": None,
                    "bucket_ms": [round(lower_bound * 1e3, 3), None],
                }
            width = count - lower_count
            frac = (rank - lower_count) / width if width > 0 else 1.0
            value = lower_bound + (bound - lower_bound) * frac
            return {
                "count": int(total),
                "value_ms": round(value * 1e3, 3),
                "bucket_ms": [round(lower_bound * 1e3, 3), round(bound * 1e3, 3)],
            }
        lower_bound, lower_count = bound, count
    raise AssertionError("unreachable: the +Inf bucket holds every observation")


def highest_bucket(buckets: Buckets) -> list[float | None] | None:
    """The bounds in ms of the bucket that holds the largest observation (None: no observation)."""
    total = buckets.get(math.inf, 0.0)
    if total <= 0:
        return None
    lower = 0.0
    for bound in sorted(buckets):
        if buckets[bound] >= total:
            return [round(lower * 1e3, 3), None if math.isinf(bound) else round(bound * 1e3, 3)]
        lower = bound
    raise AssertionError("unreachable: the +Inf bucket holds every observation")


def fraction_at_most(buckets: Buckets, bound: float) -> float | None:
    """Share of observations at or below `bound` seconds (exact only at a bucket edge)."""
    total = buckets.get(math.inf, 0.0)
    if total <= 0 or bound not in buckets:
        return None
    return buckets[bound] / total
