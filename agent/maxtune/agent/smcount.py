"""Whole-GPU SM counts from the CUDA driver, keyed by GPU UUID.

NVML does not report a whole GPU's multiprocessor count (nvmlDeviceGetAttributes
answers NotSupported outside MIG; seen on an H100), so it comes from the CUDA
driver attribute CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT: through cuda-bindings
when installed, else through torch. CUDA numbers devices in its own order
(fastest first unless CUDA_DEVICE_ORDER=PCI_BUS_ID), so results are keyed by
UUID and matched to NVML's devices that way, never by index.

The agent reads them in a short-lived child (`python -m maxtune.agent.smcount`):
initialising the CUDA driver in the long-lived daemon would cost it memory for
its whole life, and a hung driver call there would hang the agent; a child is
killed at its deadline and the profile says why.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

from maxtune.agent.inventory import uuid_text

DEFAULT_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class SmCounts:
    counts: dict[str, int]
    source: str | None  # "cuda-driver" or "torch"
    error: str | None = None


SmCountReader = Callable[[], SmCounts]


def _via_cuda_bindings() -> dict[str, int]:
    from cuda.bindings import driver as cu  # type: ignore[import-untyped]  # noqa: PLC0415

    def check(result: tuple[object, ...]) -> tuple[object, ...]:
        err = result[0]
        if err != cu.CUresult.CUDA_SUCCESS:
            _, name = cu.cuGetErrorName(err)
            raise RuntimeError(f"CUDA driver call failed: {name!r}")
        return result

    check(cu.cuInit(0))
    (_, count) = check(cu.cuDeviceGetCount())
    counts: dict[str, int] = {}
    attr = cu.CUdevice_attribute.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT
    for ordinal in range(int(count)):  # type: ignore[call-overload]
        (_, device) = check(cu.cuDeviceGet(ordinal))
        (_, sms) = check(cu.cuDeviceGetAttribute(attr, device))
        (_, uuid) = check(cu.cuDeviceGetUuid(device))
        counts[uuid_text(bytes(uuid.bytes))] = int(sms)  # type: ignore[attr-defined, call-overload]
    return counts


def _via_torch() -> dict[str, int]:
    import torch  # noqa: PLC0415

    counts: dict[str, int] = {}
    for ordinal in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(ordinal)
        counts[f"GPU-{props.uuid}"] = int(props.multi_processor_count)
    return counts


def read_in_process() -> SmCounts:
    """Read here and now (the child runs this)."""
    try:
        import cuda.bindings.driver  # type: ignore[import-untyped]  # noqa: F401, PLC0415
    except ImportError:
        pass
    else:
        return SmCounts(_via_cuda_bindings(), "cuda-driver")
    try:
        import torch  # noqa: F401, PLC0415
    except ImportError:
        return SmCounts(
            {}, None, "neither cuda-bindings nor torch is installed: SM counts cannot be read"
        )
    return SmCounts(_via_torch(), "torch")


def read(timeout_s: float = DEFAULT_TIMEOUT_S, python: str = sys.executable) -> SmCounts:
    """Read in a child process; an error or a timeout comes back as `error`, never raised."""
    env = dict(os.environ)
    env.pop("CUDA_VISIBLE_DEVICES", None)  # every GPU of the node, whatever our own env says
    try:
        done = subprocess.run(
            [python, "-m", "maxtune.agent.smcount"],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return SmCounts({}, None, f"reading SM counts took longer than {timeout_s:.0f}s")
    if done.returncode != 0:
        tail = " ".join(done.stderr.strip().splitlines()[-3:])
        return SmCounts({}, None, f"reading SM counts failed (exit {done.returncode}): {tail}")
    try:
        data = json.loads(done.stdout.strip().splitlines()[-1])
        return SmCounts(
            {str(k): int(v) for k, v in data["counts"].items()}, data["source"], data["error"]
        )
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        return SmCounts({}, None, f"unreadable answer from the SM-count reader: {exc}")


def main() -> int:
    try:
        result = read_in_process()
    except Exception as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"counts": result.counts, "source": result.source, "error": result.error}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
