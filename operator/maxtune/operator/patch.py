"""RFC 6902 JSON patches that carry a Decision onto the pod it was made for.

Every operation is valid against the object it was computed from: containers
that do not exist yet (`env`, `annotations`, `affinity` and what lies under
it) are created whole, existing lists are appended to with `-`, and keys are
escaped (`~` as `~0`, `/` as `~1`). Nothing is replaced that the user wrote,
and running the webhook again over its own output yields no operation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from maxtune.contract.names import ANNOTATION_DECISION
from maxtune.operator.decision import Decision
from maxtune.operator.records import as_dict, as_list

Op = dict[str, Any]

_REQUIRED = "requiredDuringSchedulingIgnoredDuringExecution"


def escape(token: str) -> str:
    """A JSON-pointer reference token (RFC 6901)."""
    return token.replace("~", "~0").replace("/", "~1")


def build(pod: Mapping[str, Any], decision: Decision) -> list[Op]:
    return [
        *_env_ops(pod, decision),
        *_affinity_ops(pod, decision),
        *_annotation_ops(pod, decision),
    ]


def _env_ops(pod: Mapping[str, Any], decision: Decision) -> list[Op]:
    ops: list[Op] = []
    spec = as_dict(pod.get("spec"))
    for plan in decision.containers:
        if not plan.add_env:
            continue
        base = f"/spec/{plan.kind}/{plan.index}"
        values = [dict(v) for v in plan.add_env]
        if as_dict(as_list(spec.get(plan.kind))[plan.index]).get("env") is None:
            ops.append({"op": "add", "path": f"{base}/env", "value": values})
        else:
            ops.extend({"op": "add", "path": f"{base}/env/-", "value": v} for v in values)
    return ops


def _affinity_ops(pod: Mapping[str, Any], decision: Decision) -> list[Op]:
    wanted = [dict(e) for e in decision.expressions]
    if not wanted:
        return []
    spec = as_dict(pod.get("spec"))
    term = {"matchExpressions": wanted}
    required_value = {"nodeSelectorTerms": [term]}
    affinity = spec.get("affinity")
    if not isinstance(affinity, Mapping):
        return [
            {
                "op": "add",
                "path": "/spec/affinity",
                "value": {"nodeAffinity": {_REQUIRED: required_value}},
            }
        ]
    node_affinity = affinity.get("nodeAffinity")
    if not isinstance(node_affinity, Mapping):
        return [
            {
                "op": "add",
                "path": "/spec/affinity/nodeAffinity",
                "value": {_REQUIRED: required_value},
            }
        ]
    required = node_affinity.get(_REQUIRED)
    base = f"/spec/affinity/nodeAffinity/{_REQUIRED}"
    if not isinstance(required, Mapping):
        return [{"op": "add", "path": base, "value": required_value}]
    ops: list[Op] = []
    for i, raw_term in enumerate(as_list(required.get("nodeSelectorTerms"))):
        current = as_dict(raw_term)
        expressions = current.get("matchExpressions")
        if not as_list(expressions) and not as_list(current.get("matchFields")):
            continue  # an empty term matches no node; adding to it would change that
        missing = [e for e in wanted if e not in as_list(expressions)]
        if not missing:
            continue
        path = f"{base}/nodeSelectorTerms/{i}/matchExpressions"
        if isinstance(expressions, list):
            ops.extend({"op": "add", "path": f"{path}/-", "value": e} for e in missing)
        else:
            ops.append({"op": "add", "path": path, "value": missing})
    return ops


def _annotation_ops(pod: Mapping[str, Any], decision: Decision) -> list[Op]:
    text = decision.annotation()
    meta = pod.get("metadata")
    if not isinstance(meta, Mapping):
        return [
            {
                "op": "add",
                "path": "/metadata",
                "value": {"annotations": {ANNOTATION_DECISION: text}},
            }
        ]
    annotations = meta.get("annotations")
    if annotations is None:
        return [
            {"op": "add", "path": "/metadata/annotations", "value": {ANNOTATION_DECISION: text}}
        ]
    if not isinstance(annotations, Mapping) or annotations.get(ANNOTATION_DECISION) == text:
        return []
    return [
        {"op": "add", "path": f"/metadata/annotations/{escape(ANNOTATION_DECISION)}", "value": text}
    ]
