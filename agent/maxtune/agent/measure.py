"""Running the reference measurements: worker processes per device, in parallel, bounded.

Each device (a whole GPU, or a MIG slice that passes the gate: targets.py) gets its own
`python -m maxtune.agent.worker` with CUDA_VISIBLE_DEVICES set to its UUID, all started
at once (devices share nothing the measurements use, so a node of eight profiles in
about the time of one). At level full each device gets two: the first measures the
GEMM and compiles both reference blocks cold, then times them; the second starts beside
it (its `import torch` and CUDA start overlap the first's work), waits, and when the
first is done compiles again from the caches the first filled and times a second set of
rounds. Gains are judged over both processes (docs/decisions/0012-stable-gains.md).

The parent enforces a deadline per phase (start-up, GEMM, compile, retime): a worker
that overruns is killed with its process group, and the phase in progress, and every
one after it, is recorded as Timeout. A worker that dies is recorded with the reason
its stderr points at (out of memory, device lost) or WorkerCrashed. Results that arrived
before a failure are kept; a second process that fails leaves the first's rounds alone
(and the gain unjudged, since one process cannot show run-to-run noise). A device with
other compute processes on it is not measured at all (GPUBusy): its measurements stay as
they were, and the agent tries again on a later round.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
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

from maxtune.agent import timing
from maxtune.agent.failures import Reason, exit_reason, short
from maxtune.agent.targets import Target
from maxtune.agent.worker import scratch_base
from maxtune.contract.models import CompileMeasurement, GemmMeasurement, Measurements

BLOCKS = {
    "training": "transformer block train step (not measured)",
    "inference": "mlp gelu(x@w1)@w2 bf16 x=4096x4096 w1=4096x16384 w2=16384x4096",
}
DEFAULT_SIZES: tuple[int, ...] = (4096, 8192)


@dataclass(frozen=True, slots=True)
class Budgets:
    """Seconds each phase may take before its worker is killed."""

    startup_s: float = 120.0
    gemm_s: float = 120.0
    # Both reference blocks, three modes each, compiled cold: 252 s on an H200 (2026-12-01,
    # docs/benchmarks/agent-h200.md), most of it Inductor's autotune benchmarking (~8 s per
    # GEMM shape and max-autotune mode). A deadline against hangs, not an expected time.
    compile_s: float = 600.0
    retime_s: float = 180.0

    def of(self, phase: str) -> float:
        return {
            "startup": self.startup_s,
            "gemm": self.gemm_s,
            "compile": self.compile_s,
            "retime": self.retime_s,
            # The second process waits while the first works: bounded by the first's phases.
            "wait": self.startup_s + self.gemm_s + self.compile_s,
        }[phase]


@dataclass
class GpuOutcome:
    """What one device's workers produced; `skipped` means nothing was attempted (GPUBusy)."""

    uuid: str
    measurements: Measurements | None
    skipped: tuple[str, str] | None = None  # (reason, message)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    trials: list[Any] = field(default_factory=list)
    stderr_tail: str = ""


def _failed_gemm(size: int, reason: str, message: str) -> GemmMeasurement:
    return GemmMeasurement(ok=False, reason=reason, message=short(message), size=size)


@dataclass
class _Run:
    """What one worker said before it ended (or was killed)."""

    gemm: dict[int, GemmMeasurement] = field(default_factory=dict)
    blocks: dict[str, dict[str, Any]] = field(default_factory=dict)
    failure: tuple[str, str] | None = None
    phase: str = "startup"
    stages: dict[str, float] = field(default_factory=dict)
    trials: list[Any] = field(default_factory=list)
    stderr_tail: str = ""


class _Worker:
    """One running worker and what it has said so far."""

    def __init__(
        self,
        *,
        target: Target,
        level: str,
        sizes: Sequence[int],
        budgets: Budgets,
        python: str,
        env: dict[str, str],
        scratch: str,
    ) -> None:
        self.target = target
        self.level = level
        self.budgets = budgets
        self.events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - lives with the worker
        child_env = {**os.environ, **env, "CUDA_VISIBLE_DEVICES": target.uuid}
        child_env.setdefault("PYTHONUNBUFFERED", "1")
        command = [
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
            "--retime-budget-s",
            str(budgets.retime_s * 0.8),
            "--scratch",
            scratch,
            "--expect-uuid",
            target.uuid,
        ]
        if target.parent_uuid is not None:
            command += ["--expect-parent", target.parent_uuid]
            if target.sm_count is not None:
                command += ["--expect-sms", str(target.sm_count)]
        self.proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE if level == "retime" else subprocess.DEVNULL,
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

    def go(self, proceed: bool) -> None:
        """Tell a waiting second process to start (or, with False, to leave)."""
        if self.proc.stdin is None:
            return
        with contextlib.suppress(OSError):
            if proceed:
                self.proc.stdin.write(b"go\n")
            self.proc.stdin.close()

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stderr_tail(self, limit: int = 16000) -> str:
        self.stderr.seek(0, os.SEEK_END)
        size = self.stderr.tell()
        self.stderr.seek(max(0, size - limit))
        return self.stderr.read().decode(errors="replace")

    def supervise(self) -> _Run:
        """Read events until the worker ends, killing it when a phase overruns."""
        run = _Run()
        phase_started = time.monotonic()
        while True:
            budget = self.budgets.of(run.phase)
            remaining = budget - (time.monotonic() - phase_started)
            try:
                event = self.events.get(timeout=max(0.0, remaining))
            except queue.Empty:
                self.kill()
                run.failure = (
                    Reason.TIMEOUT.value,
                    f"{run.phase} phase did not finish within {budget:g}s; "
                    "the measurement process was killed",
                )
                break
            if event is None:  # stream closed: the worker ended
                self.proc.wait()
                if self.proc.returncode != 0 and run.failure is None:
                    tail = self.stderr_tail()
                    reason = exit_reason(self.proc.returncode, tail)
                    last = tail.strip().splitlines()[-1] if tail.strip() else ""
                    run.failure = (
                        reason.value,
                        f"measurement process exited with code {self.proc.returncode} during "
                        f"the {run.phase} phase: {last}",
                    )
                break
            kind = event.get("event")
            if kind == "phase":
                run.phase = str(event["phase"])
                phase_started = time.monotonic()
            elif kind == "device":
                run.stages["startup"] = float(event.get("startup_seconds", 0.0))
            elif kind == "gemm":
                result = GemmMeasurement.model_validate(event["result"])
                run.gemm[result.size] = result
                run.trials.append(event.get("trials", []))
            elif kind == "block":
                raw = dict(event["result"])
                run.blocks[str(raw.get("workload"))] = raw
            elif kind == "phase_done":
                run.stages[str(event["phase"])] = float(event["seconds"])
            elif kind == "failed":
                run.failure = (str(event["reason"]), str(event["message"]))
                run.phase = str(event.get("phase", run.phase))
        run.stderr_tail = self.stderr_tail()
        self.stderr.close()
        return run


def _blocks_of(first: _Run, second: _Run | None) -> dict[str, CompileMeasurement]:
    """Each reference block's measurement, failed where nothing came."""
    done: dict[str, CompileMeasurement] = {}
    for workload in timing.WORKLOADS:
        cold = first.blocks.get(workload)
        if cold is None:
            if first.failure is not None:
                reason, message = first.failure
                if first.phase != "compile":
                    message = f"not run: the {first.phase} phase failed first ({message})"
            else:
                reason, message = Reason.WORKER_CRASHED.value, "worker sent no result"
            done[workload] = timing.failed(workload, BLOCKS[workload], reason, short(message))
            continue
        warm: dict[str, Any] | None = None
        if second is not None:
            warm = second.blocks.get(workload)
            if warm is None:
                reason, message = second.failure or (
                    Reason.WORKER_CRASHED.value,
                    "worker sent no result",
                )
                warm = {"ok": False, "reason": reason, "message": short(message, 400)}
        done[workload] = timing.merge(cold, warm)
    return done


def _measurements(
    level: str, sizes: Sequence[int], first: _Run, second: _Run | None
) -> Measurements:
    """Every size and (at level full) both reference blocks, failed where nothing came."""
    gemm = dict(first.gemm)
    if first.failure is not None:
        reason, message = first.failure
        for size in sizes:
            gemm.setdefault(size, _failed_gemm(size, reason, message))
    blocks = _blocks_of(first, second) if level == "full" else {}
    return Measurements(
        gemm=[gemm[s] for s in sizes if s in gemm],
        compile=blocks.get("inference"),
        training=blocks.get("training"),
    )


class _Device:
    """A device's workers: the first, and at level full the second, started together."""

    def __init__(
        self,
        target: Target,
        level: str,
        *,
        sizes: Sequence[int],
        budgets: Budgets,
        python: str,
        env: dict[str, str],
    ) -> None:
        self.target = target
        self.level = level
        self.sizes = list(sizes)
        self.scratch = tempfile.mkdtemp(prefix="maxtune-measure-", dir=scratch_base())
        common: dict[str, Any] = {
            "target": target,
            "sizes": sizes,
            "budgets": budgets,
            "python": python,
            "env": env,
            "scratch": self.scratch,
        }
        self.second: _Worker | None = None
        try:
            self.first = _Worker(level=level, **common)
        except OSError:
            shutil.rmtree(self.scratch, ignore_errors=True)
            raise
        try:
            self.second = _Worker(level="retime", **common) if level == "full" else None
        except OSError:
            self.first.kill()
            shutil.rmtree(self.scratch, ignore_errors=True)
            raise

    def workers(self) -> list[_Worker]:
        return [w for w in (self.first, self.second) if w is not None]

    def supervise(self) -> GpuOutcome:
        try:
            first = self.first.supervise()
            second: _Run | None = None
            if self.second is not None:
                proceed = any(b.get("ok") for b in first.blocks.values())
                self.second.go(proceed)
                if proceed:
                    second = self.second.supervise()
                else:
                    self.second.kill()
            outcome = GpuOutcome(
                uuid=self.target.uuid,
                measurements=_measurements(self.level, self.sizes, first, second),
                trials=first.trials,
                stderr_tail=first.stderr_tail
                + (f"\n--- second process ---\n{second.stderr_tail}" if second else ""),
            )
            outcome.stage_seconds.update(first.stages)
            if second is not None and "retime" in second.stages:
                outcome.stage_seconds["retime"] = second.stages["retime"]
            return outcome
        finally:
            shutil.rmtree(self.scratch, ignore_errors=True)


def measure(
    targets: Sequence[Target],
    level: str,
    *,
    sizes: Sequence[int] = DEFAULT_SIZES,
    budgets: Budgets | None = None,
    busy: Callable[[Target], tuple[int, ...]] | None = None,
    python: str = sys.executable,
    env: dict[str, str] | None = None,
) -> dict[str, GpuOutcome]:
    """Measure every target (whole GPUs and gate-passing MIG slices) in parallel."""
    if level == "inventory":
        return {}
    budgets = budgets or Budgets()
    outcomes: dict[str, GpuOutcome] = {}
    devices: list[_Device] = []
    results: dict[str, GpuOutcome] = {}
    try:
        for target in targets:
            pids = busy(target) if busy is not None else target.busy_pids
            others = tuple(p for p in pids if p != os.getpid())
            if others:
                outcomes[target.uuid] = GpuOutcome(
                    uuid=target.uuid,
                    measurements=None,
                    skipped=(
                        Reason.GPU_BUSY.value,
                        f"{target.label} has {len(others)} other compute process(es) "
                        f"(pids {', '.join(map(str, others[:5]))}); measurement skipped, "
                        "retried on a later round",
                    ),
                )
                continue
            try:
                device = _Device(
                    target, level, sizes=sizes, budgets=budgets, python=python, env=env or {}
                )
            except OSError as exc:  # no writable folder for the compiler caches, no python
                failed = _Run(failure=(Reason.FAILED.value, f"{target.label}: {exc}"))
                outcomes[target.uuid] = GpuOutcome(
                    uuid=target.uuid, measurements=_measurements(level, sizes, failed, None)
                )
                continue
            devices.append(device)
        threads = [
            threading.Thread(target=lambda d=d: results.__setitem__(d.target.uuid, d.supervise()))
            for d in devices
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for device in devices:
            for worker in device.workers():
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
