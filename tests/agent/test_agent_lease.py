"""The heartbeat Lease's bodies (pure; tests/agent/test_plane.py sends them to an API server)."""

from __future__ import annotations

from datetime import UTC, datetime

from maxtune.agent.lease import CLEAR_MANAGED_FIELDS, micro_time, new_lease, renewal
from maxtune.contract.names import LABEL_AGENT_LEASE

NOW = datetime(2026, 12, 1, 12, 0, 0, 123456, tzinfo=UTC)
LATER = datetime(2026, 12, 1, 12, 1, 0, tzinfo=UTC)
OWNER = {"apiVersion": "v1", "kind": "Node", "name": "gpu-1", "uid": "u-1"}


def test_first_round_names_the_node_and_its_owner() -> None:
    lease = new_lease("maxtune", "gpu-1", OWNER, 180, NOW)
    assert lease["metadata"] == {
        "name": "gpu-1",
        "namespace": "maxtune",
        "labels": {LABEL_AGENT_LEASE: "true", "app.kubernetes.io/managed-by": "maxtune"},
        "ownerReferences": [OWNER],
    }
    assert lease["spec"] == {
        "holderIdentity": "gpu-1",
        "leaseDurationSeconds": 180,
        "renewTime": "2026-12-01T12:00:00.123456Z",
        "acquireTime": "2026-12-01T12:00:00.123456Z",
    }
    assert "ownerReferences" not in new_lease("maxtune", "gpu-1", None, 180, NOW)["metadata"]


def test_renewal_clears_field_tracking_once_and_keeps_the_version() -> None:
    answer = new_lease("maxtune", "gpu-1", OWNER, 180, NOW)
    answer["metadata"].update(
        resourceVersion="41",
        uid="l-1",
        managedFields=[{"manager": "maxtune", "operation": "Update", "fieldsType": "FieldsV1"}],
    )
    body = renewal(answer, "gpu-1", 180, LATER)
    assert body["metadata"]["managedFields"] == CLEAR_MANAGED_FIELDS == [{}]
    assert body["metadata"]["resourceVersion"] == "41"  # a write by anyone else: a conflict
    assert body["spec"]["renewTime"] == micro_time(LATER) == "2026-12-01T12:01:00.000000Z"
    assert body["spec"]["acquireTime"] == answer["spec"]["acquireTime"]
    assert answer["metadata"]["managedFields"][0]["manager"] == "maxtune"  # input untouched

    # The server's answer to that carries no record: the next renewal sends none either.
    cleared = {
        **body,
        "metadata": {k: v for k, v in body["metadata"].items() if k != "managedFields"},
    }
    assert "managedFields" not in renewal(cleared, "gpu-1", 180, LATER)["metadata"]


def test_renewal_puts_back_the_heartbeat_label_and_takes_the_lease_over() -> None:
    """A Lease read back after a conflict: someone removed the label or held it."""
    found = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "gpu-1", "namespace": "maxtune", "labels": {"team": "ml"}},
        "spec": {"holderIdentity": "someone", "leaseDurationSeconds": 15},
    }
    body = renewal(found, "gpu-1", 180, LATER)
    assert body["metadata"]["labels"] == {"team": "ml", LABEL_AGENT_LEASE: "true"}
    assert body["spec"]["holderIdentity"] == "gpu-1"
    assert body["spec"]["leaseDurationSeconds"] == 180
    assert found["metadata"]["labels"] == {"team": "ml"}
