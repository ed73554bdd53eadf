"""A real local Kubernetes control plane for maxtune's tests, demo and benchmarks.

etcd, kube-apiserver, kube-controller-manager and kube-scheduler are built from
pinned Go modules (plus kwok for fake GPU nodes and helm for the chart), run on
127.0.0.1 with a fresh PKI, and torn down with everything they started.

    from maxtune_dev.localplane import LocalPlane, kwok_node

    with LocalPlane() as plane:
        api = plane.api_client()
        ...

`python -m maxtune_dev.localplane up|down|env|status|build` does the same for a person.
"""

from maxtune_dev.localplane.build import Binaries, BuildError, binaries, ensure_binaries
from maxtune_dev.localplane.kwok import KWOK_ANNOTATION, KWOK_SELECTOR, kwok_node, kwok_node_model
from maxtune_dev.localplane.plane import LocalPlane, PlaneError
from maxtune_dev.localplane.waits import wait_for, wait_node_ready, wait_pod_running

__all__ = [
    "KWOK_ANNOTATION",
    "KWOK_SELECTOR",
    "Binaries",
    "BuildError",
    "LocalPlane",
    "PlaneError",
    "binaries",
    "ensure_binaries",
    "kwok_node",
    "kwok_node_model",
    "wait_for",
    "wait_node_ready",
    "wait_pod_running",
]
