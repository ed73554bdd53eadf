"""A stand-in for the `pynvml` module, handed to the NVML backend at its seam.

It answers the calls the backend makes the way nvidia-ml-py does (same names,
same return shapes, errors as subclasses of `NVMLError` named like the real
ones), so the tests exercise our handling of NVML: missing library, lost GPU,
MIG slots, not-supported answers. It is not a stand-in for Kubernetes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import ModuleType, SimpleNamespace
from typing import Any


class NVMLError(Exception):
    pass


class NVMLError_LibraryNotFound(NVMLError):
    pass


class NVMLError_DriverNotLoaded(NVMLError):
    pass


class NVMLError_GpuIsLost(NVMLError):
    pass


class NVMLError_NotSupported(NVMLError):
    pass


class NVMLError_NotFound(NVMLError):
    pass


@dataclass
class FakeMig:
    uuid: str
    gi_slices: int
    ci_slices: int
    memory_mib: int
    sms: int
    gi_id: int
    ci_id: int = 0
    pids: tuple[int, ...] = ()


@dataclass
class FakeGpu:
    uuid: str
    name: str = "NVIDIA H100 80GB HBM3"
    memory_bytes: int = 85520809984
    cc: tuple[int, int] = (9, 0)
    mig_mode: int | None = 0  # None: MIG not supported on this GPU
    mig: dict[int, FakeMig] = field(default_factory=dict)  # slot -> device
    max_mig: int = 7
    lost: bool = False
    pids: tuple[int, ...] = ()


def make_nvml(
    gpus: list[FakeGpu],
    *,
    init_error: type[Exception] | None = None,
    driver: str = "580.159.04",
    cuda: int = 13000,
) -> ModuleType:
    module = ModuleType("pynvml")
    state: dict[str, Any] = {"init": 0, "shutdown": 0}
    module.__dict__.update(NVMLError=NVMLError, NVML_DEVICE_MIG_ENABLE=1, state=state)
    handles: dict[int, Any] = {}

    def init() -> None:
        if init_error is not None:
            raise init_error("NVML Shared Library Not Found")
        state["init"] += 1

    def gpu_of(handle: Any) -> FakeGpu:
        gpu: FakeGpu = handle.gpu
        if gpu.lost:
            raise NVMLError_GpuIsLost("GPU is lost")
        return gpu

    def by_index(index: int) -> Any:
        if gpus[index].lost:
            raise NVMLError_GpuIsLost("GPU is lost")
        return handles.setdefault(index, SimpleNamespace(gpu=gpus[index], mig=None))

    def by_uuid(uuid: str) -> Any:
        for index, gpu in enumerate(gpus):
            if gpu.uuid == uuid:
                return by_index(index)
            for m in gpu.mig.values():
                if m.uuid == uuid:
                    return SimpleNamespace(gpu=gpu, mig=m)
        raise NVMLError_NotFound("Not Found")

    def processes(handle: Any) -> list[Any]:
        pids = handle.mig.pids if handle.mig is not None else gpu_of(handle).pids
        return [SimpleNamespace(pid=p, usedGpuMemory=1 << 20) for p in pids]

    def uuid_of(handle: Any) -> str:
        return handle.mig.uuid if handle.mig is not None else gpu_of(handle).uuid

    def mig_mode(handle: Any) -> tuple[int, int]:
        gpu = gpu_of(handle)
        if gpu.mig_mode is None:
            raise NVMLError_NotSupported("Not Supported")
        return gpu.mig_mode, gpu.mig_mode

    def mig_by_index(handle: Any, slot: int) -> Any:
        gpu = gpu_of(handle)
        if slot not in gpu.mig:
            raise NVMLError_NotFound("Not Found")
        return SimpleNamespace(gpu=gpu, mig=gpu.mig[slot])

    def attributes(handle: Any) -> Any:
        if handle.mig is None:
            raise NVMLError_NotSupported("Not Supported")  # as on a whole H100
        m: FakeMig = handle.mig
        return SimpleNamespace(
            multiprocessorCount=m.sms,
            gpuInstanceSliceCount=m.gi_slices,
            computeInstanceSliceCount=m.ci_slices,
            memorySizeMB=m.memory_mib,
        )

    def no_rights(*_: Any) -> Any:
        raise NVMLError("Insufficient Permissions")

    functions: dict[str, Any] = {
        "nvmlInit": init,
        "nvmlShutdown": lambda: state.__setitem__("shutdown", state["shutdown"] + 1),
        "nvmlSystemGetDriverVersion": lambda: driver,
        "nvmlSystemGetCudaDriverVersion_v2": lambda: cuda,
        "nvmlSystemGetNVMLVersion": lambda: "13." + driver,
        "nvmlDeviceGetCount": lambda: len(gpus),
        "nvmlDeviceGetHandleByIndex": by_index,
        "nvmlDeviceGetHandleByUUID": by_uuid,
        "nvmlDeviceGetUUID": uuid_of,
        "nvmlDeviceGetName": lambda h: gpu_of(h).name,
        "nvmlDeviceGetMemoryInfo": lambda h: SimpleNamespace(total=gpu_of(h).memory_bytes),
        "nvmlDeviceGetCudaComputeCapability": lambda h: gpu_of(h).cc,
        "nvmlDeviceGetPciInfo": lambda h: SimpleNamespace(busId=b"00000000:00:06.0"),
        "nvmlDeviceGetMigMode": mig_mode,
        "nvmlDeviceGetMaxMigDeviceCount": lambda h: gpu_of(h).max_mig,
        "nvmlDeviceGetMigDeviceHandleByIndex": mig_by_index,
        "nvmlDeviceGetAttributes": attributes,
        "nvmlDeviceGetGpuInstanceId": lambda h: h.mig.gi_id,
        "nvmlDeviceGetComputeInstanceId": lambda h: h.mig.ci_id,
        "nvmlDeviceGetGpuInstanceById": no_rights,
        "nvmlGpuInstanceGetInfo": no_rights,
        "nvmlDeviceGetComputeRunningProcesses": processes,
    }
    for name, function in functions.items():
        setattr(module, name, function)
    return module
