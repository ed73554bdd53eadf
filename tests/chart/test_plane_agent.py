"""The agent run from its DaemonSet pod spec in simulation mode, with its pod-bound token.

Proves the chart's side of the agent: the flags parse, the fleet ConfigMap mount reaches
`--simulate`, NODE_NAME comes from the pod's node, and the agent's RBAC and the own-profile
policy let it publish exactly its node's GPUNodeProfile.
"""

from __future__ import annotations

import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from maxtune.contract.names import GROUP, PROFILE_PLURAL, VERSION
from maxtune_dev.localplane import LocalPlane, wait_for
from maxtune_dev.localplane.process import free_port
from tests.chart.conftest import GPU_PRESENT, Installer
from tests.chart.localrun import kapi, pod_token, pods, prepare, token_kubeconfig

pytestmark = [pytest.mark.plane, pytest.mark.slow]

NodeFactory = Callable[..., list[str]]

FLEET = """\
name: chart-tests
gpuModels:
  h100:
    product: NVIDIA H100 80GB HBM3
    memoryMib: 81559
    computeCapability: "9.0"
    smCount: 132
nodes:
  - name: {node}
    gpus:
      - {{model: h100, count: 8}}
"""


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


def _agent_pod(k8s: ApiClient, namespace: str, node: str) -> Any:
    return next((p for p in pods(k8s, namespace, "agent") if p.spec.node_name == node), None)


def _profile(k8s: ApiClient, node: str) -> Any:
    try:
        found = kapi("CustomObjectsApi", k8s).get_cluster_custom_object(
            GROUP, VERSION, PROFILE_PLURAL, node
        )
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return found if found.get("status") else None


def test_simulated_agent_publishes_its_node_profile(
    *,
    plane: LocalPlane,
    k8s: ApiClient,
    namespace: str,
    install: Installer,
    kwok_nodes: NodeFactory,
    tmp_path: Path,
) -> None:
    (node,) = kwok_nodes(labels=GPU_PRESENT)
    kapi("CoreV1Api", k8s).create_namespaced_config_map(
        namespace,
        {"metadata": {"name": "fleet"}, "data": {"fleet.yaml": FLEET.format(node=node)}},
    )
    values = {
        "agent": {"level": "inventory", "simulate": {"enabled": True, "fleetConfigMap": "fleet"}}
    }
    release = install(values)
    pod = wait_for(partial(_agent_pod, k8s, namespace, node), timeout_s=60, what=f"agent on {node}")
    kubeconfig = token_kubeconfig(plane, pod_token(k8s, pod), tmp_path / "agent.kubeconfig")
    port = free_port()
    run = prepare(
        k8s,
        pod,
        "agent",
        tmp_path / "agent",
        kubeconfig,
        replace_args={"--metrics-port": str(port)},
    )
    assert run.env["NODE_NAME"] == node
    simulate = run.argv[run.argv.index("--simulate") + 1]
    assert Path(simulate).read_text() == FLEET.format(node=node)
    log = tmp_path / "agent.log"
    with log.open("wb") as out:
        process = run.start(out)
        try:
            found = wait_for(
                lambda: process.poll() is None and _profile(k8s, node),
                timeout_s=90,
                what=f"{node}'s profile published (log: {log})",
            )
            wait_for(
                lambda: _status(f"http://127.0.0.1:{port}/readyz") == 200,
                timeout_s=30,
                what="the agent's /readyz",
            )
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    status = found["status"]
    assert status["source"] == "simulation"
    assert status["summary"]["smCount"] == 132 and status["summary"]["capable"] is True
    assert found["spec"]["nodeName"] == node
    assert pod.spec.service_account_name == f"{release.fullname}-agent"
