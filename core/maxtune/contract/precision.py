"""Measured numbers as a profile publishes them: six significant digits.

A step time the agent times reads like `0.0015862959921360015`: seventeen digits, of which
the clock gave four (CUDA events resolve about half a microsecond; the reference steps
take a millisecond or more) and the rounds' own scatter leaves fewer. A profile carries
about 190 such numbers per measured GPU (each timing round of each mode, both reference
blocks), so the digits nobody measured were a quarter of its bytes: written by
each agent, stored in etcd, listed and decoded by the operator, shown by
`kubectl get gnp -o yaml`. Six significant digits keep a step time to the nanosecond and a
gain to a millionth, far inside any measurement's noise
(docs/decisions/0016-published-precision.md).

Only the published form is rounded: the agent decides (gains, intervals, advice) on what it
measured, then writes `ProfileStatus.wire()`, which passes through `published`. Integers,
strings and booleans are left as they are.
"""

from __future__ import annotations

import math
from typing import Any, Final

DIGITS: Final = 6


def rounded(value: float) -> float:
    """`value` to DIGITS significant digits; infinities and NaN unchanged."""
    if value == 0.0 or not math.isfinite(value):
        return value
    return float(f"{value:.{DIGITS}g}")


def published(wire: Any) -> Any:
    """A copy of a JSON-ready value with every float rounded (see module docstring)."""
    if isinstance(wire, float):
        return rounded(wire)
    if isinstance(wire, dict):
        return {key: published(item) for key, item in wire.items()}
    if isinstance(wire, list):
        return [published(item) for item in wire]
    return wire
