"""GPU counts from Kubernetes resource quantities, on top of `kubernetes.utils.parse_quantity`.

The webhook runs before the API server validates a pod, so it sees whatever a
client sent: `"1"`, `2`, `"1k"`, `"500m"`, `"1e3"`, `"two"`, `"1e999999999"`. The
library parses the quantity; this bounds what it returns (no NaN, no infinity,
no million-digit integer from a huge exponent) and rounds up to a whole count.
"""

from __future__ import annotations

import math
from decimal import Decimal, DecimalException
from typing import Final

from kubernetes.utils import parse_quantity

# Counts beyond this are nonsense for GPUs; clamp so arithmetic stays cheap.
MAX_COUNT: Final = 1 << 31


def parse_count(value: object) -> int | None:
    """A quantity rounded up to a whole count, or None when it is not a quantity.

    Rounding up mirrors how the API server treats extended resources: a
    fractional GPU is invalid, but "at least one" is the safe reading while the
    object is still unvalidated.
    """
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    if isinstance(value, str) and (len(value) > 64 or value != value.strip()):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, int) or (isinstance(value, str) and value.isascii() and value.isdigit()):
        return max(0, min(int(value), MAX_COUNT))  # "1", 8: what nearly every pod sends
    try:
        number: Decimal = parse_quantity(value)  # type: ignore[no-untyped-call]
        if not number.is_finite():
            return None
        if number <= 0:
            return 0
        if number >= MAX_COUNT:
            return MAX_COUNT
        return math.ceil(number)
    except (ValueError, DecimalException):
        return None


__all__ = ["MAX_COUNT", "parse_count"]
