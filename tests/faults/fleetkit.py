"""Many plain Node objects and their profiles, made fast, for the labeller's fault tests.

The labeller never looks at a node's readiness, so these nodes are bare API objects (no kwok
annotation): a few hundred cost kwok nothing. Requests run on a small thread pool; the API
server is the real one, so the numbers of writes the operator makes are real too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from maxtune.contract.names import LABEL_CAPABLE, LABEL_CLASS, LABEL_MODE, LABEL_SM_COUNT
from maxtune.kube import Kube, KubeError
from maxtune_dev import testkit
from maxtune_dev.testkit import cluster

T = TypeVar("T")
Labels = dict[str, str]

# What the operator must write for a node whose profile is one of these (independent of the
# operator's code: the gate says 132 and 108 SMs pass and 40 do not; measured gains decide).
KINDS: dict[str, tuple[testkit.Product, float | None, Labels]] = {
    "h100": (
        testkit.H100,
        0.08,
        {
            LABEL_CAPABLE: "true",
            LABEL_MODE: "max-autotune",
            LABEL_SM_COUNT: "132",
            LABEL_CLASS: "nvidia-h100-80gb-hbm3-132sm",
        },
    ),
    "h100-slow": (
        testkit.H100,
        -0.02,
        {
            LABEL_CAPABLE: "true",
            LABEL_MODE: "default",
            LABEL_SM_COUNT: "132",
            LABEL_CLASS: "nvidia-h100-80gb-hbm3-132sm",
        },
    ),
    "a100-slow": (
        testkit.A100,
        -0.05,
        {
            LABEL_CAPABLE: "true",
            LABEL_MODE: "default",
            LABEL_SM_COUNT: "108",
            LABEL_CLASS: "nvidia-a100-sxm4-40gb-108sm",
        },
    ),
    "t4": (
        testkit.T4,
        None,
        {
            LABEL_CAPABLE: "false",
            LABEL_MODE: "default",
            LABEL_SM_COUNT: "40",
            LABEL_CLASS: "tesla-t4-40sm",
        },
    ),
}


def parallel(fn: Callable[[T], Any], items: Iterable[T], workers: int = 6) -> None:
    with ThreadPoolExecutor(workers) as pool:
        for _ in pool.map(fn, items):
            pass


def create_node(kube: Kube, name: str, labels: Labels) -> None:
    kube.request(
        "POST",
        "/api/v1/nodes",
        body={
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **labels}},
            "status": {"capacity": {"nvidia.com/gpu": "1"}, "allocatable": {"nvidia.com/gpu": "1"}},
        },
    )


def put_kind(kube: Kube, name: str, kind: str) -> None:
    product, gain, _ = KINDS[kind]
    cluster.put_profile(kube, testkit.profile(name, product, 1, gain=gain))


def delete(kube: Kube, path: str) -> None:
    try:
        kube.request("DELETE", path)
    except KubeError as exc:
        if exc.status != 404:
            raise


def maxtune_labels_of_all(kube: Kube, prefix: str) -> dict[str, Labels]:
    """Every node whose name starts with `prefix` -> its maxtune.io/ labels (one list call)."""
    listed = kube.request("GET", "/api/v1/nodes")
    found: dict[str, Labels] = {}
    for item in listed["items"]:
        name = item["metadata"]["name"]
        if name.startswith(prefix):
            labels = item["metadata"].get("labels") or {}
            found[name] = {k: v for k, v in labels.items() if k.startswith("maxtune.io/")}
    return found


def all_labels_of(kube: Kube, name: str) -> Labels:
    return dict(kube.request("GET", f"/api/v1/nodes/{name}")["metadata"].get("labels") or {})
