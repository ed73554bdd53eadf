"""Measurements and conditions shaped like a real agent's, for benchmarks that weigh bytes.

The testkit's plain measurements (profiles.measurements) time every round alike and leave
the inference block without rounds, which keeps the tests' intervals exact but makes an
8-GPU profile half the size a real agent publishes. A benchmark of the API server and the
operator at scale must send what production sends: here every block is timed as the agent
times it (2 processes x 10 rounds, scattered, through contract.rounds), two GEMM sizes,
the four conditions with per-GPU messages. tests/benchmarks checks the bytes per GPU against
a profile the agent wrote on an H200 (benchmarks/agent/runs/h200-2026-12-01).
"""

from __future__ import annotations

import zlib
from datetime import datetime
from functools import lru_cache

from maxtune.contract.models import (
    CompileMeasurement,
    Condition,
    GemmMeasurement,
    Measurements,
    Software,
    Workload,
)
from maxtune.contract.modes import Mode
from maxtune.contract.rounds import BlockRounds, ModeRounds, compile_measurement, spread_rounds

TRAINING_BLOCK = (
    "transformer block (parallel attention+MLP) train step bf16 x=8x512x1024 heads=8 "
    "ff=4096, AdamW fused"
)
INFERENCE_BLOCK = "mlp gelu(x@w1)@w2 bf16 x=4096x4096 w1=4096x16384 w2=16384x4096"
PROCESSES, ROUNDS, CALLS = 2, 10, 20
SPREAD = 0.01  # each round within 1% of the mode's step: tight intervals, full-length digits

# (mode, gain over default added to the node's, cold compile s, warm compile s)
_MODES = (
    (Mode.DEFAULT, None, 2.3589, 3.0571),
    (Mode.MAX_AUTOTUNE_NO_CUDAGRAPHS, 0.0, 78.2149, 6.1814),
    (Mode.MAX_AUTOTUNE, 0.01, 81.9013, 6.9021),
)


def _block(
    block: str, workload: Workload, gain: float, default_step: float, seed: int
) -> BlockRounds:
    modes = []
    for k, (mode, extra, cold, warm) in enumerate(_MODES):
        step = default_step if extra is None else default_step / (1 + gain + extra)
        rounds = spread_rounds(step, SPREAD, processes=PROCESSES, rounds=ROUNDS, seed=seed * 7 + k)
        modes.append(ModeRounds(mode, cold * (1 + 0.013 * k), rounds, warm))
    eager = spread_rounds(default_step * 1.013, SPREAD, processes=1, rounds=ROUNDS, seed=seed)
    return BlockRounds(
        block=block,
        workload=workload,
        calls_per_round=CALLS,
        modes=tuple(modes),
        eager_rounds=eager,
    )


def _gemm(size: int, seed: int) -> GemmMeasurement:
    jitter = 1 + (zlib.crc32(f"{size}-{seed}".encode()) % 997) / 99_700
    triton, cublas = 6.984254588001656e14 * jitter, 7.095601029328219e14
    return GemmMeasurement(
        ok=True,
        size=size,
        best_config="128x256x64 g8 s4 w8 persistent subtile",
        configs_tried=8,
        triton_flops=triton,
        cublas_flops=cublas,
        ratio_to_cublas=triton / cublas,
        autotune_seconds=3.154237013999996 * jitter,
        rel_error=0.0016618086956441402 * jitter,
    )


@lru_cache(maxsize=256)
def measurements(gain: float, default_step: float) -> Measurements:
    """One GPU's measurements: the training block's best mode gains about `gain` + 1%.

    Cached per (gain, step): a fleet of thousands of nodes shares a few dozen, which is
    what keeps building it fast; the bytes per GPU are what matter here, not the values.
    """
    seed = zlib.crc32(f"{gain}-{default_step}".encode()) % 10_000
    training: CompileMeasurement = compile_measurement(
        _block(TRAINING_BLOCK, "training", gain, default_step, seed)
    )
    inference: CompileMeasurement = compile_measurement(
        _block(INFERENCE_BLOCK, "inference", gain / 4, default_step * 1.05, seed + 1)
    )
    return Measurements(
        gemm=[_gemm(4096, seed), _gemm(8192, seed)], compile=inference, training=training
    )


def software() -> Software:
    return Software(
        agent_version="0.2.0",
        driver_version="580.159.04",
        cuda_driver_version="13.0",
        torch_version="2.11.0+cu130",
        triton_version="3.6.0",
        nvml_version="13.580.159.04",
    )


def conditions(count: int, measured: Measurements | None, now: datetime) -> list[Condition]:
    """The four conditions an agent writes, their messages one clause per GPU as its are."""
    gemm = "; ".join(
        f"GPU {i} {g.size}: {g.ratio_to_cublas:.1%} of cuBLAS"
        for i in range(count)
        for g in (measured.gemm if measured else [])
    )

    def gains(block: CompileMeasurement | None) -> str:
        if block is None:
            return ""
        return ", ".join(
            f"{t.mode.value} {t.gain:+.1%} [{(t.gain_low or 0):+.1%}, {(t.gain_high or 0):+.1%}]"
            for t in block.modes
            if t.mode is not Mode.DEFAULT
        )

    compiled = "; ".join(
        f"GPU {i}: training {gains(measured.training)}; inference {gains(measured.compile)}"
        for i in range(count)
        if measured is not None
    )
    ok = measured is not None
    measured_reason = "Measured" if ok else "NotMeasured"
    found = (
        ("Inventoried", True, "Inventoried", f"{count} GPU(s): {count} whole, 0 MIG instance(s)"),
        ("GemmMeasured", ok, measured_reason, gemm),
        ("CompileMeasured", ok, measured_reason, compiled),
        (
            "Ready",
            True,
            "ProfileComplete" if ok else "InventoryOnly",
            "level full profile complete" if ok else "level inventory",
        ),
    )
    return [
        Condition(
            type=kind,
            status="True" if status else "False",
            reason=reason,
            message=message[:4000],
            last_transition_time=now,
        )
        for kind, status, reason, message in found
    ]
