"""Running the reference measurements: one worker process per GPU, in parallel, bounded.

Each GPU gets its own `python -m maxtune.agent.worker` with CUDA_VISIBLE_DEVICES
set to its UUID, all started at once (GPUs share nothing the measurements use,
so a node of eight profiles in about the time of one). The parent enforces a
deadline per phase (start-up, GEMM, compile): a worker that overruns is killed
with its process group and the phase in progress, and every one after it, is
recorded as Timeout. A worker that dies is recorded with the reason its stderr
points at (out of memory, device lost) or WorkerCrashed. Results that arrived
before a failure are kept. A GPU with other compute processes on it is not
measured at all (GPUBusy): its measurements stay as they were, and the agent
tries again on a later round.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from maxtune.agent.failures import Reason, exit_reason, short
from maxtune.agent.inventory import GpuDevice
from maxtune.contract.models import CompileMeasurement, GemmMeasurement, Measurements

BLOCK = "mlp gelu(x@w1)@w2 bf16 x=4096x4096 w1=4096x16384 w2=16384x4096"
DEFAULT_SIZES: tuple[int, ...] = (4096, 8192)


@dataclass(frozen=True, slots=True)
class Budgets:
    """Seconds each phase may take before its worker is killed."""

    startup_s: float = 120.0
    gemm_s: float = 120.0
    compile_s: float = 240.0

    def of(self, phase: str) -> float:
        return {"startup": self.startup_s, "gemm": self.gemm_s, "compile": self.compile_s}[phase]


@dataclass
class GpuOutcome:
    """What one GPU's worker produced; `skipped` means nothing was attempted (GPUBusy)."""

    uuid: str
    measurements: Measurements | None
    skipped: tuple[str, str] | None = None  # (reason, message)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    trials: list[Any] = field(default_factory=list)
    stderr_tail: str = ""


def _failed_gemm(size: int, reason: str, message: str) -> GemmMeasurement:
    return GemmMeasurement(ok=False, reason=reason, message=short(message), size=size)


def _failed_compile(reason: str, message: str) -> CompileMeasurement:
    return CompileMeasurement(ok=False, reason=reason, message=short(message), block=BLOCK)


class _Worker:
    """One running worker and what it has said so far."""

    def __init__(
        self,
        *,
        gpu: GpuDevice,
        level: str,
        sizes: Sequence[int],
        budgets: Budgets,
        python: str,
        env: dict[str, str],
    ) -> None:
        self.gpu = gpu
        self.level = level
        self.sizes = list(sizes)
        self.budgets = budgets
        self.events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - lives with the worker
        child_env = {**os.environ, **env, "CUDA_VISIBLE_DEVICES": gpu.uuid}
        child_env.setdefault("PYTHONUNBUFFERED", "1")
        self.proc = subprocess.Popen(
            [
                python,
                "-m",
                "maxtune.agent.worker",
                "--level",
                level,
                "--sizes",
                ",".join(str(s) for s in sizes),
                "--gemm-budget-s",
                str(budgets.gemm_s * 0.8),
                "--compile-budget-s",
                str(budgets.compile_s * 0.8),
                "--expect-uuid",
                gpu.uuid,
            ],
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            env=child_env,
            start_new_session=True,  # its own process group: a kill takes Inductor's pool too
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            try:
                self.events.put(json.loads(raw))
            except ValueError:
                continue
        self.events.put(None)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stderr_tail(self, limit: int = 16000) -> str:
        self.stderr.seek(0, os.SEEK_END)
        size = self.stderr.tell()
        self.stderr.seek(max(0, size - limit))
        return self.stderr.read().decode(errors="replace")

    def supervise(self) -> GpuOutcome:
        phases = ["startup", "gemm"] + (["compile"] if self.level == "full" else [])
        gemm: dict[int, GemmMeasurement] = {}
        compile_: CompileMeasurement | None = None
        outcome = GpuOutcome(uuid=self.gpu.uuid, measurements=None)
        phase = "startup"
        phase_started = time.monotonic()
        failure: tuple[str, str] | None = None
        while True:
            remaining = self.budgets.of(phase) - (time.monotonic() - phase_started)
            try:
                event = self.events.get(timeout=max(0.0, remaining))
            except queue.Empty:
                self.kill()
                failure = (
                    Reason.TIMEOUT.value,
                    f"{phase} phase did not finish within {self.budgets.of(phase):g}s; "
                    "the measurement process was killed",
                )
                break
            if event is None:  # stream closed: the worker ended
                self.proc.wait()
                if self.proc.returncode != 0 and failure is None:
                    tail = self.stderr_tail()
                    reason = exit_reason(self.proc.returncode, tail)
                    last = tail.strip().splitlines()[-1] if tail.strip() else ""
                    failure = (
                        reason.value,
                        f"measurement process exited with code {self.proc.returncode} during "
                        f"the {phase} phase: {last}",
                    )
                break
            kind = event.get("event")
            if kind == "phase":
                phase = str(event["phase"])
                phase_started = time.monotonic()
            elif kind == "device":
                outcome.stage_seconds["startup"] = float(event.get("startup_seconds", 0.0))
            elif kind == "gemm":
                result = GemmMeasurement.model_validate(event["result"])
                gemm[result.size] = result
                outcome.trials.append(event.get("trials", []))
            elif kind == "compile":
                compile_ = CompileMeasurement.model_validate(event["result"])
            elif kind == "phase_done":
                outcome.stage_seconds[str(event["phase"])] = float(event["seconds"])
            elif kind == "failed":
                failure = (str(event["reason"]), str(event["message"]))
                phase = str(event.get("phase", phase))
        outcome.stderr_tail = self.stderr_tail()
        self.stderr.close()

        outcome.measurements = self._complete(gemm, compile_, failure, phase, phases)
        return outcome

    def _complete(
        self,
        gemm: dict[int, GemmMeasurement],
        compile_: CompileMeasurement | None,
        failure: tuple[str, str] | None,
        phase: str,
        phases: list[str],
    ) -> Measurements:
        """Every size and (at level full) the compile comparison, failed where nothing came."""
        if failure is not None:
            reason, message = failure
            failed_at = phases.index(phase) if phase in phases else 0
            for size in self.sizes:
                if size not in gemm:
                    gemm[size] = _failed_gemm(size, reason, message)
            if "compile" in phases and compile_ is None:
                compile_ = _failed_compile(
                    reason,
                    message
                    if failed_at >= phases.index("compile")
                    else f"not run: the {phase} phase failed first ({message})",
                )
        elif self.level == "full" and compile_ is None:
            compile_ = _failed_compile(Reason.WORKER_CRASHED.value, "worker sent no result")
        return Measurements(gemm=[gemm[s] for s in self.sizes if s in gemm], compile=compile_)


def measure(
    gpus: Sequence[GpuDevice],
    level: str,
    *,
    sizes: Sequence[int] = DEFAULT_SIZES,
    budgets: Budgets | None = None,
    busy: Callable[[GpuDevice], tuple[int, ...]] | None = None,
    python: str = sys.executable,
    env: dict[str, str] | None = None,
) -> dict[str, GpuOutcome]:
    """Measure every whole GPU in parallel; MIG-enabled GPUs are not measured."""
    if level == "inventory":
        return {}
    budgets = budgets or Budgets()
    outcomes: dict[str, GpuOutcome] = {}
    workers: list[_Worker] = []
    for gpu in gpus:
        if gpu.mig_enabled:
            continue
        pids = busy(gpu) if busy is not None else gpu.busy_pids
        others = tuple(p for p in pids if p != os.getpid())
        if others:
            outcomes[gpu.uuid] = GpuOutcome(
                uuid=gpu.uuid,
                measurements=None,
                skipped=(
                    Reason.GPU_BUSY.value,
                    f"GPU {gpu.index} has {len(others)} other compute process(es) "
                    f"(pids {', '.join(map(str, others[:5]))}); measurement skipped, "
                    "retried on a later round",
                ),
            )
            continue
        workers.append(
            _Worker(
                gpu=gpu, level=level, sizes=sizes, budgets=budgets, python=python, env=env or {}
            )
        )
    results: dict[str, GpuOutcome] = {}
    threads = [
        threading.Thread(target=lambda w=w: results.__setitem__(w.gpu.uuid, w.supervise()))
        for w in workers
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for worker in workers:
            if worker.proc.poll() is None:
                worker.kill()
    outcomes.update(results)
    return outcomes


def write_log(outcomes: dict[str, GpuOutcome], path: Path) -> None:
    """Every trial and stderr tail, for a person debugging a node (not part of the profile)."""
    path.write_text(
        json.dumps(
            {
                uuid: {
                    "skipped": o.skipped,
                    "stages": o.stage_seconds,
                    "trials": o.trials,
                    "worker_notes": [
                        line for line in o.stderr_tail.splitlines() if line.startswith("maxtune:")
                    ],
                    "stderr_tail": o.stderr_tail[-2000:],
                    "measurements": o.measurements.wire() if o.measurements else None,
                }
                for uuid, o in outcomes.items()
            },
            indent=1,
        )
    )
