"""The compile comparison's own code, run for real on a CPU at tiny sizes.

The agent measures on GPUs; this machine has none. What can run here does: both reference
blocks built, every mode compiled by Inductor into its own cache folder, checked against
eager, timed in interleaved rounds; then a second process compiling again from the caches
the first filled (warm: it must be faster), and the two processes merged into the
published measurement. CUDA events, CUDA graphs and the GPU kernels themselves cannot
run here (benchmarks/agent/h200_run.py is the GPU run, decision 0012).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from maxtune.agent import timing
from maxtune.contract.modes import Mode

pytestmark = [pytest.mark.torch, pytest.mark.slow]


def _run(workload: str, cache: Path, *, warm: bool) -> dict[str, Any]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "maxtune.agent.compile_bench",
            "--workload",
            workload,
            "--cache",
            str(cache),
            "--device",
            "cpu",
            "--tiny",
            "--rounds",
            "3",
            "--calls",
            "2",
            "--modes",
            "default,max-autotune",
            *(["--warm"] if warm else []),
        ],
        capture_output=True,
        text=True,
        timeout=500,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_training_block_cold_then_warm_on_a_cpu(tmp_path: Path) -> None:
    cold = _run("training", tmp_path, warm=False)
    warm = _run("training", tmp_path, warm=True)
    for raw in (cold, warm):
        assert raw["ok"], raw
        assert raw["workload"] == "training" and "transformer block" in raw["block"]
        assert [m["mode"] for m in raw["modes"]] == ["default", "max-autotune"]
        assert all(len(m["rounds"]) == 3 for m in raw["modes"])
        assert len(raw["eager_rounds"]) == 3
    # Every mode compiled into its own folder, and the second process found them filled.
    assert {p.name for p in (tmp_path / "training").iterdir()} == {"default", "max-autotune"}
    for c, w in zip(cold["modes"], warm["modes"], strict=True):
        assert w["compile_seconds"] < c["compile_seconds"], (c, w)
    merged = timing.merge(cold, warm)
    assert merged.ok and merged.processes == 2 and merged.rounds == 3
    timings = {t.mode: t for t in merged.modes}
    assert timings[Mode.MAX_AUTOTUNE].warm_compile_seconds is not None
    assert timings[Mode.MAX_AUTOTUNE].gain_low is not None
    assert len(timings[Mode.MAX_AUTOTUNE].round_step_seconds) == 6
