"""Helpers for the operator's plane tests: the operator as a process, profiles, waiting."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from opcerts import WebhookPki
from prometheus_client.parser import text_string_to_metric_families

from maxtune.localplane import wait_for
from maxtune.localplane.process import free_port
from maxtune.operator import registration
from maxtune.operator.kube import Kube, KubeError

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "crds"
MAXTUNE = Path(sys.executable).parent / "maxtune"
PROFILES = "/apis/maxtune.io/v1alpha1/gpunodeprofiles"
POLICIES = "/apis/maxtune.io/v1alpha1/autotunepolicies"
WEBHOOKS = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"


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
        extra: tuple[str, ...] = (),
    ) -> None:
        self.kubeconfig = kubeconfig
        self.pki = pki
        self.namespace = namespace
        self.identity = identity
        self.lease = lease
        self.extra = extra
        self.webhook_port = free_port()
        self.metrics_port = free_port()
        self.log_path = logs / f"operator-{identity}.log"
        self.proc: subprocess.Popen[bytes] | None = None

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
            "--lease-duration-seconds",
            "4",
            "--renew-deadline-seconds",
            "3",
            "--retry-period-seconds",
            "0.5",
            "--orphan-grace-seconds",
            "2",
            "--shutdown-grace-seconds",
            "0",
            "--relist-seconds",
            "20",
            *self.extra,
        ]

    def start(self, *, wait: bool = True) -> None:
        assert self.proc is None or self.proc.poll() is not None
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.command(),
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        log.close()
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout_s: float = 60) -> None:
        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"operator exited with {self.proc.returncode}:\n{self.tail()}")
            return self.get("/readyz")[0] == 200

        wait_for(ready, timeout_s=timeout_s, interval_s=0.2, what=f"operator {self.identity} ready")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.metrics_port}{path}", timeout=5
            ) as r:
                return int(r.status), r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, ""
        except OSError:
            return 0, ""

    def metric(self, name: str, **labels: str) -> float:
        status, text = self.get("/metrics")
        assert status == 200, f"metrics not served:\n{self.tail()}"
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    return float(sample.value)
        return 0.0

    def tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def webhook_configuration(
    name: str, port: int, ca_pem: bytes, excluded: list[str]
) -> dict[str, Any]:
    """Shaped like the chart's: one entry per opt-in path, both failing open."""
    url = f"https://127.0.0.1:{port}/mutate"
    return registration.webhook_configuration(name, url, ca_pem, excluded)


# ---------------------------------------------------------------- objects


def put_profile(kube: Kube, body: dict[str, Any]) -> dict[str, Any]:
    """Create or update a GPUNodeProfile (spec, then status through its subresource)."""
    name = body["metadata"]["name"]
    meta = {"name": name}
    try:
        current = kube.request(
            "POST",
            PROFILES,
            body={
                "apiVersion": body["apiVersion"],
                "kind": body["kind"],
                "metadata": meta,
                "spec": body["spec"],
            },
        )
    except KubeError as exc:
        if exc.status != 409:
            raise
        current = kube.request("GET", f"{PROFILES}/{name}")
    if "status" in body:
        current = kube.request(
            "PATCH",
            f"{PROFILES}/{name}/status",
            body={"status": body["status"]},
            content_type="application/merge-patch+json",
        )
    return dict(current)


def delete_quietly(kube: Kube, path: str) -> None:
    try:
        kube.request("DELETE", path)
    except KubeError as exc:
        if exc.status != 404:
            raise


def node_labels(kube: Kube, name: str) -> dict[str, str]:
    return dict(kube.request("GET", f"/api/v1/nodes/{name}")["metadata"].get("labels") or {})


def maxtune_labels(kube: Kube, name: str) -> dict[str, str]:
    return {k: v for k, v in node_labels(kube, name).items() if k.startswith("maxtune.io/")}


def eventually(probe: Any, what: str, timeout_s: float = 30) -> Any:
    return wait_for(probe, timeout_s=timeout_s, interval_s=0.2, what=what)


def settle(seconds: float) -> None:
    time.sleep(seconds)
