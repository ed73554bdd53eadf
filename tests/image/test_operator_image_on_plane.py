"""The operator image, run against the real local control plane: ready, labelling, admitting.

The operator is the same `maxtune operator` command line the operator suite runs
(maxtune_dev.testkit.operator's OperatorProcess), but started inside the built image with
`buildah run --network host`, as user 65532, with the plane's kubeconfig and the webhook's TLS
files mounted read-only the way a pod mounts its Secrets. The API server calls its webhook on
127.0.0.1; kwok provides the GPU node.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from kubernetes import client
from kubernetes.client import ApiClient

from imagebuild.build import Built
from imagebuild.buildah import Container
from maxtune.contract.names import ANNOTATION_DECISION, LABEL_CAPABLE, LABEL_SM_COUNT
from maxtune.kube import Kube
from maxtune_dev import testkit
from maxtune_dev.testkit import cluster
from maxtune_dev.testkit import operator as operatorkit
from tests.agent.conftest import agent_crds  # noqa: F401 - the CRDs from crds/, as a fixture
from tests.image.built import container, require

pytestmark = [pytest.mark.plane, pytest.mark.image, pytest.mark.slow]

IMAGE_USER = 65532
NodeFactory = Callable[..., list[str]]


class ImageOperator(operatorkit.OperatorProcess):
    """OperatorProcess whose command runs inside the operator image (`buildah run`)."""

    def __init__(self, inside: Container, secrets: Path, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.inside = inside
        self.secrets = secrets

    def command(self) -> list[str]:
        argv = super().command()
        assert argv[0] == str(operatorkit.MAXTUNE)
        volume = f"{self.secrets}:{self.secrets}:ro"
        return self.inside.argv(["maxtune", *argv[1:]], volumes=[volume])

    def served_by(self) -> psutil.Process:
        """The operator's own process: the leaf below buildah and its chroot helpers."""
        assert self.proc is not None
        leaves = [
            p
            for p in psutil.Process(self.proc.pid).children(recursive=True)
            if not p.children() and "operator" in p.cmdline()
        ]
        assert len(leaves) == 1, leaves
        return leaves[0]

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Signal the operator itself, as a container runtime does (buildah run would SIGKILL)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            with contextlib.suppress(psutil.NoSuchProcess):
                self.served_by().send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=30)
        return super().stop(sig)  # the exit status, or buildah's own SIGKILL after 30 s


@pytest.fixture(scope="module")
def operator_image() -> Built:
    return require("operator")["operator"]


@pytest.fixture(scope="module")
def kube(k8s: ApiClient) -> Kube:
    return Kube(k8s.configuration)


@pytest.fixture(scope="module")
def image_operator(
    kubeconfig: Path,
    k8s: ApiClient,
    agent_crds: None,  # noqa: F811
    operator_image: Built,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ImageOperator]:
    # The Secrets a pod would mount: the plane's kubeconfig and the webhook's serving PKI,
    # readable by the image's user only.
    secrets = tmp_path_factory.mktemp("operator-secrets")
    pki = operatorkit.write_pki(secrets)
    shutil.copyfile(kubeconfig, secrets / "kubeconfig")
    for path in [*secrets.iterdir(), secrets]:
        os.chown(path, IMAGE_USER, IMAGE_USER)
        path.chmod(0o500 if path.is_dir() else 0o400)
    core = client.CoreV1Api(k8s)
    namespace = f"maxtune-image-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    logs = tmp_path_factory.mktemp("operator-logs")
    try:
        with container(operator_image) as inside:
            op = ImageOperator(inside, secrets, secrets / "kubeconfig", pki, namespace, logs)
            op.start()
            try:
                yield op
            finally:
                code = op.stop()
            assert code == 0, f"the operator exited {code} on SIGTERM:\n{op.tail()}"
    finally:
        core.delete_namespace(namespace, propagation_policy="Background")


@pytest.fixture(scope="module")
def webhook(kube: Kube, image_operator: ImageOperator) -> Iterator[str]:
    name = f"maxtune-image-{uuid.uuid4().hex[:6]}"
    body = operatorkit.webhook_configuration(
        name,
        image_operator.webhook_port,
        image_operator.pki.ca_pem,
        ["kube-system", image_operator.namespace],
    )
    kube.request("POST", operatorkit.WEBHOOKS, body=body)
    yield name
    cluster.delete_quietly(kube, f"{operatorkit.WEBHOOKS}/{name}")


def test_operator_is_ready_from_inside_the_image(image_operator: ImageOperator) -> None:
    """Ready (/readyz answered 200 on the host's 127.0.0.1) and served from the image's files."""
    served = image_operator.served_by()
    assert os.readlink(f"/proc/{served.pid}/root") != "/", "it runs in the host's file system"
    # Its root (seen through /proc) holds the image's venv; the host's holds none.
    assert Path(f"/proc/{served.pid}/root/opt/maxtune/bin/maxtune").is_file()
    assert not Path("/opt/maxtune").exists()
    venv = "/opt/maxtune/bin"
    assert served.cmdline()[:3] == [f"{venv}/python", f"{venv}/maxtune", "operator"]
    assert served.uids().real == IMAGE_USER
    assert image_operator.get("/readyz")[0] == 200
    assert image_operator.metric("maxtune_operator_ready") == 1


def test_operator_labels_a_kwok_gpu_node_from_its_profile(
    kube: Kube, image_operator: ImageOperator, kwok_nodes: NodeFactory
) -> None:
    node = kwok_nodes(1, prefix="h100")[0]
    writes = image_operator.metric("maxtune_operator_label_writes_total")
    cluster.put_profile(kube, testkit.profile(node, testkit.H100))

    def labelled() -> dict[str, str] | None:
        found = cluster.maxtune_labels(kube, node)
        return found if LABEL_CAPABLE in found else None

    try:
        labels = cluster.eventually(labelled, f"maxtune labels on {node}")
        assert labels[LABEL_CAPABLE] == "true"
        assert labels[LABEL_SM_COUNT] == "132"
        cluster.count_becomes(
            lambda: image_operator.metric("maxtune_operator_label_writes_total"),
            writes + 1,
            "label writes",
        )
    finally:
        cluster.delete_quietly(kube, f"{cluster.PROFILES}/{node}")


@pytest.mark.usefixtures("webhook")
def test_operator_answers_the_api_servers_admission_review(
    kube: Kube, image_operator: ImageOperator, namespace: str
) -> None:
    patched = image_operator.metric("maxtune_operator_admission_requests_total", result="patched")
    created = kube.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/pods",
        body=testkit.pod(testkit.gpu_container(), name="train"),
    )
    decision = (created["metadata"].get("annotations") or {}).get(ANNOTATION_DECISION)
    assert decision, f"the webhook did not annotate the opted-in pod:\n{image_operator.tail()}"
    assert json.loads(decision)["version"]
    assert (
        image_operator.metric("maxtune_operator_admission_requests_total", result="patched")
        == patched + 1
    )
    plain = kube.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/pods",
        body={
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "plain"},
            "spec": {"containers": [{"name": "c", "image": "registry.invalid/c:1"}]},
        },
    )
    assert ANNOTATION_DECISION not in (plain["metadata"].get("annotations") or {})
