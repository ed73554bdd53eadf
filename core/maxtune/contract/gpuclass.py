"""GPU class keys: a stable, label-safe name for "this kind of GPU".

Inductor's GEMM timing cache and FX graph cache are keyed by GPU name, and the
gate by SM count, so a class is product + SM count (+ MIG profile): two devices
of one class share settings and caches; devices of different classes must not.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import Final

_LABEL_MAX: Final = 63
_UNSAFE = re.compile(r"[^a-z0-9.]+")


def _slug(text: str) -> str:
    return _UNSAFE.sub("-", text.lower()).strip("-.")


def _fit(key: str) -> str:
    """Label values are at most 63 characters; long keys keep a hash to stay unique."""
    if len(key) <= _LABEL_MAX:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()[:8]
    return f"{key[: _LABEL_MAX - 9].rstrip('-.')}-{digest}"


def gpu_class(product: str, sm_count: int | None, mig_profile: str | None = None) -> str:
    """`("NVIDIA H100 80GB HBM3", 132)` -> `nvidia-h100-80gb-hbm3-132sm`."""
    parts = [_slug(product) or "unknown-gpu"]
    if mig_profile:
        parts.append("mig-" + _slug(mig_profile.replace("+", "-")))
    parts.append(f"{sm_count}sm" if sm_count is not None else "unmeasured")
    return _fit("-".join(parts))


def mixed_class(classes: Iterable[str]) -> str:
    """One key for a node whose GPUs differ, so it never shares a cache with a uniform node."""
    unique = sorted(set(classes))
    if len(unique) == 1:
        return unique[0]
    digest = hashlib.sha256(",".join(unique).encode()).hexdigest()[:10]
    return f"mixed-{digest}"
