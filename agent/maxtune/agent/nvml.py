"""Inventory through NVML (nvidia-ml-py's `pynvml`): GPUs, driver stack, MIG instances.

The NVML module is a constructor argument, so tests hand in a stand-in that
raises the same error classes the real library raises (library missing, driver
not loaded, GPU lost) and check this module's handling; production passes none
and gets the real `pynvml`. Whatever NVML cannot answer becomes a (reason,
message) problem on the inventory, never an exception out of `inventory()`, and
never a guessed value: a GPU NVML cannot read is left out and named.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import threading
from types import ModuleType
from typing import Any

from maxtune.agent.inventory import GpuDevice, Inventory, MigDevice, cuda_version_text

# GPU-instance profile ids with attributes, as go-nvlib names them (+me, +me.all, +gfx).
_ATTRIBUTE_PROFILES = {
    "NVML_GPU_INSTANCE_PROFILE_1_SLICE_REV1": "me",
    "NVML_GPU_INSTANCE_PROFILE_2_SLICE_REV1": "me",
    "NVML_GPU_INSTANCE_PROFILE_1_SLICE_ALL_ME": "me.all",
    "NVML_GPU_INSTANCE_PROFILE_2_SLICE_ALL_ME": "me.all",
    "NVML_GPU_INSTANCE_PROFILE_1_SLICE_GFX": "gfx",
    "NVML_GPU_INSTANCE_PROFILE_2_SLICE_GFX": "gfx",
    "NVML_GPU_INSTANCE_PROFILE_4_SLICE_GFX": "gfx",
}

REASON_UNAVAILABLE = "NVMLUnavailable"
REASON_LOST = "DeviceLost"
REASON_ERROR = "NVMLError"


def mig_memory_gb(device_total_bytes: int, mig_memory_mib: int) -> int:
    """The `Ngb` of a MIG profile name, computed as NVIDIA's device plugin does.

    The slice's share of the board, rounded up to eighths, times the board's
    memory in whole GiB (so an H100's 1/8 slice is "10gb", not 9.5).
    """
    one_mib, one_gib = 1024 * 1024, 1024 * 1024 * 1024
    share = (mig_memory_mib * one_mib) / device_total_bytes
    share = math.ceil(share * 8) / 8
    total_gb = (device_total_bytes + one_gib - 1) // one_gib
    return int(share * total_gb + 0.5)  # half away from zero, as Go's math.Round


def mig_profile_name(
    gi_slices: int, ci_slices: int, memory_gb: int, attribute: str | None = None
) -> str:
    """`1g.10gb`, `1c.2g.20gb`, `1g.10gb+me`: the name after `nvidia.com/mig-`."""
    base = (
        f"{gi_slices}g.{memory_gb}gb"
        if ci_slices == gi_slices
        else (f"{ci_slices}c.{gi_slices}g.{memory_gb}gb")
    )
    return f"{base}+{attribute}" if attribute else base


class NvmlBackendError(Exception):
    pass


class NvmlInventory:
    """Reads the node through NVML; one instance per agent, NVML initialised once."""

    def __init__(self, nvml: ModuleType | None = None) -> None:
        self._given = nvml
        self._nvml: ModuleType | None = None
        self._lock = threading.Lock()

    # -- NVML life cycle ---------------------------------------------------

    def _module(self) -> ModuleType:
        if self._given is not None:
            return self._given
        return importlib.import_module("pynvml")

    def _ensure(self) -> ModuleType:
        if self._nvml is None:
            module = self._module()
            module.nvmlInit()
            self._nvml = module
        return self._nvml

    def close(self) -> None:
        with self._lock:
            if self._nvml is not None:
                with contextlib.suppress(Exception):  # shutting down a broken library
                    self._nvml.nvmlShutdown()
                self._nvml = None

    # -- reading -----------------------------------------------------------

    def inventory(self) -> Inventory:
        with self._lock:
            try:
                nvml = self._ensure()
            except ImportError as exc:
                return _unavailable(f"nvidia-ml-py (pynvml) is not installed: {exc}")
            except Exception as exc:
                return _unavailable(f"NVML did not initialise: {_describe(exc)}")
            try:
                return self._read(nvml)
            except Exception as exc:
                # A system-level call failed (driver unloaded under us): start over next time.
                self._nvml = None
                return Inventory(
                    source="none", problems=((_reason(exc), f"NVML failed: {_describe(exc)}"),)
                )

    def busy_pids(self, uuid: str) -> tuple[int, ...]:
        """Compute processes on the GPU or MIG slice (by its MIG- UUID) right now, re-read
        just before a measurement."""
        with self._lock:
            nvml = self._ensure()
            handle = nvml.nvmlDeviceGetHandleByUUID(uuid)
            return tuple(int(p.pid) for p in nvml.nvmlDeviceGetComputeRunningProcesses(handle))

    def _read(self, nvml: ModuleType) -> Inventory:
        driver = _text(nvml.nvmlSystemGetDriverVersion())
        cuda = cuda_version_text(int(nvml.nvmlSystemGetCudaDriverVersion_v2()))
        nvml_version = _text(nvml.nvmlSystemGetNVMLVersion())
        problems: list[tuple[str, str]] = []
        gpus: list[GpuDevice] = []
        for index in range(int(nvml.nvmlDeviceGetCount())):
            try:
                gpus.append(self._gpu(nvml, index, problems))
            except Exception as exc:
                problems.append((_reason(exc), f"GPU {index}: {_describe(exc)}; left out"))
        return Inventory(
            source="nvml",
            gpus=tuple(gpus),
            driver_version=driver,
            cuda_driver_version=cuda,
            nvml_version=nvml_version,
            problems=tuple(problems),
        )

    def _gpu(self, nvml: ModuleType, index: int, problems: list[tuple[str, str]]) -> GpuDevice:
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        uuid = _text(nvml.nvmlDeviceGetUUID(handle))
        total = int(nvml.nvmlDeviceGetMemoryInfo(handle).total)
        major, minor = nvml.nvmlDeviceGetCudaComputeCapability(handle)
        try:
            pci: str | None = _text(nvml.nvmlDeviceGetPciInfo(handle).busId)
        except nvml.NVMLError:
            pci = None
        mig_enabled = False
        try:
            current, _pending = nvml.nvmlDeviceGetMigMode(handle)
            mig_enabled = int(current) == int(getattr(nvml, "NVML_DEVICE_MIG_ENABLE", 1))
        except nvml.NVMLError as exc:
            if not _is(exc, "NotSupported"):
                raise
        mig = self._mig(nvml, handle, index, total, problems) if mig_enabled else ()
        try:
            busy = tuple(int(p.pid) for p in nvml.nvmlDeviceGetComputeRunningProcesses(handle))
        except nvml.NVMLError:
            busy = ()
        return GpuDevice(
            index=index,
            uuid=uuid,
            product=_text(nvml.nvmlDeviceGetName(handle)),
            memory_mib=total // (1024 * 1024),
            compute_capability=(int(major), int(minor)),
            sm_count=None,
            mig_enabled=mig_enabled,
            mig=mig,
            pci_bus_id=pci,
            busy_pids=busy,
        )

    def _mig(
        self,
        nvml: ModuleType,
        parent: Any,
        index: int,
        total_bytes: int,
        problems: list[tuple[str, str]],
    ) -> tuple[MigDevice, ...]:
        devices: list[MigDevice] = []
        for slot in range(int(nvml.nvmlDeviceGetMaxMigDeviceCount(parent))):
            try:
                handle = nvml.nvmlDeviceGetMigDeviceHandleByIndex(parent, slot)
            except nvml.NVMLError as exc:
                if _is(exc, "NotFound"):
                    continue  # an empty slot
                raise
            try:
                devices.append(self._mig_device(nvml, parent, handle, total_bytes))
            except nvml.NVMLError as exc:
                problems.append(
                    (_reason(exc), f"GPU {index} MIG slot {slot}: {_describe(exc)}; left out")
                )
        return tuple(devices)

    def _mig_device(
        self, nvml: ModuleType, parent: Any, handle: Any, total_bytes: int
    ) -> MigDevice:
        attrs = nvml.nvmlDeviceGetAttributes(handle)
        gi_id = int(nvml.nvmlDeviceGetGpuInstanceId(handle))
        ci_id = int(nvml.nvmlDeviceGetComputeInstanceId(handle))
        profile = mig_profile_name(
            int(attrs.gpuInstanceSliceCount),
            int(attrs.computeInstanceSliceCount),
            mig_memory_gb(total_bytes, int(attrs.memorySizeMB)),
            self._attribute(nvml, parent, gi_id),
        )
        try:
            busy = tuple(int(p.pid) for p in nvml.nvmlDeviceGetComputeRunningProcesses(handle))
        except nvml.NVMLError:
            busy = ()
        return MigDevice(
            profile=profile,
            uuid=_text(nvml.nvmlDeviceGetUUID(handle)),
            gpu_instance_id=gi_id,
            compute_instance_id=ci_id,
            sm_count=int(attrs.multiprocessorCount) or None,
            memory_mib=int(attrs.memorySizeMB),
            busy_pids=busy,
        )

    @staticmethod
    def _attribute(nvml: ModuleType, parent: Any, gi_id: int) -> str | None:
        """+me / +gfx from the GPU instance's profile id; None when unreadable (needs rights)."""
        try:
            info = nvml.nvmlGpuInstanceGetInfo(nvml.nvmlDeviceGetGpuInstanceById(parent, gi_id))
        except Exception:
            return None
        for name, attribute in _ATTRIBUTE_PROFILES.items():
            value = getattr(nvml, name, None)
            if value is not None and int(info.profileId) == int(value):
                return attribute
        return None


def _unavailable(message: str) -> Inventory:
    return Inventory(source="none", problems=((REASON_UNAVAILABLE, message),))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _is(exc: BaseException, suffix: str) -> bool:
    return type(exc).__name__.endswith(suffix)


def _reason(exc: BaseException) -> str:
    if _is(exc, "GpuIsLost") or _is(exc, "GpuNotFound"):
        return REASON_LOST
    if _is(exc, "LibraryNotFound") or _is(exc, "DriverNotLoaded"):
        return REASON_UNAVAILABLE
    return REASON_ERROR


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
