"""Reference measurement (b): torch.compile default against the max-autotune modes.

Runs inside the per-GPU worker. The reference block is the GEMM-heavy MLP of
facts/h100.md, `gelu(x @ w1) @ w2` in bf16 with x 4096x4096, w1 4096x16384 and
w2 16384x4096, where max-autotune's GEMM templates could matter and where it was
seen to be *slower* than default on an H100. Each mode compiles from a cold
start: dynamo reset and a fresh Inductor and Triton cache directory, so compile
seconds are what a new pod pays and no mode reuses another's tuning. Step time
is the median of single calls timed with CUDA events after warm-up; each mode's
output is checked against eager's before its time counts.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch._inductor.utils import fresh_cache

from maxtune.agent.failures import Reason, classify, short

BLOCK = "mlp gelu(x@w1)@w2 bf16 x=4096x4096 w1=4096x16384 w2=16384x4096"
REL_ERROR_LIMIT = 3e-2
MODES: tuple[str, ...] = ("default", "max-autotune-no-cudagraphs", "max-autotune")


class _Mlp(torch.nn.Module):
    """Weights as parameters, as in a real model: CUDA-graph modes treat them as static
    (passed as plain inputs, cudagraph trees would copy 256 MB of weights every step)."""

    def __init__(self, w1: torch.Tensor, w2: torch.Tensor) -> None:
        super().__init__()
        self.w1 = torch.nn.Parameter(w1, requires_grad=False)
        self.w2 = torch.nn.Parameter(w2, requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.gelu(x @ self.w1) @ self.w2


def _step_seconds(fn: Callable[[], Any], steps: int) -> float:
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(steps)]  # type: ignore[no-untyped-call]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(steps)]  # type: ignore[no-untyped-call]
    for start, end in zip(starts, ends, strict=True):
        start.record()
        fn()
        end.record()
    torch.cuda.synchronize()
    times = [float(s.elapsed_time(e)) for s, e in zip(starts, ends, strict=True)]
    return statistics.median(times) / 1e3


def _rel_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    out32 = out.float()
    if not bool(torch.isfinite(out32).all()):
        return float("inf")
    return float(torch.linalg.vector_norm(out32 - ref) / torch.linalg.vector_norm(ref))


def measure(
    *,
    modes: Sequence[str] = MODES,
    deadline: float,
    steps: int = 30,
    m: int = 4096,
    k: int = 4096,
    hidden: int = 16384,
) -> dict[str, Any]:
    """CompileMeasurement fields (snake_case); raises only for device-level trouble."""
    gen = torch.Generator(device="cuda").manual_seed(1234)
    x = torch.randn((m, k), device="cuda", dtype=torch.bfloat16, generator=gen)
    w1 = torch.randn((k, hidden), device="cuda", dtype=torch.bfloat16, generator=gen) / k**0.5
    w2 = torch.randn((hidden, k), device="cuda", dtype=torch.bfloat16, generator=gen) / hidden**0.5
    block = f"mlp gelu(x@w1)@w2 bf16 x={m}x{k} w1={k}x{hidden} w2={hidden}x{k}"
    model = _Mlp(w1, w2)
    with torch.no_grad():
        return _measure_modes(model, x, block=block, modes=modes, deadline=deadline, steps=steps)


def _measure_modes(
    model: _Mlp,
    x: torch.Tensor,
    *,
    block: str,
    modes: Sequence[str],
    deadline: float,
    steps: int,
) -> dict[str, Any]:
    for _ in range(3):
        ref = model(x)
    torch.cuda.synchronize()
    ref32 = ref.float()
    eager = _step_seconds(lambda: model(x), steps)

    timings: list[dict[str, Any]] = []
    problems: list[str] = []
    for mode in modes:
        if time.monotonic() > deadline:
            problems.append(f"{mode}: not measured, deadline reached")
            continue
        torch._dynamo.reset()
        try:
            with fresh_cache():
                fn = torch.compile(model, mode=mode, fullgraph=True, dynamic=False)
                began = time.perf_counter()
                fn(x)
                torch.cuda.synchronize()
                compile_s = time.perf_counter() - began
                began = time.perf_counter()
                for _ in range(3):  # CUDA-graph modes record on the first calls after compile
                    out = fn(x)
                torch.cuda.synchronize()
                print(
                    f"maxtune: {mode}: compile {compile_s:.2f}s, "
                    f"3 warm-up calls {time.perf_counter() - began:.2f}s",
                    file=sys.stderr,
                    flush=True,
                )
                error = _rel_error(out, ref32)
                if error > REL_ERROR_LIMIT:
                    problems.append(f"{mode}: wrong result, relative error {error:.3g}")
                    continue
                step = _step_seconds(lambda fn=fn: fn(x), steps)  # type: ignore[misc]
        except Exception as exc:
            reason = classify(type(exc).__name__, str(exc))
            if reason in (Reason.OUT_OF_MEMORY, Reason.DEVICE_LOST, Reason.CUDA_ERROR):
                raise
            problems.append(short(f"{mode}: {type(exc).__name__}: {exc}", 400))
            continue
        finally:
            torch._dynamo.reset()
        timings.append({"mode": mode, "step_seconds": step, "compile_seconds": compile_s})

    default = next((t for t in timings if t["mode"] == "default"), None)
    if default is None:
        return {
            "ok": False,
            "reason": Reason.FAILED.value,
            "message": "default mode could not be measured, so no gain can be: "
            + "; ".join(problems),
            "block": block,
            "eager_step_seconds": eager,
            "modes": [],
        }
    for timing in timings:
        timing["gain"] = default["step_seconds"] / timing["step_seconds"] - 1.0
    return {
        "ok": True,
        "reason": None,
        "message": "; ".join(problems) or None,
        "block": block,
        "eager_step_seconds": eager,
        "modes": timings,
    }
