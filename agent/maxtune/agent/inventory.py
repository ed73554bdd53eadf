"""What a backend found on the node: plain, frozen facts, before any verdict.

Backends (NVML, simulation) produce an `Inventory`; the profile builder turns
it into the contract's models with verdicts and summaries. Keeping the two
apart lets the same verdict code run on real and simulated hardware, and lets
the fingerprint hash exactly the facts that should trigger a re-measurement.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

Source = Literal["nvml", "simulation", "none"]


@dataclass(frozen=True, slots=True)
class MigDevice:
    """A MIG compute instance; `profile` is the name it is scheduled under (after mig-)."""

    profile: str
    uuid: str | None
    gpu_instance_id: int | None
    compute_instance_id: int | None
    sm_count: int | None
    memory_mib: int | None = None
    busy_pids: tuple[int, ...] = ()  # compute processes NVML saw on the slice


@dataclass(frozen=True, slots=True)
class GpuDevice:
    index: int
    uuid: str
    product: str
    memory_mib: int
    compute_capability: tuple[int, int]
    sm_count: int | None
    sm_source: str | None = None  # "cuda-driver", "torch", "simulation"; None when unread
    mig_enabled: bool = False
    mig: tuple[MigDevice, ...] = ()
    pci_bus_id: str | None = None
    busy_pids: tuple[int, ...] = ()  # compute processes NVML saw on the GPU

    def with_sm(self, sm_count: int | None, source: str | None) -> GpuDevice:
        return replace(self, sm_count=sm_count, sm_source=source if sm_count else None)


@dataclass(frozen=True, slots=True)
class Inventory:
    """The node's GPUs and driver stack, or why there are none."""

    source: Source
    gpus: tuple[GpuDevice, ...] = ()
    driver_version: str | None = None
    cuda_driver_version: str | None = None
    nvml_version: str | None = None
    simulation: str | None = None
    # Why the inventory is empty or incomplete: (reason, message) pairs for conditions.
    problems: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    @property
    def complete(self) -> bool:
        return not self.problems


def cuda_version_text(encoded: int) -> str:
    """NVML's CUDA driver version 13000 -> "13.0" (major * 1000 + minor * 10)."""
    return f"{encoded // 1000}.{(encoded % 1000) // 10}"


def uuid_text(raw: bytes) -> str:
    """16 raw UUID bytes (CUDA's CUuuid) -> NVML's `GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`."""
    if len(raw) != 16:
        raise ValueError(f"a device UUID has 16 bytes, got {len(raw)}")
    h = raw.hex()
    return f"GPU-{h[0:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"
