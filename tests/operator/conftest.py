"""Fixtures for the operator on the real local control plane.

The operator runs as a subprocess (`maxtune operator ...`), the way the chart
runs it: its own TLS files from a CA made here, its webhook registered
through a MutatingWebhookConfiguration shaped like the chart's, the CRDs from
crds/ applied. Nothing in here stands in for the API server.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client import ApiClient

from maxtune.kube import Kube
from maxtune_dev.testkit.cluster import apply_crds
from maxtune_dev.testkit.operator import (
    WEBHOOKS,
    OperatorProcess,
    WebhookPki,
    webhook_configuration,
    write_pki,
)


@pytest.fixture(scope="session")
def kube(k8s: ApiClient) -> Kube:
    """The operator's own JSON client on the test plane's admin credentials."""
    return Kube(k8s.configuration)


@pytest.fixture(scope="session")
def maxtune_crds(k8s: ApiClient) -> None:
    """The CRDs from crds/ (created or replaced), Established before any test uses them."""
    kube = Kube(k8s.configuration)
    try:
        apply_crds(kube)
    finally:
        kube.close()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> WebhookPki:
    return write_pki(tmp_path_factory.mktemp("webhook-pki"))


@pytest.fixture(scope="module")
def operator_namespace(k8s: ApiClient) -> Iterator[str]:
    core = client.CoreV1Api(k8s)
    name = f"maxtune-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name, propagation_policy="Background")


CACHE_NAMESPACE = "cache-team"


@pytest.fixture(scope="module")
def cache_directory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The chart's compile-cache directory, as the operator's pod mounts it (one namespace)."""
    path = tmp_path_factory.mktemp("cache") / "directory.json"
    entry = {
        "group": "research",
        "host": "cache.example.svc",
        "port": 6379,
        "username": f"ns-{CACHE_NAMESPACE}",
        "readOnly": False,
        "secretName": "maxtune-compile-cache",
        "passwordKey": "password",
        "urlKey": "url",
        "urlTemplate": f"redis://ns-{CACHE_NAMESPACE}:$(MAXTUNE_CACHE_PASSWORD)@cache.example.svc:6379",
    }
    path.write_text(json.dumps({"version": 1, "namespaces": {CACHE_NAMESPACE: entry}}))
    return path


@pytest.fixture(scope="module")
def operator(
    kubeconfig: Path,
    maxtune_crds: None,
    pki: WebhookPki,
    operator_namespace: str,
    cache_directory: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    op = OperatorProcess(
        kubeconfig,
        pki,
        operator_namespace,
        tmp_path_factory.mktemp("operator-logs"),
        extra=("--compile-cache-directory", str(cache_directory)),
    )
    op.start()
    yield op
    op.stop()


@pytest.fixture(scope="module")
def webhook(kube: Kube, operator: OperatorProcess, pki: WebhookPki) -> Iterator[str]:
    name = f"maxtune-test-{uuid.uuid4().hex[:6]}"
    body = webhook_configuration(
        name, operator.webhook_port, pki.ca_pem, ["kube-system", operator.namespace]
    )
    kube.request("POST", WEBHOOKS, body=body)
    yield name
    kube.request("DELETE", f"{WEBHOOKS}/{name}")
