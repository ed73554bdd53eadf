"""The webhook benchmark's arms: who answers the API server's admission call, if anyone.

- `maxtune`: the operator's own webhook (the real `maxtune operator` process);
- `reference`: benchmarks/refwebhook.py, served exactly as the operator serves
  (aiohttp, the same TLS), one constant patch, no decision: what calling *a*
  Python webhook costs this plane;
- `reference-go-h2`, `reference-go-h1`: the same reference in Go's standard
  library (maxtune_dev/localplane/gosrc/refwebhook), offering HTTP/2 by ALPN or
  HTTP/1.1 alone: what the protocol costs, apart from any Python;
- `bare`: no webhook registered.

Every server gets the benchmark's serving certificate (SAN 127.0.0.1) and is
registered under the same webhook name, so the API server's own latency metric
compares like with like.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maxtune_dev.localplane.gobinaries import ensure_go_program
from maxtune_dev.localplane.process import free_port
from maxtune_dev.testkit.operator import OperatorProcess, WebhookPki
from maxtune_dev.testkit.promtext import Samples, parse

ROOT = Path(__file__).resolve().parents[1]
REFERENCES = ("reference", "reference-go-h2", "reference-go-h1")
ARMS = ("maxtune", *REFERENCES, "bare")


@dataclass
class Arm:
    """Where an arm's webhook answers; `pid` is the process that does the work."""

    name: str
    url: str | None = None
    port: int | None = None
    pid: int | None = None
    stats_url: str | None = None
    metrics_url: str | None = None  # a reference's own /metrics (its event-loop lag)

    def samples(self) -> Samples | None:
        """The server's own metrics, where it serves them apart from the operator's."""
        if self.metrics_url is None:
            return None
        with urllib.request.urlopen(self.metrics_url, timeout=5) as response:
            return parse(response.read().decode())

    def transport_stats(self) -> dict[str, int] | None:
        """The server's own counts of connections, resumed TLS sessions and requests."""
        if self.stats_url is None:
            return None
        with urllib.request.urlopen(self.stats_url, timeout=5) as response:
            found: dict[str, int] = json.loads(response.read())
        return found


class ReferenceProcess:
    """One reference webhook server as a child process."""

    def __init__(self, name: str, pki: WebhookPki, logs: Path) -> None:
        self.name = name
        self.pki = pki
        self.port = free_port()
        self.stats_port = free_port()
        self.log = logs / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        if self.name == "reference":
            return [
                sys.executable,
                "-m",
                "benchmarks.refwebhook",
                f"--port={self.port}",
                f"--stats-port={self.stats_port}",
                f"--tls-cert-file={self.pki.cert}",
                f"--tls-key-file={self.pki.key}",
            ]
        go = [
            str(ensure_go_program("refwebhook")),
            f"-addr=127.0.0.1:{self.port}",
            f"-stats-addr=127.0.0.1:{self.stats_port}",
            f"-cert={self.pki.cert}",
            f"-key={self.pki.key}",
        ]
        return [*go, "-http1"] if self.name == "reference-go-h1" else go

    def start(self, timeout_s: float = 30) -> Arm:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command(), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
            )
        stats = f"http://127.0.0.1:{self.stats_port}"
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{stats}/readyz", timeout=1):
                    break
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self.name} not ready after {timeout_s:.0f}s") from None
                time.sleep(0.1)
        return Arm(
            self.name,
            url=f"https://127.0.0.1:{self.port}/mutate",
            port=self.port,
            pid=self.proc.pid,
            stats_url=f"{stats}/stats",
            metrics_url=f"{stats}/metrics" if self.name == "reference" else None,
        )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def maxtune_arm(op: OperatorProcess) -> Arm:
    return Arm("maxtune", url=op.webhook_url, port=op.webhook_port, pid=op.pid)


def stats_delta(after: dict[str, int] | None, before: dict[str, int] | None) -> dict[str, Any]:
    if after is None or before is None:
        return {}
    return {k: v - before.get(k, 0) for k, v in after.items()}
