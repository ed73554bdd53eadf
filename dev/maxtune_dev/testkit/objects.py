"""Kubernetes objects as the API server sends them: nodes, pods, AdmissionReviews.

Plain JSON bodies (never the generated client models): what the operator's
readers and the webhook take, and what the tests feed them.
"""

from __future__ import annotations

import json
from typing import Any

from maxtune.contract.names import RESOURCE_GPU

REVIEW_UID = "705ab4f5-6393-11e8-b7cc-42010a800002"


def node(
    name: str,
    gpus: dict[str, str] | None = None,
    *,
    labels: dict[str, str] | None = None,
    taints: list[dict[str, str]] | None = None,
    rv: str = "1",
    unschedulable: bool = False,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "uid": f"uid-{name}",
            "resourceVersion": rv,
            "labels": {"kubernetes.io/hostname": name, **(labels or {})},
        },
        "spec": {"taints": taints or []},
        "status": {"allocatable": {"cpu": "32", "memory": "256Gi", "pods": "110", **(gpus or {})}},
    }
    if unschedulable:
        body["spec"]["unschedulable"] = True
    return body


def pod(
    *containers: dict[str, Any],
    labels: dict[str, str] | None = None,
    spec: dict[str, Any] | None = None,
    annotations: dict[str, str] | None = None,
    name: str = "train",
) -> dict[str, Any]:
    """An opted-in pod (label maxtune.io/inject=true) with `containers` (one GPU one if none)."""
    meta: dict[str, Any] = {"name": name, "labels": {"maxtune.io/inject": "true", **(labels or {})}}
    if annotations is not None:
        meta["annotations"] = annotations
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {"containers": list(containers) or [gpu_container()], **(spec or {})},
    }


def gpu_container(
    name: str = "main", resource: str = RESOURCE_GPU, count: str = "1", **extra: Any
) -> dict[str, Any]:
    return {"name": name, "image": "pytorch", "resources": {"limits": {resource: count}}, **extra}


def review(obj: dict[str, Any], namespace: str = "team", operation: str = "CREATE") -> bytes:
    """The AdmissionReview the API server sends for `obj` (a pod CREATE by default)."""
    return json.dumps(
        {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": REVIEW_UID,
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": namespace,
                "operation": operation,
                "userInfo": {"username": "admin"},
                "object": obj,
                "dryRun": False,
            },
        }
    ).encode()
