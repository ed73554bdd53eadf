"""The Lease's protobuf codec against the API server's own encoding (the real local plane)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes.client import ApiClient

from maxtune.agent import leaseproto
from maxtune.agent.lease import new_lease, renewal
from maxtune.kube import Kube, KubeError

pytestmark = pytest.mark.plane


def test_a_protobuf_renewal_is_read_as_json_writes_it_and_answered_as_json_reads_it(
    k8s: ApiClient, namespace: str
) -> None:
    """Every field the codec carries, written by protobuf PUT: the API server's JSON view of
    the stored Lease is what the JSON form said, and the protobuf answer decodes to it."""
    kube = Kube(k8s.configuration)
    collection = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
    owner = kube.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/configmaps",
        body={"metadata": {"name": "lease-owner"}},
    )
    first = new_lease(
        namespace,
        "gpu-proto",
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "name": "lease-owner",
            "uid": owner["metadata"]["uid"],
            "blockOwnerDeletion": False,
        },
        180,
        datetime.now(UTC),
    )
    first["metadata"]["annotations"] = {"note": "häppy ✓", "empty": ""}
    first["metadata"]["finalizers"] = ["maxtune.io/test"]
    first["spec"]["leaseTransitions"] = 2
    created = kube.request("POST", collection, body=first)
    path = f"{collection}/gpu-proto"
    try:
        body = renewal(created, "gpu-proto", 240, datetime.now(UTC) + timedelta(seconds=1))
        answer = leaseproto.decode(kube.request_protobuf("PUT", path, body=leaseproto.encode(body)))
        stored = kube.request("GET", path)
        assert answer == _comparable(stored)
        assert stored["metadata"]["resourceVersion"] != created["metadata"]["resourceVersion"]
        assert stored["spec"] == body["spec"]
        for key in ("labels", "annotations", "ownerReferences", "finalizers", "uid"):
            assert stored["metadata"][key] == created["metadata"][key], key
        assert "managedFields" not in stored["metadata"]  # the JSON create's record, cleared

        # A stale write: the API server's Status, in protobuf, read as a clear error.
        with pytest.raises(KubeError) as conflict:
            kube.request_protobuf("PUT", path, body=leaseproto.encode(body))
        assert conflict.value.status == 409
        assert conflict.value.reason == "Conflict"
        assert "gpu-proto" in conflict.value.message
        assert "modified" in conflict.value.message
    finally:
        kube.request(
            "PATCH",
            path,
            body={"metadata": {"finalizers": None}},
            content_type="application/merge-patch+json",
        )


def _comparable(stored: dict[str, Any]) -> dict[str, Any]:
    """The JSON answer as the codec reads protobuf: no managedFields record (none is kept)."""
    metadata = {k: v for k, v in stored["metadata"].items() if k != "managedFields"}
    return {**stored, "metadata": metadata}
