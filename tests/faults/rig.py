"""A small live fleet for fault tests: kwok GPU nodes, one agent process per node, the operator.

Nodes `big-0`, `big-1` (two H100s each, max-autotune measured worth it) and `small-0` (two T4s)
run their agents from the start; `late-0` is in the fleet file but gets its node and agent only
when a test asks (a node that joins after a fault). Pods in `namespace` are opted in.
"""

from __future__ import annotations

import base64
import json
import ssl
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client import ApiClient

from maxtune.contract.names import (
    ANNOTATION_DECISION,
    LABEL_CAPABLE,
    LABEL_CLASS,
    LABEL_MODE,
    LABEL_SM_COUNT,
)
from maxtune.kube import Kube
from maxtune_dev.localplane import kwok_node_model, wait_node_ready
from maxtune_dev.testkit import cluster
from maxtune_dev.testkit import operator as operatorkit
from tests.faults.procs import AgentProcess

BIG: dict[str, str] = {
    LABEL_CAPABLE: "true",
    LABEL_MODE: "max-autotune",
    LABEL_SM_COUNT: "132",
    LABEL_CLASS: "nvidia-h100-80gb-hbm3-132sm",
}
SMALL: dict[str, str] = {
    LABEL_CAPABLE: "false",
    LABEL_MODE: "default",
    LABEL_SM_COUNT: "40",
    LABEL_CLASS: "tesla-t4-40sm",
}
POLICY = f"{cluster.POLICIES}/default"


@dataclass
class Rig:
    kube: Kube
    k8s: ApiClient
    operator: operatorkit.OperatorProcess
    agents: dict[str, AgentProcess]
    roles: dict[str, str]  # role (big-0, big-1, small-0, late-0) -> node name
    namespace: str
    ca_file: Path
    made_nodes: list[str] = field(default_factory=list)

    def node(self, role: str) -> str:
        return self.roles[role]

    def expected(self, role: str) -> dict[str, str]:
        return dict(BIG if role.startswith(("big", "late")) else SMALL)

    def labels(self, role: str) -> dict[str, str]:
        return cluster.maxtune_labels(self.kube, self.node(role))

    def all_labelled(self, roles: list[str] | None = None) -> bool:
        wanted = roles or [r for r in self.roles if r in self.agents]
        return all(self.labels(r) == self.expected(r) for r in wanted)

    def profile_status(self, role: str) -> dict[str, Any]:
        found = self.kube.request("GET", f"{cluster.PROFILES}/{self.node(role)}")
        return dict(found.get("status") or {})

    def heartbeat(self, role: str) -> datetime:
        return datetime.fromisoformat(self.profile_status(role)["heartbeatTime"])

    def add_node(self, role: str) -> str:
        name = self.roles[role]
        client.CoreV1Api(self.k8s).create_node(
            kwok_node_model(name, capacity={"nvidia.com/gpu": 2})
        )
        self.made_nodes.append(name)
        wait_node_ready(self.k8s, name)
        return name

    def gpu_pod(self, name: str) -> dict[str, Any]:
        """A training pod that asks to be steered (so its decision shows max-autotune)."""
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "annotations": {"maxtune.io/steering": "require"}},
            "spec": {
                "terminationGracePeriodSeconds": 0,
                "containers": [
                    {
                        "name": "train",
                        "image": "pytorch:2.11",
                        "resources": {"limits": {"nvidia.com/gpu": "1"}},
                    }
                ],
            },
        }

    def create_pod(self, name: str) -> dict[str, Any]:
        path = f"/api/v1/namespaces/{self.namespace}/pods"
        return dict(self.kube.request("POST", path, body=self.gpu_pod(name)))

    def review(self, uid: str) -> bytes:
        """An AdmissionReview for a GPU pod in the opted-in namespace, as the API server sends."""
        return json.dumps(
            {
                "apiVersion": "admission.k8s.io/v1",
                "kind": "AdmissionReview",
                "request": {
                    "uid": uid,
                    "kind": {"group": "", "version": "v1", "kind": "Pod"},
                    "resource": {"group": "", "version": "v1", "resource": "pods"},
                    "namespace": self.namespace,
                    "operation": "CREATE",
                    "object": self.gpu_pod(f"direct-{uid[:8]}"),
                },
            }
        ).encode()

    def ask_webhook(self) -> tuple[int, dict[str, Any]]:
        """POST one review straight to the operator's webhook over TLS (no API server involved)."""
        uid = str(uuid.uuid4())
        context = ssl.create_default_context(cafile=str(self.operator.pki.ca_cert))
        request = urllib.request.Request(
            f"https://127.0.0.1:{self.operator.webhook_port}/mutate",
            data=self.review(uid),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5, context=context) as answer:
            status, body = int(answer.status), json.loads(answer.read())
        assert body["response"]["uid"] == uid and body["response"]["allowed"] is True
        return status, body


def decision_of(pod: dict[str, Any]) -> dict[str, Any]:
    annotations = pod["metadata"].get("annotations") or {}
    return dict(json.loads(annotations.get(ANNOTATION_DECISION, "{}")))


def patch_of(answer: dict[str, Any]) -> list[dict[str, Any]]:
    raw = answer["response"].get("patch")
    return list(json.loads(base64.b64decode(raw))) if raw else []


def cluster_policy(kube: Kube, **spec: Any) -> None:
    cluster.delete_quietly(kube, POLICY)
    body = {
        "apiVersion": "maxtune.io/v1alpha1",
        "kind": "AutotunePolicy",
        "metadata": {"name": "default"},
        "spec": spec,
    }
    kube.request("POST", cluster.POLICIES, body=body)


def profile_of(kube: Kube, node: str) -> dict[str, Any]:
    return dict(kube.request("GET", f"{cluster.PROFILES}/{node}"))
