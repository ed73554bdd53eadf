"""The bodies of an agent's heartbeat Lease: the first round's and every renewal's.

Pure, so the agent (maxtune.agent.kube.KubeSink) and the fleet benchmarks' simulated
agents send the same bytes.

A renewal leaves the Lease without `metadata.managedFields`. Server-side field tracking
was about a sixth of the API server's CPU for each renewal (kube-apiserver's CPU profile
under renewals, docs/benchmarks/heartbeatcost.md), for a record nobody reads: only this
node's agent writes this Lease (the agent-profile-guard policy enforces it). Sending
`managedFields: [{}]` clears the record (documented API behaviour), and for an update of an
object without one the API server does not start tracking (its skip-non-applied field
manager), so later renewals, which send none, stay untracked. A server-side apply by anyone
would start tracking again; the next renewal clears it again.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from maxtune.contract.names import LABEL_AGENT_LEASE

# A managedFields list of one empty entry: "remove the field-tracking record".
CLEAR_MANAGED_FIELDS: list[dict[str, Any]] = [{}]


def micro_time(moment: datetime) -> str:
    """A Kubernetes MicroTime (RFC 3339 with microseconds, UTC)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def node_owner(node: str, uid: str) -> dict[str, str]:
    """The Node as the Lease's owner: the garbage collector deletes the Lease with it."""
    return {"apiVersion": "v1", "kind": "Node", "name": node, "uid": uid}


def _spec(node: str, lease_seconds: int, now: datetime) -> dict[str, Any]:
    return {
        "holderIdentity": node,
        "leaseDurationSeconds": lease_seconds,
        "renewTime": micro_time(now),
    }


def new_lease(
    namespace: str,
    node: str,
    owner: Mapping[str, Any] | None,
    lease_seconds: int,
    now: datetime,
) -> dict[str, Any]:
    """The first round's Lease: named after the node, labelled, owned by the Node if known."""
    metadata: dict[str, Any] = {
        "name": node,
        "namespace": namespace,
        "labels": {LABEL_AGENT_LEASE: "true", "app.kubernetes.io/managed-by": "maxtune"},
    }
    if owner is not None:
        metadata["ownerReferences"] = [dict(owner)]
    spec = _spec(node, lease_seconds, now)
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": metadata,
        "spec": {**spec, "acquireTime": spec["renewTime"]},
    }


def renewal(
    last: Mapping[str, Any], node: str, lease_seconds: int, now: datetime
) -> dict[str, Any]:
    """The Lease as `last` (an answer of the API server) left it, renewed now.

    Its resourceVersion stays, so a write by anyone else in between is a conflict; the
    heartbeat label is put back if it went; a field-tracking record is cleared.
    """
    metadata = {k: v for k, v in (last.get("metadata") or {}).items() if k != "managedFields"}
    if (last.get("metadata") or {}).get("managedFields"):
        metadata["managedFields"] = CLEAR_MANAGED_FIELDS
    labels = dict(metadata.get("labels") or {})
    labels[LABEL_AGENT_LEASE] = "true"
    metadata["labels"] = labels
    return {
        **last,
        "metadata": metadata,
        "spec": {**(last.get("spec") or {}), **_spec(node, lease_seconds, now)},
    }
