"""What went wrong in a measurement, as a condition reason a person can act on.

Measurements run in a subprocess per GPU; whatever breaks there (a Triton
compile, an allocation, the device itself) comes back as an exception's type
and message, or as a dead process. This module turns both into one of a small
set of reasons, so the profile's conditions and the metrics stay bounded and a
failure never reads as success. No torch import: the parent uses it too.
"""

from __future__ import annotations

import re
from enum import StrEnum


class Reason(StrEnum):
    """Condition reasons for a failed or skipped measurement."""

    TRITON_COMPILE_FAILED = "TritonCompileFailed"
    OUT_OF_MEMORY = "OutOfMemory"
    TIMEOUT = "Timeout"
    DEVICE_LOST = "DeviceLost"
    GPU_BUSY = "GPUBusy"
    NOT_SIMULATED = "NotSimulated"
    WRONG_RESULT = "WrongResult"
    CUDA_ERROR = "CudaError"
    WORKER_CRASHED = "WorkerCrashed"
    MISSING_SOFTWARE = "MissingSoftware"
    NOT_SUPPORTED = "NotSupported"
    FAILED = "MeasurementFailed"


# Message fragments of CUDA errors after which the device is gone for this
# process (and usually for every process until the node is repaired).
_LOST = re.compile(
    r"fallen off the bus|gpu is lost|gpu lost|no cuda-capable device|device.*(not|no longer) "
    r"(available|present)|cuda_error_device_unavailable|ecc error|uncorrectable|"
    r"cuda_error_launch_failed|unspecified launch failure|cuda_error_unknown|unknown error",
    re.IGNORECASE,
)
_OOM = re.compile(r"out of memory|cuda_error_out_of_memory|outofmemory", re.IGNORECASE)
_TRITON = re.compile(r"CompilationError|OutOfResources|PTXASError|ptxas|MLIR|triton", re.IGNORECASE)


def classify(exc_type: str, message: str) -> Reason:
    """Map an exception (by class name and message) to a reason."""
    text = f"{exc_type}: {message}"
    if "OutOfMemoryError" in exc_type or _OOM.search(text):
        return Reason.OUT_OF_MEMORY
    if _LOST.search(text):
        return Reason.DEVICE_LOST
    if exc_type in {"CompilationError", "OutOfResources", "PTXASError"} or _TRITON.search(exc_type):
        return Reason.TRITON_COMPILE_FAILED
    if exc_type in {"ModuleNotFoundError", "ImportError"}:
        return Reason.MISSING_SOFTWARE
    if "CUDA" in message or "cuda" in exc_type.lower() or "AcceleratorError" in exc_type:
        return Reason.CUDA_ERROR
    return Reason.FAILED


def exit_reason(returncode: int | None, stderr_tail: str) -> Reason:
    """Why a worker process ended without reporting every phase."""
    if returncode is None:
        return Reason.TIMEOUT
    if _OOM.search(stderr_tail):
        return Reason.OUT_OF_MEMORY
    if _LOST.search(stderr_tail):
        return Reason.DEVICE_LOST
    if returncode < 0 and -returncode == 9:  # SIGKILL from outside: the kernel's OOM killer
        return Reason.OUT_OF_MEMORY
    return Reason.WORKER_CRASHED


def short(message: str, limit: int = 600) -> str:
    """One line, bounded: messages go into a profile condition that a person reads."""
    flat = " ".join(message.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
