"""Kubernetes resource quantities, as far as GPU counts need them.

The webhook runs before the API server validates a pod, so it sees whatever a
client sent: `"1"`, `2`, `"1k"`, `"500m"`, `"1e3"`, `"two"`. Extended resources
must end up whole numbers, but admission must not crash on the rest; anything
that is not a quantity parses to None and the caller decides what that means.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation
from typing import Final

_QUANTITY: Final = re.compile(
    r"^(?P<num>[+-]?(?:\d+\.?\d*|\.\d+))"
    r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?\d{1,3})?$"
)
_BINARY: Final = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL: Final = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}
# Counts beyond this are nonsense for GPUs; clamp so arithmetic stays cheap.
MAX_COUNT: Final = 1 << 31


def parse_count(value: object) -> int | None:
    """A quantity rounded up to a whole count, or None when it is not a quantity.

    Rounding up mirrors how the API server treats extended resources: a
    fractional GPU is invalid, but "at least one" is the safe reading while the
    object is still unvalidated.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return max(0, min(value, MAX_COUNT))
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return max(0, min(math.ceil(value), MAX_COUNT))
    if not isinstance(value, str) or len(value) > 64:
        return None
    match = _QUANTITY.match(value.strip())
    if match is None:
        return None
    try:
        number = Decimal(match.group("num"))
    except InvalidOperation:  # pragma: no cover - the regex only admits decimals
        return None
    suffix = match.group("suffix") or ""
    if suffix in _BINARY:
        number *= _BINARY[suffix]
    elif suffix in _DECIMAL:
        number *= _DECIMAL[suffix]
    else:  # exponent form, e.g. 1e3
        exponent = int(suffix[1:])
        if exponent > 18:
            return MAX_COUNT
        number *= Decimal(10) ** exponent
    if number <= 0:
        return 0
    return min(math.ceil(number), MAX_COUNT)
