"""Polling helpers for the things tests and the demo wait on in a kwok cluster.

Controllers act asynchronously, so every assertion about them is "eventually";
these helpers poll with a deadline and report the last state seen, which is
what you need to read a failure.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from kubernetes import client
from kubernetes.client import ApiClient

T = TypeVar("T")


def wait_for(
    probe: Callable[[], T | None], *, timeout_s: float = 60.0, interval_s: float = 0.25, what: str
) -> T:
    """Call `probe` until it returns something truthy; raise TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(interval_s)


def _node_ready(node: Any) -> bool:
    conditions = (node.status.conditions or []) if node.status else []
    ready = any(c.type == "Ready" and c.status == "True" for c in conditions)
    not_ready_taint = any(t.key == "node.kubernetes.io/not-ready" for t in (node.spec.taints or []))
    return ready and not not_ready_taint


def wait_node_ready(api: ApiClient, name: str, *, timeout_s: float = 60.0) -> Any:
    """Until the node is Ready and the node-lifecycle controller has lifted its not-ready taint.

    That second half is what makes the node schedulable: the TaintNodesByCondition
    admission plugin taints every new node until the controller sees it Ready.
    """
    core = client.CoreV1Api(api)

    def probe() -> Any:
        node = core.read_node(name)
        return node if _node_ready(node) else None

    return wait_for(probe, timeout_s=timeout_s, what=f"node {name} Ready and untainted")


def wait_pod_running(api: ApiClient, namespace: str, name: str, *, timeout_s: float = 60.0) -> Any:
    """Until the pod is bound to a node and its phase is Running."""
    core = client.CoreV1Api(api)

    def probe() -> Any:
        pod = core.read_namespaced_pod(name, namespace)
        bound = bool(pod.spec and pod.spec.node_name)
        return pod if bound and pod.status and pod.status.phase == "Running" else None

    return wait_for(probe, timeout_s=timeout_s, what=f"pod {namespace}/{name} Running")
