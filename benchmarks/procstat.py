"""CPU and memory of the processes on the machine, sampled while a benchmark runs.

On a 2-core machine every process competes: the operator, the API server, etcd,
kwok and the load generator. Each phase of a benchmark reports how many CPU
seconds each of them used, so a latency can be read next to who had the cores.
Peak memory is the RSS of the whole process (all its threads share it), sampled
every `interval` seconds with psutil; a short peak between two samples can be
missed, so the sampler runs at 10 Hz.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import psutil


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads) so far; 0 if it is gone.

    Children are not included: load generators report their own CPU use.
    """
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent outside idle/iowait, all cores together."""
    t = psutil.cpu_times()
    return float(sum(t) - t.idle - getattr(t, "iowait", 0.0))


@dataclass
class CpuWindow:
    """CPU seconds per named process between `start()` and `stop()`, and the machine's."""

    pids: Mapping[str, int]
    started_at: float = 0.0
    wall_s: float = 0.0
    before: dict[str, float] = field(default_factory=dict)
    used: dict[str, float] = field(default_factory=dict)
    machine_before: float = 0.0
    machine_used: float = 0.0

    def start(self) -> CpuWindow:
        self.started_at = time.monotonic()
        self.before = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self.machine_before = machine_busy_seconds()
        return self

    def track(self, name: str, pid: int) -> None:
        """Add a process started inside the window (all its CPU time counts)."""
        self.pids = {**self.pids, name: pid}
        self.before[name] = 0.0

    def stop(self) -> dict[str, Any]:
        self.wall_s = time.monotonic() - self.started_at
        self.used = {
            name: round(cpu_seconds(pid) - self.before[name], 3) for name, pid in self.pids.items()
        }
        self.machine_used = machine_busy_seconds() - self.machine_before
        return self.summary()

    def summary(self) -> dict[str, Any]:
        wall = max(self.wall_s, 1e-9)
        return {
            "wall_s": round(self.wall_s, 3),
            "cpu_s": self.used,
            "cores_used": {name: round(used / wall, 3) for name, used in self.used.items()},
            "machine_cores_busy": round(self.machine_used / wall, 3),
            "machine_cores": psutil.cpu_count() or 0,
        }


class RssSampler:
    """Peak resident memory of one process, sampled on a daemon thread."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.pid = pid
        self.interval = interval
        self.peak = 0
        self.last = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        try:
            process = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self._stop.is_set():
            try:
                rss = int(process.memory_info().rss)
            except psutil.Error:
                return
            self.last = rss
            self.peak = max(self.peak, rss)
            self.samples += 1
            self._stop.wait(self.interval)

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def load_average() -> tuple[float, float, float]:
    one, five, fifteen = os.getloadavg()
    return (round(one, 2), round(five, 2), round(fifteen, 2))
