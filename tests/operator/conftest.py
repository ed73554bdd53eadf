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
import yaml
from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from maxtune.kube import Kube
from maxtune_dev.localplane import wait_for
from maxtune_dev.testkit.cluster import CRDS
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
    ext = client.ApiextensionsV1Api(k8s)
    for path in sorted(CRDS.glob("*.yaml")):
        body = yaml.safe_load(path.read_text())
        name = body["metadata"]["name"]
        try:
            ext.create_custom_resource_definition(body)
        except ApiException as exc:
            if exc.status != 409:
                raise
            current = ext.read_custom_resource_definition(name)
            body["metadata"]["resourceVersion"] = current.metadata.resource_version
            ext.replace_custom_resource_definition(name, body)

        def established(name: str = name) -> bool:
            conditions = ext.read_custom_resource_definition(name).status.conditions or []
            return any(c.type == "Established" and c.status == "True" for c in conditions)

        wait_for(established, timeout_s=60, what=f"CRD {name} Established")


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
