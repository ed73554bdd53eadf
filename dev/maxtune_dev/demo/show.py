"""What the demo shows once the stack is up: a mutated pod and the Prometheus answers.

Everything printed is read back from the cluster or from Prometheus, never restated from what we
asked for: the pod as the API server stored it after the webhook, the node kube-scheduler bound it
to and that node's labels, and the query results as Prometheus's HTTP API returns them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from kubernetes.client.exceptions import ApiException

from maxtune.contract.names import (
    ANNOTATION_DECISION,
    ANNOTATION_STEERING,
    LABEL_CLASS,
    LABEL_INJECT,
    LABEL_MODE,
    PREFIX,
    RESOURCE_GPU,
)
from maxtune_dev.demo.prometheus import Prometheus
from maxtune_dev.demo.stack import Stack
from maxtune_dev.localplane import wait_for

Out = Callable[[str], None]
TEAM_NAMESPACE = "team-a"

# One query per component: the operator's fleet view, and the agents' per-GPU gate verdicts.
FLEET_QUERY = "max by (capable, gpu_class) (maxtune_operator_nodes)"
GPU_QUERY = "sort_desc(count by (node) (maxtune_gpu_max_autotune_capable == 1))"


def training_pod(
    name: str, *, opted_in: bool, resource: str = RESOURCE_GPU, steering: str | None = None
) -> dict[str, Any]:
    labels = {LABEL_INJECT: "true"} if opted_in else {}
    annotations = {ANNOTATION_STEERING: steering} if steering else {}
    return {
        "metadata": {"name": name, "labels": labels, "annotations": annotations},
        "spec": {
            "containers": [
                {
                    "name": "train",
                    # Never pulled: kwok runs no containers, it only reports them running.
                    "image": "registry.invalid/train:1",
                    "resources": {"limits": {resource: "1"}},
                }
            ]
        },
    }


def _bound(core: Any, namespace: str, name: str) -> Any:
    pod = core.read_namespaced_pod(name, namespace)
    return pod if pod.spec.node_name else None


def show_pods(stack: Stack, out: Out) -> None:
    """Create an opted-in and a plain GPU pod in a team namespace; print what became of them."""
    core = stack.core
    try:
        core.create_namespace({"metadata": {"name": TEAM_NAMESPACE}})
    except ApiException as exc:
        if exc.status != 409:
            raise
    wait_for(
        lambda: any(
            sa.metadata.name == "default"
            for sa in core.list_namespaced_service_account(TEAM_NAMESPACE).items
        ),
        timeout_s=60,
        what=f"service account {TEAM_NAMESPACE}/default",
    )
    _show_one(core, "train", None, out)
    out("")
    _show_one(core, "train-steered", "require", out)
    plain = core.create_namespaced_pod(TEAM_NAMESPACE, training_pod("plain", opted_in=False))
    touched = ANNOTATION_DECISION in (plain.metadata.annotations or {}) or bool(
        plain.spec.containers[0].env or plain.spec.affinity
    )
    out(
        "a pod without the opt-in label: "
        + ("CHANGED (unexpected)" if touched else "untouched (no decision, no env, no affinity)")
    )


def _show_one(core: Any, name: str, steering: str | None, out: Out) -> None:
    """Create one opted-in training pod; print the decision, what changed, where it landed."""
    created = core.create_namespaced_pod(
        TEAM_NAMESPACE, training_pod(name, opted_in=True, steering=steering)
    )
    asked = f", annotation {ANNOTATION_STEERING}={steering}" if steering else ""
    out(
        f"created pod {TEAM_NAMESPACE}/{name}: label {LABEL_INJECT}=true{asked}, limits "
        f"{RESOURCE_GPU}: 1 (its image is never pulled: kwok runs no containers)"
    )
    decision = json.loads((created.metadata.annotations or {}).get(ANNOTATION_DECISION, "{}"))
    speeds = decision.pop("speeds", None)
    out(f"{ANNOTATION_DECISION} (written by the webhook; `speeds` shown as a table below):")
    for line in json.dumps(decision, indent=2, sort_keys=True).splitlines():
        out(f"  {line}")
    if speeds is not None:
        out(
            f"  speeds: fastest {speeds['fastestMs']} ms, tolerance "
            f"{speeds['speedTolerance']:.0%}, min capacity share {speeds['minCapacityShare']:.0%}"
        )
        out(f"    {'CLASS':<42} {'MODE':<14} {'STEP':>9} {'GPUS':>6}")
        for cls, (mode, step, share) in sorted(speeds["classes"].items(), key=lambda kv: -kv[1][2]):
            shown = f"{step:.3f} ms" if step is not None else "-"
            out(f"    {cls:<42} {mode:<14} {shown:>9} {share:>6.0%}")
    env = created.spec.containers[0].env or []
    out("environment added to the container: " + ("none" if not env else ""))
    for item in env:
        out(f"  {item.name}={item.value}")
    affinity = created.spec.affinity
    required = (
        affinity.node_affinity.required_during_scheduling_ignored_during_execution
        if affinity and affinity.node_affinity
        else None
    )
    if required is None:
        out("node affinity added: none (placement kept: every node the pod could use)")
    else:
        out("node affinity added (the pod may only land where these settings hold):")
        for term in required.node_selector_terms:
            for expr in term.match_expressions or []:
                out(f"  {expr.key} {expr.operator} {expr.values}")
    pod = wait_for(
        lambda: _bound(core, TEAM_NAMESPACE, name), timeout_s=60, what=f"{name} scheduled"
    )
    node = core.read_node(pod.spec.node_name)
    labels = {k: v for k, v in (node.metadata.labels or {}).items() if k.startswith(PREFIX)}
    out(
        f"kube-scheduler bound it to {pod.spec.node_name}: {LABEL_MODE}={labels.get(LABEL_MODE)}, "
        f"{LABEL_CLASS}={labels.get(LABEL_CLASS)}"
    )


def remove_team_namespace(stack: Stack) -> None:
    try:
        stack.core.delete_namespace(TEAM_NAMESPACE)
    except ApiException as exc:
        if exc.status != 404:
            raise


def show_queries(prometheus: Prometheus, out: Out) -> None:
    out("The operator's view of the fleet (every replica reports it; max collapses them):")
    out(f"$ curl -s '{prometheus.query_url(FLEET_QUERY)}'")
    for sample in sorted(
        prometheus.query(FLEET_QUERY),
        key=lambda s: (s.labels.get("capable") != "true", s.labels.get("gpu_class", "")),
    ):
        out(
            f"  capable={sample.labels.get('capable', '?'):<5}  "
            f"{sample.labels.get('gpu_class', '?'):<42} {sample.value:.0f} node(s)"
        )
    out("The agents' per-GPU verdicts: GPUs and MIG slices that pass the gate, per node:")
    out(f"$ curl -s '{prometheus.query_url(GPU_QUERY)}'")
    for sample in prometheus.query(GPU_QUERY):
        out(f"  {sample.labels.get('node', '?'):<18} {sample.value:.0f}")
