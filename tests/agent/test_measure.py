"""The parent's supervision of measurement workers: deadlines, crashes, partial results.

The real worker needs a GPU, so most cases run a small stand-in program that
speaks the worker's protocol and then misbehaves (hangs, dies out of memory,
fails a phase). One case runs the real worker on this GPU-less machine, where
it must fail cleanly. In every case no GPU comes out looking measured-correct.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import time
from pathlib import Path

import psutil
import pytest

from maxtune.agent import measure
from maxtune.agent.targets import Target

GPU = Target(uuid="GPU-00000000-1111-2222-3333-444444444444", label="GPU 0", sm_count=132)
SLICE = Target(
    uuid="MIG-55555555-1111-2222-3333-444444444444",
    label="GPU 1 MIG 7g.80gb (GI 0)",
    sm_count=132,
    parent_uuid="GPU-55555555-0000-2222-3333-444444444444",
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
level = sys.argv[sys.argv.index("--level") + 1]
expect = sys.argv[sys.argv.index("--expect-uuid") + 1]
assert os.environ["CUDA_VISIBLE_DEVICES"] == expect, os.environ["CUDA_VISIBLE_DEVICES"]
if "FAKE_WORKER_ARGS" in os.environ:
    with open(os.environ["FAKE_WORKER_ARGS"], "a") as f:
        f.write(" ".join(sys.argv[1:]) + "\\n")
def block(workload, step, modes=("default", "max-autotune"), rounds=10):
    return {{"ok": True, "block": "b-" + workload, "workload": workload, "calls_per_round": 20,
             "problems": [], "eager_rounds": [0.002] * rounds,
             "modes": [{{"mode": m, "compile_seconds": 3.0 if m == "default" else 9.0,
                         "rounds": [0.0016 if m == "default" else step] * rounds}}
                       for m in modes]}}
send(event="phase", phase="startup")
send(event="device", uuid=expect, name="x", sm_count=132, startup_seconds=0.1)
if level == "retime":
    send(event="phase", phase="wait")
    if sys.stdin.readline().strip() != "go":
        sys.exit(0)
    send(event="phase", phase="retime")
    if scenario == "second_dies":
        print("torch.OutOfMemoryError: CUDA out of memory.", file=sys.stderr)
        sys.exit(1)
    modes = ("default",) if scenario == "second_short" else ("default", "max-autotune")
    for w in ("training", "inference"):
        send(event="block", result=block(w, 0.0015, modes))
    send(event="phase_done", phase="retime", seconds=2.0)
    send(event="done")
    sys.exit(0)
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
if level == "full":
    send(event="phase", phase="compile")
    if scenario == "compile_fails":
        send(event="failed", phase="compile", reason="TritonCompileFailed", message="boom")
        sys.exit(1)
    send(event="block", result=block("training", 0.0015))
    if scenario == "inference_hangs":
        time.sleep(60)
    send(event="block", result=block("inference", 0.0017))
    send(event="phase_done", phase="compile", seconds=5.0)
send(event="done")
"""


@pytest.fixture
def fake_worker(tmp_path: Path) -> str:
    script = tmp_path / "fake-worker"
    gemm = {**GEMM_OK, "size": 4096}
    script.write_text(FAKE.format(python=sys.executable, gemm=repr(gemm)))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def run(
    fake: str, scenario: str, level: str = "full", target: Target = GPU, **budgets: float
) -> measure.GpuOutcome:
    os.environ["FAKE_WORKER_SCENARIO"] = scenario
    try:
        outcomes = measure.measure([target], level, python=fake, budgets=measure.Budgets(**budgets))
    finally:
        del os.environ["FAKE_WORKER_SCENARIO"]
    return outcomes[target.uuid]


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
    for block in (m.compile, m.training):
        assert block is not None and not block.ok and block.reason == "Timeout"
        assert "not run" in (block.message or "")
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


def test_a_clean_run_times_both_blocks_in_two_processes(fake_worker: str) -> None:
    outcome = run(fake_worker, "clean")
    m = outcome.measurements
    assert m is not None and m.compile is not None and m.training is not None
    assert (m.training.ok, m.training.workload, m.training.processes) == (True, "training", 2)
    assert (m.compile.ok, m.compile.workload, m.compile.processes) == (True, "inference", 2)
    timing = {t.mode.value: t for t in m.training.modes}
    assert timing["default"].compile_seconds == 3.0
    assert timing["default"].warm_compile_seconds == 3.0  # the second process's compile
    assert len(timing["max-autotune"].round_step_seconds) == 20
    # 1.6 ms against 1.5 ms in every round of both processes: +6.7%, no spread.
    assert timing["max-autotune"].gain_low == pytest.approx(0.0016 / 0.0015 - 1)
    assert outcome.stage_seconds == {"startup": 0.1, "gemm": 1.0, "compile": 5.0, "retime": 2.0}


def test_a_second_process_that_dies_leaves_the_first_s_rounds_alone(fake_worker: str) -> None:
    m = run(fake_worker, "second_dies").measurements
    assert m is not None and m.training is not None and m.training.ok
    assert m.training.processes == 1
    assert "second process: OutOfMemory" in (m.training.message or "")


def test_a_second_process_that_timed_less_is_left_out(fake_worker: str) -> None:
    m = run(fake_worker, "second_short").measurements
    assert m is not None and m.training is not None and m.training.processes == 1
    assert "it did not time max-autotune" in (m.training.message or "")


def test_a_block_that_overruns_keeps_the_one_before(fake_worker: str) -> None:
    m = run(fake_worker, "inference_hangs", compile_s=2.0).measurements
    assert m is not None and m.training is not None and m.compile is not None
    assert m.training.ok  # sent before the hang; the second process still times it
    assert m.training.processes == 2
    assert (m.compile.ok, m.compile.reason) == (False, "Timeout")


def test_a_mig_slice_is_measured_on_itself(
    fake_worker: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = tmp_path / "args"
    monkeypatch.setenv("FAKE_WORKER_ARGS", str(args))
    m = run(fake_worker, "clean", target=SLICE).measurements
    assert m is not None and m.training is not None and m.training.processes == 2
    # Both processes were pointed at the slice, told its parent and its SM count.
    lines = args.read_text().splitlines()
    assert len(lines) == 2
    for line in lines:
        assert f"--expect-uuid {SLICE.uuid}" in line
        assert f"--expect-parent {SLICE.parent_uuid} --expect-sms 132" in line


def test_busy_devices_are_not_measured(fake_worker: str) -> None:
    busy = measure.measure([GPU], "gemm", python=fake_worker, busy=lambda t: (99999,))
    assert busy[GPU.uuid].measurements is None
    assert busy[GPU.uuid].skipped is not None and busy[GPU.uuid].skipped[0] == "GPUBusy"
    assert "GPU 0 has 1 other compute process(es)" in busy[GPU.uuid].skipped[1]
    assert measure.measure([GPU], "inventory", python=fake_worker) == {}


def test_gemm_level_starts_no_second_process(
    fake_worker: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = tmp_path / "args"
    monkeypatch.setenv("FAKE_WORKER_ARGS", str(args))
    m = run(fake_worker, "clean", level="gemm").measurements
    assert m is not None and m.compile is None and m.training is None
    assert [g.size for g in m.gemm] == [4096]
    assert [line.split()[3] for line in args.read_text().splitlines()] == ["gemm"]


def test_the_real_worker_without_a_gpu_fails_cleanly(tmp_path: Path) -> None:
    outcome = measure.measure([GPU], "gemm", budgets=measure.Budgets(startup_s=120))[GPU.uuid]
    m = outcome.measurements
    assert m is not None
    assert [(g.ok, g.reason) for g in m.gemm] == [(False, "CudaError"), (False, "CudaError")]
    assert "CUDA is not available" in (m.gemm[0].message or "")
    log = tmp_path / "log.json"
    measure.write_log({GPU.uuid: outcome}, log)
    assert json.loads(log.read_text())[GPU.uuid]["measurements"]["gemm"][0]["reason"] == "CudaError"


def test_a_worker_that_cannot_start_is_a_failed_measurement_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    missing = str(tmp_path / "no-such-python")
    outcome = measure.measure([GPU], "full", python=missing)[GPU.uuid]
    m = outcome.measurements
    assert m is not None and [(g.ok, g.reason) for g in m.gemm] == [
        (False, "MeasurementFailed"),
        (False, "MeasurementFailed"),
    ]
    assert "no-such-python" in (m.gemm[0].message or "")
    assert m.training is not None and not m.training.ok
    assert list(scratch.iterdir()) == []  # the cache folder made for it is gone again
