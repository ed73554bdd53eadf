"""What the agent measures: every whole GPU, and every MIG slice that passes the gate.

A MIG slice runs CUDA work like a small GPU when a process is given its UUID
(`CUDA_VISIBLE_DEVICES=MIG-<uuid>`), so a slice that passes `is_big_gpu` (a 7g slice has
all of an H100's 132 SMs) is measured on itself, exactly as a whole GPU is. Slices below
the gate are not measured: max-autotune's GEMM templates are off on them whatever the
timings say, so they are never capable.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from dataclasses import dataclass

from maxtune.agent.inventory import GpuDevice, Inventory
from maxtune.contract import gate


@dataclass(frozen=True, slots=True)
class Target:
    """One device a measurement worker is started on."""

    uuid: str  # what CUDA_VISIBLE_DEVICES gets: GPU-... or MIG-...
    label: str  # "GPU 0", "GPU 0 MIG 7g.80gb (GI 1)"
    sm_count: int | None
    parent_uuid: str | None = None  # set for a MIG slice
    busy_pids: tuple[int, ...] = ()

    @property
    def is_mig(self) -> bool:
        return self.parent_uuid is not None


def _mig_measured(gpu: GpuDevice, torch_version: str) -> list[Target]:
    found = []
    for m in gpu.mig:
        if m.uuid is None or m.sm_count is None:
            continue  # a slice CUDA cannot be pointed at, or of unknown size: not measured
        if not gate.verdict(sm_count=m.sm_count, torch_version=torch_version).capable:
            continue
        found.append(
            Target(
                uuid=m.uuid,
                label=f"GPU {gpu.index} MIG {m.profile} (GI {m.gpu_instance_id})",
                sm_count=m.sm_count,
                parent_uuid=gpu.uuid,
                busy_pids=m.busy_pids,
            )
        )
    return found


def targets(inventory: Inventory, torch_version: str) -> list[Target]:
    """Whole GPUs and gate-passing MIG slices, in inventory order."""
    found: list[Target] = []
    for gpu in inventory.gpus:
        if gpu.mig_enabled:
            found += _mig_measured(gpu, torch_version)
        else:
            found.append(
                Target(
                    uuid=gpu.uuid,
                    label=f"GPU {gpu.index}",
                    sm_count=gpu.sm_count,
                    busy_pids=gpu.busy_pids,
                )
            )
    return found


def restrict(inventory: Inventory, uuids: Collection[str]) -> Inventory:
    """The inventory cut down to the devices in `uuids`: whole GPUs by their UUID, MIG GPUs
    keeping only the listed slices (and dropped when none is left)."""
    gpus = []
    for gpu in inventory.gpus:
        if not gpu.mig_enabled:
            if gpu.uuid in uuids:
                gpus.append(gpu)
            continue
        kept = tuple(m for m in gpu.mig if m.uuid in uuids)
        if kept:
            gpus.append(dataclasses.replace(gpu, mig=kept))
    return dataclasses.replace(inventory, gpus=tuple(gpus))
