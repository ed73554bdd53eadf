"""Fake nodes: the kwok convention of this project and a manifest helper.

kwok only manages nodes that carry the annotation `kwok.x-k8s.io/node: fake`,
so real nodes (if a test ever adds one by hand) are left alone. A node made by
`kwok_node` becomes Ready within a second or two of its creation, and every pod
that kube-scheduler binds to it is marked Running by kwok's pod stages.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from kubernetes import client

KWOK_ANNOTATION = "kwok.x-k8s.io/node"
KWOK_ANNOTATION_VALUE = "fake"
KWOK_SELECTOR = f"{KWOK_ANNOTATION}={KWOK_ANNOTATION_VALUE}"
# kwok renews each node's Lease at a quarter of this; the node-lifecycle
# controller's grace period (50 s) must outlast a missed renewal or two.
NODE_LEASE_SECONDS = 40

# Ordinary resources every fake node has unless the caller says otherwise: pods
# that ask for CPU or memory next to a GPU must still fit.
DEFAULT_CAPACITY: dict[str, str] = {"cpu": "64", "memory": "512Gi", "pods": "110"}

Taint = Mapping[str, str]


def stages_file() -> Path:
    """The Stage configuration kwok runs with (packaged next to this module)."""
    return Path(str(resources.files("maxtune_dev.localplane").joinpath("kwok-stages.yaml")))


def kwok_node(
    name: str,
    *,
    capacity: Mapping[str, str | int] | None = None,
    allocatable: Mapping[str, str | int] | None = None,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    taints: Sequence[Taint] = (),
) -> dict[str, Any]:
    """A Node manifest that kwok will manage, e.g. `capacity={"nvidia.com/gpu": 8}`.

    `allocatable` defaults to the capacity, as on a kubelet that reserves
    nothing. Taints are dicts with `key`, `effect` and optionally `value`.
    """
    full_capacity = {**DEFAULT_CAPACITY, **{k: str(v) for k, v in (capacity or {}).items()}}
    full_allocatable = (
        {**full_capacity, **{k: str(v) for k, v in allocatable.items()}}
        if allocatable is not None
        else dict(full_capacity)
    )
    node_labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "type": "kwok",
        **(labels or {}),
    }
    node_annotations = {
        KWOK_ANNOTATION: KWOK_ANNOTATION_VALUE,
        "node.alpha.kubernetes.io/ttl": "0",
        **(annotations or {}),
    }
    spec: dict[str, Any] = {}
    if taints:
        for taint in taints:
            if "key" not in taint or "effect" not in taint:
                raise ValueError(f"a taint needs 'key' and 'effect': {dict(taint)}")
        spec["taints"] = [dict(taint) for taint in taints]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": node_labels, "annotations": node_annotations},
        "spec": spec,
        "status": {"capacity": full_capacity, "allocatable": full_allocatable},
    }


def kwok_node_model(name: str, **options: Any) -> client.V1Node:
    """`kwok_node` as the typed client model, for `CoreV1Api.create_node` under mypy."""
    return client.V1Node.model_validate(kwok_node(name, **options))
