"""Reference measurement (b): torch.compile default against the max-autotune modes.

Runs inside a measurement worker, on two reference blocks (blocks.py): a transformer
block's training step (the advice rests on it) and a GEMM-heavy MLP under no_grad
(reported beside it). For each block every mode is compiled first, each into its own
Inductor and Triton cache folder, then all modes are timed in interleaved rounds
(timing.round_order): drift between the start and the end of the measurement hits every
mode alike, and each round yields a paired gain (docs/decisions/0012-stable-gains.md).

The first (cold) process compiles into empty folders, so its compile seconds are what a
new pod pays. A second (warm) process compiles again from the folders the first filled,
which yields the compile time with a warm cache and a second, independent set of rounds.
Each mode's result is checked against eager before its rounds count.
"""

from __future__ import annotations

import contextlib
import functools
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch._inductor.utils import clear_caches

from maxtune.agent.blocks import Block, build
from maxtune.agent.failures import Reason, classify, short
from maxtune.agent.timing import EAGER, WARMUP_CALLS, round_order

MODES: tuple[str, ...] = ("default", "max-autotune-no-cudagraphs", "max-autotune")
DEVICE_REASONS = (Reason.OUT_OF_MEMORY, Reason.DEVICE_LOST, Reason.CUDA_ERROR)


@contextlib.contextmanager
def cache_at(folder: Path) -> Iterator[None]:
    """Inductor's and Triton's caches in `folder` (empty: a cold compile; filled by an
    earlier process: a warm one), with the in-memory caches cleared on both sides."""
    folder.mkdir(parents=True, exist_ok=True)
    saved = {k: os.environ.get(k) for k in ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR")}
    clear_caches()
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder)
    os.environ["TRITON_CACHE_DIR"] = str(folder / "triton")
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        clear_caches()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_calls(fn: Callable[[], Any], calls: int, device: torch.device) -> float:
    """Median seconds of `calls` single calls: CUDA events on a GPU, a wall clock elsewhere
    (the CPU path exists for smoke tests of this code on machines without a GPU)."""
    for _ in range(WARMUP_CALLS):
        fn()
    if device.type != "cuda":
        times = []
        for _ in range(calls):
            began = time.perf_counter()
            fn()
            times.append(time.perf_counter() - began)
        return statistics.median(times)
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(calls)]  # type: ignore[no-untyped-call]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(calls)]  # type: ignore[no-untyped-call]
    for start, end in zip(starts, ends, strict=True):
        start.record()
        fn()
        end.record()
    torch.cuda.synchronize()
    return (
        statistics.median(float(s.elapsed_time(e)) for s, e in zip(starts, ends, strict=True)) / 1e3
    )


def prime(device: str, scratch: Path) -> float:
    """Pay the process's one-time compile costs (Inductor's and AOTAutograd's imports and
    set-up, the compile worker pool) on a throwaway model, forward and backward, so that
    the first mode measured is not charged for them; seconds spent."""
    began = time.perf_counter()
    dev = torch.device(device)
    model = torch.nn.Sequential(
        torch.nn.LayerNorm(64), torch.nn.Linear(64, 64), torch.nn.GELU(), torch.nn.Linear(64, 64)
    ).to(dev)
    x = torch.ones(8, 64, device=dev)
    with cache_at(scratch / "prime"):
        fn = torch.compile(model, dynamic=False)
        fn(x).sum().backward()
        with torch.no_grad():
            fn(x)
        _sync(dev)
    torch._dynamo.reset()
    return time.perf_counter() - began


def _note(text: str) -> None:
    print(f"maxtune: {text}", file=sys.stderr, flush=True)


def measure_block(
    block: Block,
    *,
    modes: Sequence[str],
    cache_root: Path,
    deadline: float,
    rounds: int,
    calls: int,
    warm: bool,
) -> dict[str, Any]:
    """Compile every mode, then time them in interleaved rounds; the raw result timing.merge
    reads. Raises only for device-level trouble (out of memory, lost device)."""
    device = block.device
    compiled: dict[str, Callable[[], None]] = {}
    compile_s: dict[str, float] = {}
    problems: list[str] = []
    kind = "warm" if warm else "cold"
    for mode in modes:
        if time.monotonic() > deadline:
            problems.append(f"{mode}: not measured, deadline reached")
            continue
        try:
            with cache_at(cache_root / block.workload / mode):
                fn = block.compile(mode)
                began = time.perf_counter()
                error = block.check(fn)  # the first call compiles (forward and backward)
                _sync(device)
                compile_s[mode] = time.perf_counter() - began
            _note(
                f"{block.workload} {mode}: {kind} compile {compile_s[mode]:.2f}s, error {error:.2g}"
            )
            if error > block.error_limit:
                problems.append(f"{mode}: wrong result, relative error {error:.3g}")
                continue
            compiled[mode] = functools.partial(block.step, fn)
        except Exception as exc:
            if classify(type(exc).__name__, str(exc)) in DEVICE_REASONS:
                raise
            problems.append(short(f"{mode}: {type(exc).__name__}: {exc}", 400))
    result: dict[str, Any] = {"block": block.description, "workload": block.workload}
    if "default" not in compiled:
        return {
            **result,
            "ok": False,
            "reason": Reason.FAILED.value,
            "message": "default mode could not be measured, so no gain can be: "
            + "; ".join(problems),
        }
    began = time.perf_counter()
    for step in compiled.values():  # CUDA-graph modes record on their first calls
        for _ in range(3):
            step()
    _sync(device)
    columns: dict[str, Callable[[], None]] = {
        EAGER: functools.partial(block.step, block.model),
        **compiled,
    }
    timed: dict[str, list[float]] = {name: [] for name in columns}
    for index in range(rounds):
        for name in round_order(list(columns), index):
            timed[name].append(time_calls(columns[name], calls, device))
    _note(
        f"{block.workload}: {rounds} rounds x {len(columns)} columns in "
        f"{time.perf_counter() - began:.2f}s"
    )
    return {
        **result,
        "ok": True,
        "calls_per_round": calls,
        "problems": problems,
        "eager_rounds": timed.pop(EAGER),
        "modes": [
            {"mode": mode, "compile_seconds": compile_s[mode], "rounds": timed[mode]}
            for mode in compiled
        ],
    }


def measure(
    workload: str,
    *,
    cache_root: Path,
    deadline: float,
    rounds: int,
    calls: int,
    warm: bool,
    modes: Sequence[str] = MODES,
    device: str = "cuda",
    tiny: bool = False,
) -> dict[str, Any]:
    """One reference block, built, measured and freed (its compiled code and memory)."""
    block = build(workload, torch.device(device), tiny=tiny)
    try:
        return measure_block(
            block,
            modes=modes,
            cache_root=cache_root,
            deadline=deadline,
            rounds=rounds,
            calls=calls,
            warm=warm,
        )
    finally:
        del block
        torch._dynamo.reset()
        if device == "cuda":
            torch.cuda.empty_cache()


def main(argv: list[str] | None = None) -> int:
    """`python -m maxtune.agent.compile_bench`: one block in this process, its raw result as
    JSON on stdout. For smoke tests of this code (tiny shapes on a CPU); the agent itself
    runs blocks through the worker."""
    import argparse  # noqa: PLC0415
    import json  # noqa: PLC0415

    parser = argparse.ArgumentParser(prog="python -m maxtune.agent.compile_bench")
    parser.add_argument("--workload", choices=["training", "inference"], required=True)
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--warm", action="store_true")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--modes", default=",".join(MODES))
    args = parser.parse_args(argv)
    prime(args.device, args.cache / ("prime-warm" if args.warm else "prime-cold"))
    result = measure(
        args.workload,
        cache_root=args.cache,
        deadline=time.monotonic() + 600,
        rounds=args.rounds,
        calls=args.calls,
        warm=args.warm,
        modes=args.modes.split(","),
        device=args.device,
        tiny=args.tiny,
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
