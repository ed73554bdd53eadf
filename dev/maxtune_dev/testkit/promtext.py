"""Prometheus text exposition, parsed into plain samples.

Used for the operator's /metrics and the API server's. The API server's page is
several megabytes; `prefixes` keeps only the families a benchmark reads before
the (slow, pure-Python) parser sees the text.
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[str, list[tuple[dict[str, str], float]]]


def parse(text: str, prefixes: Sequence[str] = ()) -> Samples:
    if prefixes:
        keep = tuple(prefixes)
        text = "\n".join(
            line
            for line in text.splitlines()
            if line.startswith(keep) or (line.startswith("#") and any(p in line for p in keep))
        )
    found: Samples = {}
    for family in text_string_to_metric_families(text + "\n"):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((dict(sample.labels), float(sample.value)))
    return found


def total(samples: Samples, name: str, **match: str) -> float:
    """Sum of the samples of `name` whose labels include `match`."""
    return sum(
        value
        for labels, value in samples.get(name, [])
        if all(labels.get(k) == v for k, v in match.items())
    )
