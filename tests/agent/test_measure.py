"""The parent's supervision of measurement workers: deadlines, crashes, partial results.

The real worker needs a GPU, so most cases run a small stand-in program that
speaks the worker's protocol and then misbehaves (hangs, dies out of memory,
fails a phase). One case runs the real worker on this GPU-less machine, where
it must fail cleanly. In every case no GPU comes out looking measured-correct.
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import sys
import time
from pathlib import Path

import psutil
import pytest

from maxtune.agent import measure
from maxtune.agent.inventory import GpuDevice

GPU = GpuDevice(
    index=0,
    uuid="GPU-00000000-1111-2222-3333-444444444444",
    product="NVIDIA H100 80GB HBM3",
    memory_mib=81559,
    compute_capability=(9, 0),
    sm_count=132,
)

GEMM_OK = {
    "ok": True,
    "size": 4096,
    "best_config": "128x256x64 g8 s3 w8 persistent",
    "configs_tried": 8,
    "triton_flops": 7.0e14,
    "cublas_flops": 7.2e14,
    "ratio_to_cublas": 0.972,
    "autotune_seconds": 3.0,
    "rel_error": 1.7e-3,
}

FAKE = """#!{python}
import json, os, subprocess, sys, time
def send(**event):
    print(json.dumps(event), flush=True)
scenario = os.environ["FAKE_WORKER_SCENARIO"]
assert os.environ["CUDA_VISIBLE_DEVICES"] == "{uuid}", os.environ["CUDA_VISIBLE_DEVICES"]
send(event="phase", phase="startup")
send(event="device", uuid="{uuid}", name="x", sm_count=132, startup_seconds=0.1)
send(event="phase", phase="gemm")
send(event="gemm", result={gemm}, trials=[])
if scenario == "gemm_hang":
    child = subprocess.Popen(["sleep", "60"])
    open(os.environ["FAKE_WORKER_PIDFILE"], "w").write(str(child.pid))
    time.sleep(60)
if scenario == "oom":
    print("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 8.00 GiB", file=sys.stderr)
    sys.exit(1)
send(event="phase_done", phase="gemm", seconds=1.0)
send(event="phase", phase="compile")
if scenario == "compile_fails":
    send(event="failed", phase="compile", reason="TritonCompileFailed", message="boom")
    sys.exit(1)
send(event="compile", result={{"ok": True, "block": "b", "modes": [
    {{"mode": "default", "step_seconds": 0.0016, "compile_seconds": 3.0, "gain": 0.0}}]}})
send(event="done")
"""


@pytest.fixture
def fake_worker(tmp_path: Path) -> str:
    script = tmp_path / "fake-worker"
    gemm = {**GEMM_OK, "size": 4096}
    script.write_text(FAKE.format(python=sys.executable, uuid=GPU.uuid, gemm=repr(gemm)))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def run(fake: str, scenario: str, level: str = "full", **budgets: float) -> measure.GpuOutcome:
    os.environ["FAKE_WORKER_SCENARIO"] = scenario
    try:
        outcomes = measure.measure([GPU], level, python=fake, budgets=measure.Budgets(**budgets))
    finally:
        del os.environ["FAKE_WORKER_SCENARIO"]
    return outcomes[GPU.uuid]


def test_a_hanging_phase_is_killed_with_its_children_and_keeps_earlier_results(
    fake_worker: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pidfile = tmp_path / "child.pid"
    monkeypatch.setenv("FAKE_WORKER_PIDFILE", str(pidfile))
    began = time.monotonic()
    outcome = run(fake_worker, "gemm_hang", gemm_s=2.0)
    assert time.monotonic() - began < 15
    m = outcome.measurements
    assert m is not None
    ok, timed_out = m.gemm
    assert ok.ok and ok.size == 4096
    assert not timed_out.ok and timed_out.size == 8192 and timed_out.reason == "Timeout"
    assert "gemm phase did not finish within 2s" in (timed_out.message or "")
    assert m.compile is not None and not m.compile.ok and m.compile.reason == "Timeout"
    assert "not run" in (m.compile.message or "")
    # The whole process group went: the worker's own child is gone too.
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while psutil.pid_exists(child) and psutil.Process(child).status() != "zombie":
        assert time.monotonic() < deadline, "the worker's child survived the kill"
        time.sleep(0.05)


def test_a_worker_dying_out_of_memory_says_so(fake_worker: str) -> None:
    m = run(fake_worker, "oom").measurements
    assert m is not None
    assert m.gemm[0].ok
    assert (m.gemm[1].ok, m.gemm[1].reason) == (False, "OutOfMemory")
    assert "exited with code 1 during the gemm phase" in (m.gemm[1].message or "")
    assert m.compile is not None and m.compile.reason == "OutOfMemory"


def test_a_failed_compile_phase_keeps_the_gemm(fake_worker: str) -> None:
    m = run(fake_worker, "compile_fails").measurements
    assert m is not None
    assert [g.size for g in m.gemm] == [4096, 8192]
    assert m.gemm[1].reason == "TritonCompileFailed"  # never reported: filled from the failure
    assert m.compile is not None and (m.compile.ok, m.compile.reason) == (
        False,
        "TritonCompileFailed",
    )


def test_a_clean_run(fake_worker: str) -> None:
    outcome = run(fake_worker, "clean")
    m = outcome.measurements
    assert m is not None and m.compile is not None and m.compile.ok
    assert outcome.stage_seconds == {"startup": 0.1, "gemm": 1.0}


def test_busy_gpu_is_not_measured_and_mig_gpus_never(fake_worker: str) -> None:
    busy = measure.measure([GPU], "gemm", python=fake_worker, busy=lambda g: (99999,))
    assert busy[GPU.uuid].measurements is None
    assert busy[GPU.uuid].skipped is not None and busy[GPU.uuid].skipped[0] == "GPUBusy"
    mig = dataclasses.replace(GPU, uuid="GPU-mig", mig_enabled=True, sm_count=None)
    assert measure.measure([mig], "full", python=fake_worker) == {}
    assert measure.measure([GPU], "inventory", python=fake_worker) == {}


def test_the_real_worker_without_a_gpu_fails_cleanly(tmp_path: Path) -> None:
    outcome = measure.measure([GPU], "gemm", budgets=measure.Budgets(startup_s=120))[GPU.uuid]
    m = outcome.measurements
    assert m is not None
    assert [(g.ok, g.reason) for g in m.gemm] == [(False, "CudaError"), (False, "CudaError")]
    assert "CUDA is not available" in (m.gemm[0].message or "")
    log = tmp_path / "log.json"
    measure.write_log({GPU.uuid: outcome}, log)
    assert json.loads(log.read_text())[GPU.uuid]["measurements"]["gemm"][0]["reason"] == "CudaError"
