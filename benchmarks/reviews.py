"""AdmissionReview bodies shaped like the ones the API server sends for a training pod.

The API server posts the pod after its built-in admission: the service-account
volume and mounts, default tolerations, scheduler name, priority, termination
defaults. The bodies here carry those fields (about 3 KB, like a real review of
a single-container training pod), so JSON decoding costs what it costs in a
cluster. Each request gets its own uid (the server must echo it).

The mix: half plain GPU pods (steered to the best class), a fifth pinned to a
zone by nodeSelector, a fifth with required node affinity, a tenth asking for a
MIG slice.
"""

from __future__ import annotations

import copy
import json
from typing import Any

UID_PLACEHOLDER = "00000000-0000-4000-8000-000000000000"
# Shape name -> share of the requests (in tenths).
MIX: dict[str, int] = {"gpu": 5, "zone-selector": 2, "affinity": 2, "mig": 1}


def _container(resource: str, count: str) -> dict[str, Any]:
    return {
        "name": "trainer",
        "image": "nvcr.io/nvidia/pytorch:25.10-py3",
        "command": ["torchrun", "--nproc-per-node=8", "train.py"],
        "args": ["--config", "/etc/train/config.yaml", "--compile"],
        "env": [
            {"name": "NCCL_DEBUG", "value": "WARN"},
            {"name": "OMP_NUM_THREADS", "value": "8"},
            {"name": "WANDB_PROJECT", "value": "bench"},
        ],
        "resources": {
            "limits": {resource: count, "cpu": "32", "memory": "256Gi"},
            "requests": {resource: count, "cpu": "32", "memory": "256Gi"},
        },
        "volumeMounts": [
            {"name": "config", "mountPath": "/etc/train"},
            {"name": "dshm", "mountPath": "/dev/shm"},
            {
                "name": "kube-api-access-x7k2p",
                "readOnly": True,
                "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
            },
        ],
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent",
    }


def pod(
    namespace: str,
    *,
    resource: str = "nvidia.com/gpu",
    count: str = "8",
    extra_spec: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A defaulted training pod as admission sees it (opted in by its label)."""
    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "generateName": "train-",
            "namespace": namespace,
            "labels": {"app": "train", "maxtune.io/inject": "true", "team": "research"},
            "annotations": {"example.com/owner": "research"},
        },
        "spec": {
            "volumes": [
                {"name": "config", "configMap": {"name": "train-config", "defaultMode": 420}},
                {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "64Gi"}},
                {
                    "name": "kube-api-access-x7k2p",
                    "projected": {
                        "sources": [
                            {
                                "serviceAccountToken": {
                                    "expirationSeconds": 3607,
                                    "path": "token",
                                }
                            },
                            {
                                "configMap": {
                                    "name": "kube-root-ca.crt",
                                    "items": [{"key": "ca.crt", "path": "ca.crt"}],
                                }
                            },
                            {
                                "downwardAPI": {
                                    "items": [
                                        {
                                            "path": "namespace",
                                            "fieldRef": {
                                                "apiVersion": "v1",
                                                "fieldPath": "metadata.namespace",
                                            },
                                        }
                                    ]
                                }
                            },
                        ],
                        "defaultMode": 420,
                    },
                },
            ],
            "containers": [_container(resource, count)],
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default",
            "serviceAccount": "default",
            "securityContext": {},
            "schedulerName": "default-scheduler",
            "tolerations": [
                {
                    "key": "node.kubernetes.io/not-ready",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300,
                },
                {
                    "key": "node.kubernetes.io/unreachable",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300,
                },
            ],
            "priority": 0,
            "enableServiceLinks": True,
            "preemptionPolicy": "PreemptLowerPriority",
            **(extra_spec or {}),
        },
        "status": {},
    }


def pods(namespace: str) -> dict[str, dict[str, Any]]:
    """One pod per shape of the mix."""
    not_zone_a = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {
                                "key": "topology.kubernetes.io/zone",
                                "operator": "NotIn",
                                "values": ["zone-a"],
                            }
                        ]
                    }
                ]
            }
        }
    }
    return {
        "gpu": pod(namespace),
        "zone-selector": pod(
            namespace, extra_spec={"nodeSelector": {"topology.kubernetes.io/zone": "zone-b"}}
        ),
        "affinity": pod(namespace, extra_spec={"affinity": not_zone_a}),
        "mig": pod(namespace, resource="nvidia.com/mig-1g.10gb", count="1"),
    }


def review(obj: dict[str, Any], namespace: str) -> bytes:
    """The AdmissionReview the API server posts for creating `obj` (uid to be filled in)."""
    body = {
        "kind": "AdmissionReview",
        "apiVersion": "admission.k8s.io/v1",
        "request": {
            "uid": UID_PLACEHOLDER,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {
                "username": "system:serviceaccount:research:pipeline",
                "uid": "7d3c4a6e-2b1f-4f0e-9a57-0c1d2e3f4a5b",
                "groups": [
                    "system:serviceaccounts",
                    "system:serviceaccounts:research",
                    "system:authenticated",
                ],
            },
            "object": copy.deepcopy(obj),
            "oldObject": None,
            "dryRun": False,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"},
        },
    }
    return json.dumps(body, separators=(",", ":")).encode()


def mixed_bodies(namespace: str = "research") -> dict[str, bytes]:
    return {name: review(obj, namespace) for name, obj in pods(namespace).items()}


def rotation() -> list[str]:
    """The order shapes are sent in: MIX spread evenly over every ten requests."""
    order = ["gpu", "zone-selector", "gpu", "affinity", "gpu", "mig", "gpu", "zone-selector"]
    order += ["gpu", "affinity"]
    assert all(order.count(name) == share for name, share in MIX.items())
    return order
