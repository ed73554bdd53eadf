"""Agents as real `maxtune agent` processes on simulated GPUs, and a fleet file for them.

Each agent is the DaemonSet's entry point run here: its own process, the admin kubeconfig
(RBAC is proven elsewhere, see tests/security), a fleet file for its GPUs, a one-second round so
faults show within seconds, and its /metrics, /healthz and /readyz on a free port of 127.0.0.1.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from maxtune_dev.localplane import wait_for
from maxtune_dev.localplane.process import free_port

MAXTUNE = Path(sys.executable).parent / "maxtune"

# Two GPU models whose advice differs: a big GPU that measures a clear gain from max-autotune,
# and a small one below the SM gate. Figures are illustrative, not measurements.
MODELS: dict[str, Any] = {
    "big": {
        "product": "NVIDIA H100 80GB HBM3",
        "memoryMib": 81559,
        "computeCapability": "9.0",
        "smCount": 132,
        "gemm": [{"size": 4096, "tritonTflops": 726.0, "cublasTflops": 728.0}],
        "compile": {
            "eagerStepMs": 2.0,
            "modes": {
                "default": {"stepMs": 1.60, "compileSeconds": 3.8},
                "max-autotune-no-cudagraphs": {"stepMs": 1.45, "compileSeconds": 8.7},
                "max-autotune": {"stepMs": 1.40, "compileSeconds": 9.1},
            },
        },
        # The advice rests on the training reference: the same clear gain there.
        "training": {
            "modes": {
                "default": {"stepMs": 1.60, "compileSeconds": 3.8},
                "max-autotune-no-cudagraphs": {"stepMs": 1.45, "compileSeconds": 8.7},
                "max-autotune": {"stepMs": 1.40, "compileSeconds": 9.1},
            },
        },
    },
    "small": {
        "product": "Tesla T4",
        "memoryMib": 15360,
        "computeCapability": "7.5",
        "smCount": 40,
        # A model without GEMM figures is never fully measured, so later rounds try again
        # (and measuredTime moves): give it one, so a kept measurement is told from a new one.
        "gemm": [{"size": 4096, "tritonTflops": 40.0, "cublasTflops": 45.0}],
    },
}


def write_fleet(path: Path, nodes: dict[str, str], count: int = 2) -> Path:
    """A fleet file giving each node `count` GPUs of its model ("big" or "small")."""
    body = {
        "name": "faults",
        "software": {"driverVersion": "580.159.04", "torchVersion": "2.11.0"},
        "gpuModels": MODELS,
        "nodes": [
            {"name": node, "gpus": [{"model": model, "count": count}]}
            for node, model in nodes.items()
        ],
    }
    path.write_text(yaml.safe_dump(body))
    return path


class AgentProcess:
    """`maxtune agent` for one simulated node, restartable, with its endpoints at hand."""

    def __init__(self, node: str, fleet: Path, kubeconfig: Path, logs: Path) -> None:
        self.node = node
        self.fleet = fleet
        self.kubeconfig = kubeconfig
        self.port = free_port()
        self.log_path = logs / f"agent-{node}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> AgentProcess:
        assert self.proc is None or self.proc.poll() is not None
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    str(MAXTUNE),
                    "agent",
                    "--node-name",
                    self.node,
                    "--kubeconfig",
                    str(self.kubeconfig),
                    "--simulate",
                    str(self.fleet),
                    "--metrics-host",
                    "127.0.0.1",
                    "--metrics-port",
                    str(self.port),
                    "--interval",
                    "1",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout_s: float = 60) -> None:
        def ready() -> bool:
            if not self.alive():
                raise RuntimeError(f"agent {self.node} exited:\n{self.tail()}")
            return self.get("/readyz")[0] == 200

        wait_for(ready, timeout_s=timeout_s, interval_s=0.2, what=f"agent {self.node} ready")

    def send(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a stopped process cannot act on SIGTERM
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=3) as r:
                return int(r.status), r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, ""
        except OSError:
            return 0, ""

    def metric(self, name: str) -> float:
        status, text = self.get("/metrics")
        assert status == 200, f"agent {self.node} metrics not served:\n{self.tail()}"
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name:
                    return float(sample.value)
        return 0.0

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
