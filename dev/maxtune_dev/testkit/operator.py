"""`maxtune operator` as a child process, started the way the chart's Deployment starts it.

One harness for the operator's plane tests, the fault and fuzz tests and the
benchmarks: the plane's admin kubeconfig, a webhook serving certificate for
127.0.0.1 from a CA made here (so the API server and any load generator verify
real TLS), metrics read from the operator's own /metrics the way Prometheus
would. `timings="test"` shortens leases, grace periods and relists so that
fault tests finish in seconds; `timings="chart"` keeps the chart's defaults
(the benchmarks measure what a cluster would run).
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
from typing import Any, Literal

from cryptography import x509

from maxtune.operator import registration
from maxtune_dev.localplane.certs import CertKey, ServingPki, write_serving_pki
from maxtune_dev.localplane.certs import make_ca as _make_ca
from maxtune_dev.localplane.process import free_port
from maxtune_dev.localplane.waits import wait_for
from maxtune_dev.testkit.promtext import Samples, parse, total

MAXTUNE = Path(sys.executable).parent / "maxtune"
WEBHOOKS = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"

WebhookPki = ServingPki
Timings = Literal["test", "chart"]

# Leases, orphan grace and relists short enough for fault tests to finish in seconds.
_TEST_TIMINGS = (
    "--lease-duration-seconds",
    "4",
    "--renew-deadline-seconds",
    "3",
    "--retry-period-seconds",
    "0.5",
    "--orphan-grace-seconds",
    "2",
)


def make_ca(cn: str = "maxtune-test-ca") -> CertKey:
    """A CA valid for a day: long enough for any test run, short enough to never matter."""
    return _make_ca(cn, days=1)


def write_pki(
    folder: Path, *, ca: CertKey | None = None, cn: str = "maxtune-webhook"
) -> WebhookPki:
    """CA + serving certificate (SAN 127.0.0.1 and localhost, ECDSA P-256) as PEM files."""
    return write_serving_pki(folder, ca=ca or make_ca(), common_name=cn, days=1)


def serial_of(pem: bytes) -> int:
    return x509.load_pem_x509_certificate(pem).serial_number


def webhook_configuration(
    name: str, port: int, ca_pem: bytes, excluded: list[str]
) -> dict[str, Any]:
    """Shaped like the chart's: one entry per opt-in path, both failing open."""
    url = f"https://127.0.0.1:{port}/mutate"
    return registration.webhook_configuration(name, url, ca_pem, excluded)


class OperatorProcess:
    """`maxtune operator` as a child process, restartable, with its metrics at hand."""

    def __init__(
        self,
        kubeconfig: Path,
        pki: WebhookPki,
        namespace: str,
        logs: Path,
        *,
        identity: str = "op-a",
        lease: str = "maxtune-labeller",
        timings: Timings = "test",
        extra: tuple[str, ...] = (),
    ) -> None:
        self.kubeconfig = kubeconfig
        self.pki = pki
        self.namespace = namespace
        self.identity = identity
        self.lease = lease
        self.timings = timings
        self.extra = extra
        self.webhook_port = free_port()
        self.metrics_port = free_port()
        self.log_path = logs / f"operator-{identity}.log"
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
            self.identity,
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
            "--lease-name",
            self.lease,
            *(_TEST_TIMINGS if self.timings == "test" else ()),
            "--shutdown-grace-seconds",
            "0",
            *self.extra,
        ]

    def start(self, *, wait: bool = True, timeout_s: float = 60) -> None:
        assert self.proc is None or self.proc.poll() is not None
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.started_at = time.monotonic()
            self.proc = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        if wait:
            self.wait_ready(timeout_s)

    def wait_ready(self, timeout_s: float = 60) -> float:
        """Until /readyz answers 200; returns the seconds since `start()`."""

        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"operator exited with {self.proc.returncode}:\n{self.tail()}")
            return self.get("/readyz")[0] == 200

        wait_for(ready, timeout_s=timeout_s, interval_s=0.1, what=f"operator {self.identity} ready")
        return time.monotonic() - self.started_at

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def get(self, path: str, timeout_s: float = 10) -> tuple[int, str]:
        """GET on the metrics port; (0, "") when nothing answers."""
        url = f"http://127.0.0.1:{self.metrics_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as response:
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

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of `name` whose labels include `labels` (0 if none)."""
        return total(self.samples(), name, **labels)

    def tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
