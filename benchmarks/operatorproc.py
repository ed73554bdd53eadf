"""`maxtune operator` as a child process, started the way the chart's Deployment starts it.

The chart's arguments (leader election on, default lease timings, relist,
label concurrency) with the plane's admin kubeconfig and a webhook serving
certificate for 127.0.0.1 from a CA made here, so the API server and the load
generator both verify real TLS. Metrics are read from the operator's own
/metrics endpoint, the way Prometheus would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from benchmarks.promtext import Samples, parse
from maxtune.localplane.certs import ServingPki, write_serving_pki
from maxtune.localplane.process import free_port

MAXTUNE = Path(sys.executable).parent / "maxtune"


WebhookPki = ServingPki


def write_webhook_pki(folder: Path) -> WebhookPki:
    """A CA and a serving certificate for 127.0.0.1 (ECDSA P-256, as the chart's are)."""
    return write_serving_pki(folder)


class OperatorProcess:
    def __init__(self, kubeconfig: Path, pki: WebhookPki, namespace: str, logs: Path) -> None:
        self.kubeconfig = kubeconfig
        self.pki = pki
        self.namespace = namespace
        self.webhook_port = free_port()
        self.metrics_port = free_port()
        self.log_path = logs / "operator.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    @property
    def webhook_url(self) -> str:
        return f"https://127.0.0.1:{self.webhook_port}/mutate"

    def command(self) -> list[str]:
        return [
            str(MAXTUNE),
            "operator",
            "--kubeconfig",
            str(self.kubeconfig),
            "--namespace",
            self.namespace,
            "--identity",
            "bench-operator",
            "--webhook-host",
            "127.0.0.1",
            "--webhook-port",
            str(self.webhook_port),
            "--tls-cert-file",
            str(self.pki.cert),
            "--tls-key-file",
            str(self.pki.key),
            "--metrics-host",
            "127.0.0.1",
            "--metrics-port",
            str(self.metrics_port),
            "--leader-election",
            "--shutdown-grace-seconds",
            "0",
        ]

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.started_at = time.monotonic()
            self.proc = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    def wait_ready(self, timeout_s: float = 600) -> float:
        """Until /readyz answers 200; returns the seconds since start()."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"operator exited with {self.proc.returncode}:\n{self.tail()}")
            if self.get("/readyz")[0] == 200:
                return time.monotonic() - self.started_at
            time.sleep(0.1)
        raise TimeoutError(f"operator not ready after {timeout_s:.0f}s:\n{self.tail()}")

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.metrics_port}{path}", timeout=10
            ) as response:
                return int(response.status), response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, ""
        except OSError:
            return 0, ""

    def samples(self) -> Samples:
        """Every sample of /metrics, by sample name."""
        status, text = self.get("/metrics")
        if status != 200:
            raise RuntimeError(f"operator /metrics answered {status}:\n{self.tail()}")
        return parse(text)

    def metric(self, name: str) -> float:
        return sum(value for _, value in self.samples().get(name, []))

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
