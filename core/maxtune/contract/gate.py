"""PyTorch's max-autotune GEMM gate (`torch._inductor.utils.is_big_gpu`), by version.

TorchInductor only uses its Triton/CUTLASS GEMM templates on a GPU that passes
`is_big_gpu`; below it, max-autotune silently falls back to cuBLAS. The rule has
moved between releases, and a cluster runs workloads built on several, so the
verdict is a function of the torch version the workload uses, not of the torch
installed next to this code. tests/contract/test_gate_vs_torch.py keeps this
table honest against the installed torch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from importlib import metadata
from typing import Final


class Vendor(StrEnum):
    NVIDIA = "nvidia"
    AMD = "amd"
    INTEL = "intel"


# The newest torch whose source this table was read from (2.14); newer versions
# are assumed to keep its rule until a test against a newer installed torch says otherwise.
NEWEST_KNOWN: Final = (2, 14)
OLDEST_KNOWN: Final = (2, 0)

_VERSION_RE: Final = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?(?:[+.\-a-zA-Z0-9]*)?$")


class TorchVersionError(ValueError):
    """A torch version string this table cannot place."""


def parse_torch_version(text: str) -> tuple[int, int]:
    """`"2.11.0+cu130"` -> `(2, 11)`; only major.minor decide the gate."""
    match = _VERSION_RE.match(text.strip())
    if match is None:
        raise TorchVersionError(
            f"torch version {text!r} is not of the form MAJOR.MINOR[.PATCH] (for example 2.11)"
        )
    major, minor = int(match.group(1)), int(match.group(2))
    if (major, minor) < OLDEST_KNOWN:
        raise TorchVersionError(
            f"torch {major}.{minor} predates torch.compile (2.0); it has no max-autotune"
        )
    return major, minor


@dataclass(frozen=True, slots=True)
class Verdict:
    """The gate's answer for one GPU (or MIG slice) and the rule that gave it."""

    capable: bool
    rule: str
    torch: str
    min_sms: int | None = None


def verdict(
    *,
    sm_count: int | None,
    torch_version: str,
    vendor: Vendor = Vendor.NVIDIA,
    arch_major: int | None = None,
) -> Verdict:
    """Would `is_big_gpu` pass for this device under this torch version?

    `sm_count` is the multiprocessor count (CUs on ROCm, Xe cores on XPU) as the
    device reports it; None means it could not be measured, which never passes.
    """
    major, minor = parse_torch_version(torch_version)
    version = (major, minor)
    tv = f"{major}.{minor}"

    if vendor is Vendor.AMD and version >= (2, 6):
        if arch_major is None:
            return Verdict(
                False, "ROCm rule needs the GPU arch major (gfx major); not measured", tv
            )
        if arch_major < 9 or arch_major == 10:
            return Verdict(False, f"ROCm: arch major {arch_major} is < 9 or == 10", tv)
        return Verdict(True, f"ROCm: arch major {arch_major} (no SM check on ROCm)", tv)

    if vendor is Vendor.INTEL:
        if version < (2, 7):
            return Verdict(False, f"XPU: torch {tv} has no XPU GEMM templates (2.7+)", tv)
        return _sm_rule(sm_count, 16, "XPU: Xe cores", tv)

    if version < (2, 4):
        threshold = 80
        unit = "CUDA cores (counts SMs)" if version == (2, 0) else "SMs"
    else:
        threshold = 68
        unit = "SMs"
    prefix = "ROCm CUs" if vendor is Vendor.AMD else unit
    return _sm_rule(sm_count, threshold, prefix, tv)


def _sm_rule(sm_count: int | None, threshold: int, unit: str, tv: str) -> Verdict:
    if sm_count is None:
        return Verdict(False, f"{unit}: count not measured, never capable", tv, threshold)
    if sm_count < threshold:
        return Verdict(False, f"{unit}: {sm_count} < {threshold}", tv, threshold)
    return Verdict(True, f"{unit}: {sm_count} >= {threshold}", tv, threshold)


def installed_torch_version() -> str | None:
    """The installed torch's version without importing torch (import costs seconds)."""
    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        return None


def default_torch_version() -> str:
    """The installed torch when there is one, else the newest rule in the table."""
    return installed_torch_version() or f"{NEWEST_KNOWN[0]}.{NEWEST_KNOWN[1]}"
