"""An agent's credentials write its own node's GPUNodeProfile and nothing else.

Real pod-bound tokens (what the kubelet projects into the DaemonSet's pods: they name the pod's
node) against the real API server, with the chart's RBAC and ValidatingAdmissionPolicy in force.
tests/chart/test_plane_security.py proves the main paths (its own profile written, another's
create and status patch refused, no token without a node); this test walks every verb and
subresource an agent could try on another node's profile, dry-run included, and checks the
profile never changes. The operator's token (which deletes orphaned profiles) may not write one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from maxtune.contract.names import GROUP, PROFILE_PLURAL, VERSION
from maxtune.kube import Kube, KubeError
from maxtune_dev.localplane import LocalPlane, wait_for
from tests.chart.conftest import GPU_PRESENT, Installer
from tests.chart.localrun import kapi, pod_token, pods, token_client
from tests.chart.profiles import BIG, SMALL, profile, status
from tests.chart.test_plane_security import _agent_on, _policies_enforced

pytestmark = [pytest.mark.plane, pytest.mark.slow]

NodeFactory = Callable[..., list[str]]
P = (GROUP, VERSION, PROFILE_PLURAL)
VAP = "may write only GPUNodeProfile"


def _refused(call: Callable[[], Any]) -> tuple[int, str]:
    with pytest.raises(ApiException) as caught:
        call()
    return int(caught.value.status or 0), str(caught.value.body)


def _layer(body: str) -> str:
    if VAP in body:
        return "admission policy"
    if "metadata.name must equal spec.nodeName" in body:
        return "CRD rule"
    if "cannot" in body and "resource" in body:
        return "RBAC"
    return body[:120]


def test_every_write_on_another_nodes_profile_is_refused(
    plane: LocalPlane, k8s: ApiClient, install: Installer, kwok_nodes: NodeFactory
) -> None:
    mine, other = kwok_nodes(2, labels=GPU_PRESENT)
    release = install()
    _policies_enforced(plane, k8s, release, mine)
    admin = kapi("CustomObjectsApi", k8s)
    admin.create_cluster_custom_object(*P, profile(other))
    admin.patch_cluster_custom_object_status(*P, other, {"status": status(*SMALL)})
    before = admin.get_cluster_custom_object(*P, other)

    capable = status(*BIG)
    replaced = {**before, "status": capable}
    spec_changed = {**before, "spec": {"nodeName": other}, "metadata": {**before["metadata"]}}
    apply_body = {  # JSON is YAML: the client sends it as the apply patch it is
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "GPUNodeProfile",
        "metadata": {"name": other},
        "status": capable,
    }
    try:
        with token_client(plane, pod_token(k8s, _agent_on(k8s, release, mine))) as api:
            agent = kapi("CustomObjectsApi", api)
            attempts: dict[str, Callable[[], Any]] = {
                "create": lambda: agent.create_cluster_custom_object(*P, profile(other)),
                "update": lambda: agent.replace_cluster_custom_object(*P, other, spec_changed),
                "patch": lambda: agent.patch_cluster_custom_object(
                    *P, other, {"metadata": {"labels": {"maxtune.io/x": "y"}}}
                ),
                "update status (mark capable)": lambda: agent.replace_cluster_custom_object_status(
                    *P, other, replaced
                ),
                "patch status (mark capable)": lambda: agent.patch_cluster_custom_object_status(
                    *P, other, {"status": capable}
                ),
                "patch status, dry run": lambda: agent.patch_cluster_custom_object_status(
                    *P, other, {"status": capable}, dry_run="All"
                ),
                "server-side apply of status": lambda: agent.patch_cluster_custom_object_status(
                    *P,
                    other,
                    apply_body,
                    field_manager="agent",
                    force=True,
                    _content_type="application/apply-patch+yaml",
                ),
                "delete": lambda: agent.delete_cluster_custom_object(*P, other),
                "delete collection": lambda: agent.delete_collection_cluster_custom_object(*P),
                "create own name, other node": lambda: agent.create_cluster_custom_object(
                    *P, {**profile(mine), "spec": {"nodeName": other}}
                ),
            }
            seen: dict[str, str] = {}
            for what, call in attempts.items():
                code, body = _refused(call)
                assert code in (403, 422), (what, code, body[:300])
                seen[what] = f"{code} {_layer(body)}"
            # What it may do: its own profile, create and status.
            agent.create_cluster_custom_object(*P, profile(mine))
            agent.patch_cluster_custom_object_status(*P, mine, {"status": capable})
        after = admin.get_cluster_custom_object(*P, other)
        assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
        assert after["status"]["summary"]["capable"] is False
        # The two layers: writes the agent's role grants are stopped by the admission policy.
        for what in (
            "create",
            "update status (mark capable)",
            "patch status (mark capable)",
            "patch status, dry run",
            "server-side apply of status",
        ):
            assert seen[what] == "403 admission policy", (what, seen[what])
        for what in ("update", "patch", "delete", "delete collection"):
            assert seen[what] == "403 RBAC", (what, seen[what])
        assert seen["create own name, other node"] == "422 CRD rule"
        print(json.dumps(seen, indent=1))

        # The operator's token deletes orphaned profiles, but writes none.
        operator_pod = wait_for(
            lambda: pods(k8s, release.namespace, "operator"), timeout_s=60, what="operator pod"
        )[0]
        with token_client(plane, pod_token(k8s, operator_pod)) as api:
            operator = kapi("CustomObjectsApi", api)
            for what, call in {
                "create": lambda: operator.create_cluster_custom_object(*P, profile(other)),
                "update status": lambda: operator.replace_cluster_custom_object_status(
                    *P, other, replaced
                ),
                "patch status": lambda: operator.patch_cluster_custom_object_status(
                    *P, other, {"status": capable}
                ),
                "patch": lambda: operator.patch_cluster_custom_object(
                    *P, other, {"metadata": {"labels": {"x": "y"}}}
                ),
            }.items():
                code, body = _refused(call)
                assert (code, _layer(body)) == (403, "RBAC"), (what, code, body[:300])
        assert (
            admin.get_cluster_custom_object(*P, other)["metadata"]["resourceVersion"]
            == (before["metadata"]["resourceVersion"])
        )
    finally:
        for name in (mine, other):
            try:
                admin.delete_cluster_custom_object(*P, name)
            except ApiException as exc:
                if exc.status != 404:
                    raise


def _lease(name: str, namespace: str, renew: str) -> dict[str, Any]:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"maxtune.io/agent-heartbeat": "true"},
        },
        "spec": {"holderIdentity": name, "leaseDurationSeconds": 180, "renewTime": renew},
    }


def _refused_json(call: Callable[[], Any]) -> tuple[int, str]:
    with pytest.raises(KubeError) as caught:
        call()
    return caught.value.status, caught.value.message


def test_an_agent_renews_only_its_own_nodes_heartbeat_lease(
    plane: LocalPlane, k8s: ApiClient, install: Installer, kwok_nodes: NodeFactory
) -> None:
    """Heartbeats are Leases (named after the node, in the release namespace): a stolen agent
    token must not keep another node's labels alive, nor end them by deleting its Lease."""
    mine, other = kwok_nodes(2, labels=GPU_PRESENT)
    release = install()
    _policies_enforced(plane, k8s, release, mine)
    ns = release.namespace
    leases = f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases"
    admin = Kube(k8s.configuration)
    old = "2026-01-01T00:00:00.000000Z"
    admin.request("POST", leases, body=_lease(other, ns, old))
    try:
        with token_client(plane, pod_token(k8s, _agent_on(k8s, release, mine))) as api:
            agent = Kube(api.configuration)
            current = agent.request("GET", f"{leases}/{other}")  # reading is harmless
            fresh = "2026-12-01T00:00:00.000000Z"
            renewed = _lease(other, ns, fresh)
            renewed["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            elsewhere = "/apis/coordination.k8s.io/v1/namespaces/default/leases"
            attempts: dict[str, Callable[[], Any]] = {
                "renew another node's Lease": lambda: agent.request(
                    "PUT", f"{leases}/{other}", body=renewed
                ),
                "create a Lease for a third node": lambda: agent.request(
                    "POST", leases, body=_lease("gpu-nonexistent", ns, fresh)
                ),
                "delete another node's Lease": lambda: agent.request("DELETE", f"{leases}/{other}"),
                "a Lease in another namespace": lambda: agent.request(
                    "POST", elsewhere, body=_lease(mine, "default", fresh)
                ),
            }
            seen = {what: _refused_json(call) for what, call in attempts.items()}
            for what in ("renew another node's Lease", "create a Lease for a third node"):
                code, body = seen[what]
                assert code == 403 and f"may write only Lease {mine}, not" in body, (what, body)
            for what in ("delete another node's Lease", "a Lease in another namespace"):
                code, body = seen[what]
                assert (code, _layer(body)) == (403, "RBAC"), (what, body[:300])
            # Its own Lease: created and renewed (what the agent does every round).
            own = agent.request("POST", leases, body=_lease(mine, ns, fresh))
            own["spec"]["renewTime"] = "2026-12-01T00:01:00.000000Z"
            agent.request("PUT", f"{leases}/{mine}", body=own)
        after = admin.request("GET", f"{leases}/{other}")
        assert after["spec"]["renewTime"] == old
    finally:
        for name in (mine, other):
            try:
                admin.request("DELETE", f"{leases}/{name}")
            except KubeError as exc:
                if exc.status != 404:
                    raise
