"""Fixtures for fault tests: the operator and agents as real processes on the session plane.

The operator is `maxtune operator` (tests/operator/cluster.py's OperatorProcess, with its
webhook registered through a MutatingWebhookConfiguration shaped like the chart's); agents are
`maxtune agent` processes on simulated GPUs (procs.py). Each fixture undoes what it made, so a
fault test leaves the plane as it found it, restarted components included.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from maxtune.kube import Kube
from maxtune_dev.testkit import cluster
from maxtune_dev.testkit import operator as operatorkit
from tests.agent.conftest import agent_crds  # noqa: F401 - the CRDs from crds/, as a fixture

OperatorFactory = Callable[..., operatorkit.OperatorProcess]


@pytest.fixture(scope="session")
def kube(k8s: ApiClient) -> Kube:
    """The operator's own JSON client on the admin credentials (no typed models in the way)."""
    return Kube(k8s.configuration)


@pytest.fixture(scope="module")
def webhook_pki(tmp_path_factory: pytest.TempPathFactory) -> operatorkit.WebhookPki:
    return operatorkit.write_pki(tmp_path_factory.mktemp("webhook-pki"))


@pytest.fixture(scope="module")
def operator_namespace(k8s: ApiClient) -> Iterator[str]:
    core = client.CoreV1Api(k8s)
    name = f"maxtune-faults-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name, propagation_policy="Background")


@pytest.fixture(scope="module")
def operators(
    kubeconfig: Path,
    agent_crds: None,  # noqa: F811
    webhook_pki: operatorkit.WebhookPki,
    operator_namespace: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorFactory]:
    """`operators(identity="op-a", lease=...)`: an OperatorProcess (not started); all stopped."""
    made: list[operatorkit.OperatorProcess] = []
    logs = tmp_path_factory.mktemp("operator-logs")

    def make(
        identity: str = "op-a", lease: str = "maxtune-labeller"
    ) -> operatorkit.OperatorProcess:
        op = operatorkit.OperatorProcess(
            kubeconfig, webhook_pki, operator_namespace, logs, identity=identity, lease=lease
        )
        made.append(op)
        return op

    yield make
    for op in made:
        if op.proc is not None:
            op.stop()


@pytest.fixture(scope="module")
def registered_webhook(
    kube: Kube, webhook_pki: operatorkit.WebhookPki
) -> Iterator[Callable[..., str]]:
    """`registered_webhook(operator)`: its MutatingWebhookConfiguration, deleted afterwards."""
    names: list[str] = []

    def register(op: operatorkit.OperatorProcess) -> str:
        name = f"maxtune-faults-{uuid.uuid4().hex[:6]}"
        body = operatorkit.webhook_configuration(
            name, op.webhook_port, webhook_pki.ca_pem, ["kube-system", op.namespace]
        )
        kube.request("POST", operatorkit.WEBHOOKS, body=body)
        names.append(name)
        return name

    yield register
    for name in names:
        cluster.delete_quietly(kube, f"{operatorkit.WEBHOOKS}/{name}")


def delete_nodes(k8s: ApiClient, names: list[str]) -> None:
    core = client.CoreV1Api(k8s)
    for name in names:
        try:
            core.delete_node(name)
        except ApiException as exc:
            if exc.status != 404:
                raise
