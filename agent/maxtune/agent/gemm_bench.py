"""Reference measurement (a): autotune the project's Triton GEMM and hold it against cuBLAS.

Runs inside the per-GPU worker process (torch and triton imported). For each
size the search compiles every configuration (in parallel threads: Triton's
compile spends most of its time outside the interpreter), checks each one's
output against an fp32 product of the same inputs, times the correct ones
briefly, then times the winner and cuBLAS (`a @ b`, same inputs, same harness)
properly: L2 flushed before each repetition by `triton.testing.do_bench`, after
half a second of warm-up work, in six alternating rounds (A-B, B-A, ...) whose
medians are compared, because a power-limited GPU slows as it heats and the one
measured second would otherwise always lose. The winner is
finally checked again on fresh random inputs with a poisoned output, so a
configuration that skips tiles or reads stale memory cannot win.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import torch
import triton
from triton.runtime._async_compile import AsyncCompileMode

from maxtune.agent import gemm_kernel
from maxtune.agent.failures import Reason, classify, short
from maxtune.agent.gemm_configs import GemmConfig

# bf16 output of a K-long fp32 accumulation lands near 2e-3 against fp32
# (facts/h100.md: 1.7e-3 at 4096); a wrong tile or a stale read lands near 1.
REL_ERROR_LIMIT = 2e-2
# Final timing: settle the clocks, then ROUNDS alternating medians of each implementation.
SPIN_SECONDS = 0.5
ROUNDS = 6


@dataclass
class Trial:
    config: GemmConfig
    seconds: float | None = None
    rel_error: float | None = None
    error: str | None = None
    reason: Reason | None = None


@dataclass
class SizeResult:
    size: int
    ok: bool
    reason: Reason | None = None
    message: str | None = None
    best: GemmConfig | None = None
    triton_seconds: float | None = None
    cublas_seconds: float | None = None
    rel_error: float | None = None
    autotune_seconds: float = 0.0
    trials: list[Trial] = field(default_factory=list)

    def flops(self, seconds: float | None) -> float:
        return 2.0 * self.size**3 / seconds if seconds else 0.0

    def wire(self) -> dict[str, Any]:
        """The GemmMeasurement fields (snake_case; the parent builds the model)."""
        triton_flops = self.flops(self.triton_seconds)
        cublas_flops = self.flops(self.cublas_seconds)
        return {
            "ok": self.ok,
            "reason": self.reason.value if self.reason else None,
            "message": self.message,
            "size": self.size,
            "dtype": "bfloat16",
            "best_config": self.best.label() if self.best else None,
            "configs_tried": len(self.trials),
            "triton_flops": triton_flops,
            "cublas_flops": cublas_flops,
            "ratio_to_cublas": triton_flops / cublas_flops if cublas_flops else 0.0,
            "autotune_seconds": self.autotune_seconds,
            "rel_error": self.rel_error,
        }

    def trial_table(self) -> list[dict[str, Any]]:
        return [
            {
                "config": t.config.label(),
                "tflops": self.flops(t.seconds) / 1e12 if t.seconds else None,
                "rel_error": t.rel_error,
                "error": t.error,
            }
            for t in self.trials
        ]


def rel_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """Relative Frobenius error; NaN or inf anywhere (an unwritten, poisoned cell) gives inf."""
    out32 = out.float()
    if not bool(torch.isfinite(out32).all()):
        return math.inf
    return float(torch.linalg.vector_norm(out32 - ref) / torch.linalg.vector_norm(ref))


def _random(size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator(device="cuda").manual_seed(seed)
    a = torch.randn((size, size), device="cuda", dtype=torch.bfloat16, generator=gen)
    b = torch.randn((size, size), device="cuda", dtype=torch.bfloat16, generator=gen)
    return a, b


def _reference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The product in fp32 arithmetic (TF32 off), from the same bf16 inputs."""
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        return a.float() @ b.float()
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous


def _bench(fn: Callable[[], None], *, warmup_ms: float, rep_ms: float) -> float:
    """Median seconds per call; do_bench flushes L2 before each repetition."""
    ms = triton.testing.do_bench(fn, warmup=warmup_ms, rep=rep_ms, return_mode="median")
    return float(ms) / 1e3


def precompile(
    configs: Sequence[GemmConfig], sizes: Sequence[int], num_sms: int, threads: int
) -> dict[GemmConfig, str]:
    """Compile every configuration for every size in parallel; the errors of those that failed.

    Persistent configurations compile once for all sizes (same constants);
    one-tile-per-program ones once per size (the grid is a compile-time constant).
    """
    errors: dict[GemmConfig, str] = {}
    futures: list[tuple[GemmConfig, Any]] = []
    with (
        ThreadPoolExecutor(max_workers=max(1, threads)) as pool,
        AsyncCompileMode(pool, ignore_errors=True),
    ):
        for size in sizes:
            # Descriptors need real, aligned storage (uninitialised is fine: nothing runs).
            a = torch.empty((size, size), device="cuda", dtype=torch.bfloat16)
            for cfg in configs:
                try:
                    futures.append((cfg, gemm_kernel.compile_only(a, a, a, cfg, num_sms)))
                except Exception as exc:  # a config the front end rejects
                    errors[cfg] = f"{type(exc).__name__}: {exc}"
    for cfg, fut in futures:
        future = getattr(fut, "future", None)
        failed = future.exception() if future is not None else None
        if failed is not None:
            errors[cfg] = f"{type(failed).__name__}: {failed}"
    return errors


def _trial(
    trial: Trial,
    *,
    a: torch.Tensor,
    b: torch.Tensor,
    c: torch.Tensor,
    ref: torch.Tensor,
    sms: int,
) -> None:
    """Check one configuration on poisoned output, then time it briefly."""
    try:
        fn = gemm_kernel.launcher(a, b, c, trial.config, sms)
        c.fill_(math.nan)
        fn()
        torch.cuda.synchronize()
        trial.rel_error = rel_error(c, ref)
        if trial.rel_error > REL_ERROR_LIMIT:
            trial.error = f"wrong result: relative error {trial.rel_error:.3g}"
            trial.reason = Reason.WRONG_RESULT
            return
        trial.seconds = _bench(fn, warmup_ms=5, rep_ms=30)
    except Exception as exc:
        name = type(exc).__name__
        trial.reason = classify(name, str(exc))
        trial.error = short(f"{name}: {exc}", 300)
        if trial.reason in (Reason.OUT_OF_MEMORY, Reason.DEVICE_LOST, Reason.CUDA_ERROR):
            raise  # the device is in trouble; the worker reports it for the whole phase


def _confirm(result: SizeResult, best: GemmConfig, seed: int, sms: int) -> None:
    """The winner on fresh inputs with a poisoned output, then timed against cuBLAS."""
    a, b = _random(result.size, seed)
    c = torch.empty_like(a)
    c.fill_(math.nan)
    fn = gemm_kernel.launcher(a, b, c, best, sms)
    fn()
    torch.cuda.synchronize()
    result.rel_error = rel_error(c, _reference(a, b))
    if result.rel_error > REL_ERROR_LIMIT:
        result.reason = Reason.WRONG_RESULT
        result.message = (
            f"{best.label()} passed the search but gave relative error "
            f"{result.rel_error:.3g} on fresh inputs"
        )
        return
    out = torch.empty_like(a)

    def cublas() -> None:
        torch.matmul(a, b, out=out)

    # An H100 at its power limit runs slower as it warms: bring it to a steady state,
    # then alternate the two in A-B-B-A order so neither always runs on the cooler chip.
    _spin(cublas, SPIN_SECONDS)
    times: dict[str, list[float]] = {"triton": [], "cublas": []}
    for i in range(ROUNDS):
        order = (("cublas", cublas), ("triton", fn))
        for name, call in order if i % 2 == 0 else reversed(order):
            times[name].append(_bench(call, warmup_ms=10, rep_ms=40))
    result.triton_seconds = statistics.median(times["triton"])
    result.cublas_seconds = statistics.median(times["cublas"])
    result.ok = True


def _spin(fn: Callable[[], None], seconds: float) -> None:
    """Keep the GPU busy for about `seconds` (clocks and temperature settle)."""
    began = time.monotonic()
    while time.monotonic() - began < seconds:
        for _ in range(8):
            fn()
        torch.cuda.synchronize()


def measure_size(
    size: int,
    configs: Sequence[GemmConfig],
    *,
    num_sms: int,
    compile_errors: dict[GemmConfig, str],
    started: float,
    deadline: float,
    seed: int = 0,
) -> SizeResult:
    """Search, check and time one square size; `started` counts compile time into autotune."""
    result = SizeResult(size=size, ok=False)
    a, b = _random(size, seed)
    ref = _reference(a, b)
    c = torch.empty_like(a)
    for cfg in configs:
        trial = Trial(cfg)
        result.trials.append(trial)
        if cfg in compile_errors:
            trial.error = short(compile_errors[cfg], 300)
            trial.reason = Reason.TRITON_COMPILE_FAILED
        elif time.monotonic() > deadline:
            trial.error, trial.reason = "skipped: measurement deadline reached", Reason.TIMEOUT
        else:
            _trial(trial, a=a, b=b, c=c, ref=ref, sms=num_sms)
    result.autotune_seconds = time.monotonic() - started
    del a, b, c, ref
    timed = [t for t in result.trials if t.seconds is not None]
    if not timed:
        reasons = {t.reason for t in result.trials if t.reason is not None}
        result.reason = reasons.pop() if len(reasons) == 1 else Reason.TRITON_COMPILE_FAILED
        result.message = "no configuration produced a correct result: " + "; ".join(
            f"{t.config.label()}: {t.error}" for t in result.trials[:4]
        )
        return result
    best = min(timed, key=lambda t: t.seconds or math.inf)
    result.best = best.config
    _confirm(result, best.config, seed + 1, num_sms)
    return result


def measure(
    sizes: Sequence[int],
    configs: Sequence[GemmConfig],
    *,
    deadline: float,
    compile_threads: int = 8,
    on_size: Callable[[SizeResult], None] | None = None,
) -> list[SizeResult]:
    """Every size in turn; compile once (the sizes share the kernels), search per size."""
    props = torch.cuda.get_device_properties(0)
    num_sms = props.multi_processor_count
    limit = int(getattr(props, "shared_memory_per_block_optin", 0)) or None
    started = time.monotonic()
    # A configuration whose buffers exceed the SM's shared memory cannot launch: say so
    # instead of compiling it (it still counts as tried, with its reason).
    too_big = {
        cfg: f"OutOfResources: needs {cfg.shared_memory_bytes()} bytes of shared memory, "
        f"the device allows {limit}"
        for cfg in configs
        if limit is not None and cfg.shared_memory_bytes() > limit
    }
    errors = precompile([c for c in configs if c not in too_big], sizes, num_sms, compile_threads)
    errors.update(too_big)
    results = []
    for index, size in enumerate(sizes):
        began = started if index == 0 else time.monotonic()
        result = measure_size(
            size,
            configs,
            num_sms=num_sms,
            compile_errors=errors,
            started=began,
            deadline=deadline,
            seed=2 * index,
        )
        results.append(result)
        if on_size is not None:
            on_size(result)
        torch.cuda.empty_cache()
    return results
