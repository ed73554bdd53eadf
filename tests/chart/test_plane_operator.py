"""The chart's own pod specs, run: the operator from its Deployment, the smoke test, the cleanup.

What only a running operator can prove about the chart: its command line parses, its RBAC is
enough for the real process to become ready and label nodes through the label policy, its TLS
material serves the webhook the API server calls, and the helm-test script passes against it.
"""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import ApiClient

from maxtune.contract.names import (
    ANNOTATION_DECISION,
    GROUP,
    LABEL_CAPABLE,
    LABEL_MODE,
    LABEL_SM_COUNT,
    PREFIX,
    PROFILE_PLURAL,
    VERSION,
)
from maxtune_dev.localplane import LocalPlane, wait_for
from tests.chart.conftest import GPU_PRESENT, Installer, Release
from tests.chart.helmkit import CHART
from tests.chart.localrun import (
    LocalContainer,
    flag_value,
    kapi,
    pod_token,
    pods,
    prepare,
    token_client,
    token_kubeconfig,
    unbound_token,
)
from tests.chart.profiles import BIG, SMALL, profile, status

pytestmark = [pytest.mark.plane, pytest.mark.slow]

NodeFactory = Callable[..., list[str]]


def _http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


@dataclass
class RunningOperator:
    release: Release
    run: LocalContainer
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        """SIGTERM, as the kubelet sends when helm deletes the Deployment (idempotent)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def operator(
    plane: LocalPlane, k8s: ApiClient, install: Installer, tmp_path: Path
) -> Iterator[RunningOperator]:
    """The release's first operator pod, run here as the kubelet would have run it."""
    release = install()
    pod = wait_for(
        lambda: next(iter(pods(k8s, release.namespace, "operator")), None),
        timeout_s=60,
        what="an operator pod",
    )
    kubeconfig = token_kubeconfig(plane, pod_token(k8s, pod), tmp_path / "operator.kubeconfig")
    run = prepare(k8s, pod, "operator", tmp_path / "operator", kubeconfig)
    log_path = tmp_path / "operator.log"
    with log_path.open("wb") as log:
        running = RunningOperator(release, run, run.start(log), log_path)
        try:
            readyz = f"http://127.0.0.1:{flag_value(run.argv, '--metrics-port')}/readyz"
            wait_for(
                lambda: running.process.poll() is None and _http_status(readyz) == 200,
                timeout_s=60,
                what=f"the operator's /readyz (log: {log_path})",
            )
            yield running
        finally:
            running.stop()
    code = running.process.returncode
    if code not in (0, -signal.SIGTERM):
        pytest.fail(f"operator exited {code}:\n{log_path.read_text()[-3000:]}")


def test_operator_runs_from_the_deployment_spec_and_passes_the_helm_test(
    plane: LocalPlane, k8s: ApiClient, operator: RunningOperator
) -> None:
    release, run = operator.release, operator.run
    assert run.argv[1] == "operator"
    assert run.env["POD_NAMESPACE"] == release.namespace
    assert run.env["POD_NAME"].startswith(f"{release.fullname}-operator-")
    # The helm test pod's own arguments, with its in-cluster URLs pointed at this operator and
    # its CA file (the Secret's ca.crt, which it mounts) written here.
    test_pod = next(o for o in release.hook_manifests("test") if o["kind"] == "Pod")
    args = list(test_pod["spec"]["containers"][0]["args"])
    swap = {
        "--readyz-url": f"http://127.0.0.1:{release.metrics_port}/readyz",
        "--webhook-url": release.values["webhook"]["url"],
        "--ca-file": str(run.root / "ca.crt"),
    }
    for name, value in swap.items():
        args[args.index(name) + 1] = value
    secret = kapi("CoreV1Api", k8s).read_namespaced_secret(
        f"{release.fullname}-webhook-tls", release.namespace
    )
    (run.root / "ca.crt").write_bytes(base64.b64decode(secret.data["ca.crt"]))
    script = str(CHART / "files" / "smoke_test.py")
    argv = [sys.executable, script, *args, "--kubeconfig", str(plane.kubeconfig)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    for check in ("crds", "readyz", "webhook", "tls-only"):
        assert f"ok    {check}:" in done.stdout, done.stdout


def test_fleet_labelled_opted_in_pod_mutated_and_uninstall_unlabels(
    plane: LocalPlane,
    k8s: ApiClient,
    kwok_nodes: NodeFactory,
    operator: RunningOperator,
    tmp_path: Path,
) -> None:
    release = operator.release
    big, small = kwok_nodes(2, labels=GPU_PRESENT)
    core = kapi("CoreV1Api", k8s)

    # Each node's agent publishes its profile with its own pod-bound token (policy: allowed).
    for node, product in ((big, BIG), (small, SMALL)):
        agent_pod = wait_for(
            partial(_pod_on, k8s, release.namespace, node), timeout_s=60, what=f"agent on {node}"
        )
        with token_client(plane, pod_token(k8s, agent_pod)) as api:
            profiles = kapi("CustomObjectsApi", api)
            profiles.create_cluster_custom_object(GROUP, VERSION, PROFILE_PLURAL, profile(node))
            profiles.patch_cluster_custom_object_status(
                GROUP, VERSION, PROFILE_PLURAL, node, {"status": status(*product)}
            )

    def labels(node: str) -> dict[str, str]:
        found = core.read_node(node).metadata.labels or {}
        return {k: v for k, v in found.items() if k.startswith(PREFIX)}

    # The operator (its own token, through the node-label policy) labels both nodes.
    wait_for(lambda: labels(big).get(LABEL_CAPABLE) == "true", timeout_s=60, what=f"{big} labelled")
    wait_for(lambda: labels(small).get(LABEL_CAPABLE) == "false", timeout_s=60, what=f"{small}")
    assert labels(big)[LABEL_SM_COUNT] == "132" and labels(small)[LABEL_SM_COUNT] == "46"
    assert labels(big)[LABEL_MODE] and labels(small)[LABEL_MODE] == "default"
    assert core.read_node(big).metadata.labels["nvidia.com/gpu.present"] == "true"

    # An opted-in pod goes through the API server to the webhook (url mode, chart TLS).
    team = f"{release.namespace}-team"
    core.create_namespace({"metadata": {"name": team}})
    try:
        pod = core.create_namespaced_pod(
            team,
            {
                "metadata": {"name": "train", "labels": {"maxtune.io/inject": "true"}},
                "spec": {
                    "containers": [
                        {
                            "name": "train",
                            "image": "registry.invalid/train:1",
                            "resources": {"limits": {"nvidia.com/gpu": "1"}},
                        }
                    ]
                },
            },
        )
        decision = (pod.metadata.annotations or {}).get(ANNOTATION_DECISION)
        assert decision, "the webhook did not annotate the opted-in pod"
        assert json.loads(decision)["version"]
        plain = core.create_namespaced_pod(
            team,
            {
                "metadata": {"name": "plain"},
                "spec": {"containers": [{"name": "c", "image": "registry.invalid/c:1"}]},
            },
        )
        assert ANNOTATION_DECISION not in (plain.metadata.annotations or {})
    finally:
        core.delete_namespace(team)

    _uninstall_like_helm_and_kubelet(plane, k8s, operator, tmp_path)
    for node in (big, small):
        assert labels(node) == {}, node
        assert core.read_node(node).metadata.labels["nvidia.com/gpu.present"] == "true"


def _pod_on(k8s: ApiClient, namespace: str, node: str) -> Any:
    return next((p for p in pods(k8s, namespace, "agent") if p.spec.node_name == node), None)


def _uninstall_like_helm_and_kubelet(
    plane: LocalPlane, k8s: ApiClient, operator: RunningOperator, tmp_path: Path
) -> None:
    """helm uninstall, and the cleanup hook's command run as its pod would (kwok runs nothing).

    The operator fixture is still running here, as the operator pods would be until helm deletes
    the Deployment: stop it first, as that deletion does, so it cannot relabel.
    """
    release = operator.release
    hooks = release.hook_manifests("post-delete")
    job = next(o for o in hooks if o["kind"] == "Job")
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["maxtune"] and container["args"] == ["cleanup"]
    operator.stop()
    release.uninstall()
    # The hook's account, with exactly the hook's RBAC, for the command of the hook's pod.
    rbac, core = kapi("RbacAuthorizationV1Api", k8s), kapi("CoreV1Api", k8s)
    objects = {o["kind"]: o for o in hooks}
    core.create_namespaced_service_account(release.namespace, objects["ServiceAccount"])
    rbac.create_cluster_role(objects["ClusterRole"])
    rbac.create_cluster_role_binding(objects["ClusterRoleBinding"])
    try:
        token = unbound_token(k8s, release.namespace, objects["ServiceAccount"]["metadata"]["name"])
        kubeconfig = token_kubeconfig(plane, token, tmp_path / "cleanup.kubeconfig")
        maxtune = str(Path(sys.executable).with_name("maxtune"))
        argv = [maxtune, *container["args"], "--kubeconfig", str(kubeconfig)]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
    finally:
        rbac.delete_cluster_role_binding(objects["ClusterRoleBinding"]["metadata"]["name"])
        rbac.delete_cluster_role(objects["ClusterRole"]["metadata"]["name"])


def test_operator_is_never_refused_by_the_api_server(operator: RunningOperator) -> None:
    """The chart's RBAC is enough: nothing the real operator asks for is refused.

    (kopf's resource scanning would list customresourcedefinitions; the operator turns it off
    rather than the chart granting it.)
    """
    time.sleep(3)  # kopf's first requests come within a second of start
    refused = [line for line in operator.log.read_text().splitlines() if "Forbidden" in line]
    assert not refused, "\n".join(refused[:3])
