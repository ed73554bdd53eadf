"""The GPU run script's control flow and its between-runs arithmetic, on a CPU.

benchmarks/agent/h200_run.py runs three full profiles on the real GPU; here it runs
against a simulated node (`--dry`), which goes through the same agent processes, profile
files, measurement logs, summaries and printing. The CUDA side is not run here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks.agent import h200_run

ROOT = Path(__file__).resolve().parents[2]


def test_dry_run_goes_through_every_step(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks/agent/h200_run.py"),
            "--out",
            str(tmp_path),
            "--dry",
            "--runs",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "==== full profile 2" in done.stdout and "==== between the runs" in done.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["details.tar.gz", "summary.json"]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["dry"] and len(summary["runs"]) == 2
    run = summary["runs"][0]["summary"]
    assert run["recommended_mode"] == "max-autotune"  # demo.yaml's A100: a clear gain
    assert run["conditions"]["Ready"] == "True/ProfileComplete"
    training = run["devices"][0]["training"]
    assert training["processes"] == 2 and training["rounds"] == 10
    mode = training["modes"]["max-autotune"]
    assert mode["gain_low"] <= mode["gain"] <= mode["gain_high"]
    assert mode["break_even_steps"] > 0 and mode["recommended"] is True
    between = summary["between_runs"]
    assert between["advice_flipped"] is False and between["within_budget"] is True
    assert between["training"]["max-autotune"]["each_interval_holds_the_other_runs_gains"]


def _run(gain: float, low: float, high: float, mode: str, seconds: float) -> dict[str, Any]:
    modes = {
        "default": {
            "gain": 0.0,
            "gain_low": 0.0,
            "gain_high": 0.0,
            "compile_s": 2.0,
            "warm_compile_s": 1.0,
        },
        "max-autotune": {
            "gain": gain,
            "gain_low": low,
            "gain_high": high,
            "compile_s": 9.0,
            "warm_compile_s": 1.5,
        },
    }
    device = {"training": {"modes": modes}, "inference": None}
    return {"seconds": seconds, "summary": {"devices": [device], "recommended_mode": mode}}


def test_between_runs_sees_a_flip_and_an_interval_that_misses() -> None:
    runs = [
        _run(0.05, 0.035, 0.06, "max-autotune", 70.0),
        _run(0.00, -0.01, 0.01, "default", 95.0),
        _run(0.04, 0.03, 0.05, "max-autotune", 80.0),
    ]
    table = h200_run.between_runs(runs)
    row = table["training"]["max-autotune"]
    assert row["gains"] == [0.05, 0.00, 0.04]
    assert row["run_to_run_range"] == 0.05
    assert not row["each_interval_holds_the_other_runs_gains"]
    assert table["advice_flipped"] and not table["within_budget"]
    steady = h200_run.between_runs([_run(0.05, 0.03, 0.07, "max-autotune", 60.0)] * 3)
    assert steady["training"]["max-autotune"]["each_interval_holds_the_other_runs_gains"]
    assert not steady["advice_flipped"] and steady["within_budget"]
