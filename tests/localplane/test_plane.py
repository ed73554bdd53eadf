"""Proof that the local plane is a real Kubernetes control plane (all through the API server)."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from maxtune_dev.localplane import LocalPlane, wait_for, wait_pod_running
from maxtune_dev.localplane.versions import KUBERNETES

pytestmark = pytest.mark.plane

NodeFactory = Callable[..., list[str]]


def _gpu_pod(name: str, node: str | None, gpus: int = 1) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [
            {
                "name": "train",
                "image": "registry.invalid/train:1",
                "resources": {"limits": {"nvidia.com/gpu": str(gpus)}},
            }
        ]
    }
    if node:
        spec["nodeSelector"] = {"kubernetes.io/hostname": node}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def test_version_is_the_pinned_release(k8s: ApiClient, plane: LocalPlane) -> None:
    info = client.VersionApi(k8s).get_code()
    assert info.git_version == KUBERNETES.candidates[0] == plane.binaries.versions["kubernetes"]
    assert (info.major, info.minor) == ("1", KUBERNETES.candidates[0].split(".")[1])
    assert info.git_tree_state == "clean"


def test_crd_and_custom_resource(k8s: ApiClient, namespace: str) -> None:
    group, plural = "test.maxtune.io", f"widgets{uuid.uuid4().hex[:6]}"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": plural[:-1], "kind": "Widget"},
            "versions": [
                {
                    "name": "v1alpha1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {"gpus": {"type": "integer", "minimum": 0}},
                                }
                            },
                        }
                    },
                }
            ],
        },
    }
    extensions = client.ApiextensionsV1Api(k8s)
    extensions.create_custom_resource_definition(crd)
    try:
        wait_for(
            lambda: any(
                c.type == "Established" and c.status == "True"
                for c in (
                    extensions.read_custom_resource_definition(f"{plural}.{group}").status
                ).conditions
                or []
            ),
            timeout_s=30,
            what="CRD Established",
        )
        custom = client.CustomObjectsApi(k8s)
        body = {
            "apiVersion": f"{group}/v1alpha1",
            "kind": "Widget",
            "metadata": {"name": "w1"},
            "spec": {"gpus": 8},
        }
        wait_for(
            lambda: _try_create(custom, group, namespace, plural, body),
            timeout_s=30,
            what="custom resource accepted",
        )
        got = custom.get_namespaced_custom_object(group, "v1alpha1", namespace, plural, "w1")
        assert got["spec"] == {"gpus": 8}
        # The schema is enforced by the real API server.
        bad = {**body, "metadata": {"name": "w2"}, "spec": {"gpus": -1}}
        with pytest.raises(ApiException) as caught:
            custom.create_namespaced_custom_object(group, "v1alpha1", namespace, plural, bad)
        assert caught.value.status == 422
    finally:
        extensions.delete_custom_resource_definition(f"{plural}.{group}")


def _try_create(
    custom: client.CustomObjectsApi, group: str, ns: str, plural: str, body: dict[str, Any]
) -> bool:
    try:
        custom.create_namespaced_custom_object(group, "v1alpha1", ns, plural, body)
    except ApiException as exc:
        if exc.status == 404:  # discovery of the new type not yet served
            return False
        raise
    return True


def test_gpu_pod_is_scheduled_onto_a_kwok_node_and_runs(
    k8s: ApiClient, namespace: str, kwok_nodes: NodeFactory
) -> None:
    (node,) = kwok_nodes(capacity={"nvidia.com/gpu": 8, "nvidia.com/mig-1g.10gb": 7})
    core = client.CoreV1Api(k8s)
    allocatable = core.read_node(node).status.allocatable
    assert allocatable["nvidia.com/gpu"] == "8"
    assert allocatable["nvidia.com/mig-1g.10gb"] == "7"

    core.create_namespaced_pod(namespace, _gpu_pod("one-gpu", node))
    pod = wait_pod_running(k8s, namespace, "one-gpu")
    assert pod.spec.node_name == node
    assert pod.status.container_statuses[0].ready

    # The scheduler counts the extended resource: 9 GPUs do not fit on 8.
    core.create_namespaced_pod(namespace, _gpu_pod("nine-gpus", node, gpus=9))

    def unschedulable() -> bool:
        pod = core.read_namespaced_pod("nine-gpus", namespace)
        conditions = pod.status.conditions or []
        return any(c.type == "PodScheduled" and c.reason == "Unschedulable" for c in conditions)

    wait_for(unschedulable, timeout_s=30, what="nine-GPU pod marked Unschedulable")
    assert not core.read_namespaced_pod("nine-gpus", namespace).spec.node_name


def test_daemonset_controller_creates_a_pod_on_the_node(
    k8s: ApiClient, namespace: str, kwok_nodes: NodeFactory
) -> None:
    mark = uuid.uuid4().hex[:8]
    (node,) = kwok_nodes(labels={"maxtune.io/test-ds": mark})
    daemonset = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "agent"},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {
                "metadata": {"labels": {"app": "agent"}},
                "spec": {
                    "nodeSelector": {"maxtune.io/test-ds": mark},
                    "containers": [{"name": "agent", "image": "registry.invalid/agent:1"}],
                },
            },
        },
    }
    client.AppsV1Api(k8s).create_namespaced_daemon_set(namespace, daemonset)
    core = client.CoreV1Api(k8s)

    def running_on_node() -> list[Any]:
        pods = core.list_namespaced_pod(namespace, label_selector="app=agent").items
        return [
            p
            for p in pods
            if p.spec.node_name == node
            and p.status.phase == "Running"
            and p.metadata.owner_references[0].kind == "DaemonSet"
        ]

    assert len(wait_for(running_on_node, timeout_s=60, what="DaemonSet pod Running")) == 1
    wait_for(
        lambda: (
            client.AppsV1Api(k8s).read_namespaced_daemon_set("agent", namespace).status.number_ready
            == 1
        ),
        timeout_s=60,
        what="DaemonSet status numberReady=1",
    )


def test_deployment_rolls_out_through_replicasets(
    k8s: ApiClient, namespace: str, kwok_nodes: NodeFactory
) -> None:
    kwok_nodes()
    apps = client.AppsV1Api(k8s)
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "registry.invalid/web:1"}]},
            },
        },
    }
    apps.create_namespaced_deployment(namespace, deployment)
    wait_for(
        lambda: (
            (apps.read_namespaced_deployment("web", namespace).status.available_replicas or 0) == 2
        ),
        timeout_s=60,
        what="Deployment with 2 available replicas",
    )
    assert len(apps.list_namespaced_replica_set(namespace).items) == 1


def test_pod_bound_token_carries_the_node_name(
    k8s: ApiClient, namespace: str, kwok_nodes: NodeFactory
) -> None:
    (node,) = kwok_nodes()
    core = client.CoreV1Api(k8s)
    core.create_namespaced_pod(namespace, _gpu_pod("holder", node))
    pod = wait_pod_running(k8s, namespace, "holder")
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(
            audiences=[],
            expiration_seconds=600,
            bound_object_ref=client.V1BoundObjectReference(
                api_version="v1", kind="Pod", name="holder", uid=pod.metadata.uid
            ),
        )
    )
    token = core.create_namespaced_service_account_token("default", namespace, request)
    review = client.AuthenticationV1Api(k8s).create_token_review(
        client.V1TokenReview(spec=client.V1TokenReviewSpec(token=token.status.token))
    )
    assert review.status.authenticated, review.status.error
    assert review.status.user.username == f"system:serviceaccount:{namespace}:default"
    extra = review.status.user.extra
    assert extra["authentication.kubernetes.io/node-name"] == [node]
    assert extra["authentication.kubernetes.io/pod-name"] == ["holder"]


def test_rbac_is_enforced_for_service_accounts(
    plane: LocalPlane, k8s: ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(k8s)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "reader"}})
    token = core.create_namespaced_service_account_token(
        "reader",
        namespace,
        client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[])),
    ).status.token
    configuration = client.Configuration()
    configuration.host = plane.server
    configuration.ssl_ca_cert = str(plane.ca_file)
    configuration.api_key = {"authorization": f"Bearer {token}"}
    with client.ApiClient(configuration) as as_reader:
        reader = client.CoreV1Api(as_reader)
        with pytest.raises(ApiException) as caught:
            reader.list_namespaced_pod(namespace)
        assert caught.value.status == 403
        client.RbacAuthorizationV1Api(k8s).create_namespaced_role_binding(
            namespace,
            {
                "metadata": {"name": "reader-view"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "view",
                },
                "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}],
            },
        )

        def granted() -> bool:
            # The authorizer learns of bindings through its informer: a 403 just after the
            # create is the grant still on its way, not a failure.
            try:
                reader.list_namespaced_pod(namespace)
            except ApiException as error:
                if error.status == 403:
                    return False
                raise
            return True

        wait_for(granted, timeout_s=10, what="RBAC grant to take effect")


def test_validating_admission_policy_is_enforced(k8s: ApiClient, namespace: str) -> None:
    admission = client.AdmissionregistrationV1Api(k8s)
    name = f"deny-forbidden-{namespace}"
    admission.create_validating_admission_policy(
        {
            "metadata": {"name": name},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {
                    "resourceRules": [
                        {
                            "apiGroups": [""],
                            "apiVersions": ["v1"],
                            "operations": ["CREATE"],
                            "resources": ["configmaps"],
                        }
                    ]
                },
                "validations": [
                    {"expression": "object.metadata.name != 'forbidden'", "message": "no"}
                ],
            },
        }
    )
    admission.create_validating_admission_policy_binding(
        {
            "metadata": {"name": name},
            "spec": {
                "policyName": name,
                "validationActions": ["Deny"],
                "matchResources": {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
                },
            },
        }
    )
    core = client.CoreV1Api(k8s)
    try:

        def denied() -> bool:
            try:
                core.create_namespaced_config_map(namespace, {"metadata": {"name": "forbidden"}})
            except ApiException as exc:
                return exc.status in (403, 422)
            core.delete_namespaced_config_map("forbidden", namespace)
            return False

        wait_for(denied, timeout_s=30, interval_s=0.5, what="the policy to deny")
        core.create_namespaced_config_map(namespace, {"metadata": {"name": "allowed"}})
    finally:
        admission.delete_validating_admission_policy_binding(name)
        admission.delete_validating_admission_policy(name)


def test_helm_installs_a_chart(
    plane: LocalPlane, k8s: ApiClient, namespace: str, tmp_path: Path
) -> None:
    chart = tmp_path / "probe"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: probe\nversion: 0.1.0\n")
    (chart / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: probe\n"
        "data:\n  kube: {{ .Capabilities.KubeVersion.Version | quote }}\n"
    )
    helm = str(plane.binaries.helm)
    env = {"KUBECONFIG": str(plane.kubeconfig), "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    started = time.monotonic()
    subprocess.run(
        [helm, "install", "probe", str(chart), "--namespace", namespace, "--wait"],
        check=True,
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert time.monotonic() - started < 120
    data = client.CoreV1Api(k8s).read_namespaced_config_map("probe", namespace).data
    assert data["kube"] == plane.binaries.versions["kubernetes"]
    listed = subprocess.run(
        [helm, "list", "--namespace", namespace, "--short"],
        check=True,
        env=env,
        capture_output=True,
        text=True,
    )
    assert listed.stdout.split() == ["probe"]


def test_kwok_renews_node_leases_so_nodes_stay_ready(
    k8s: ApiClient, kwok_nodes: NodeFactory
) -> None:
    """The node-lifecycle controller reads Leases: a renewed Lease means no eviction."""
    (node,) = kwok_nodes()
    coordination = client.CoordinationV1Api(k8s)
    first = wait_for(
        lambda: _lease_renew_time(coordination, node), timeout_s=30, what="the node's Lease"
    )
    renewed = wait_for(
        lambda: (t := _lease_renew_time(coordination, node)) and t > first and t,
        timeout_s=40,
        what="the node's Lease to be renewed",
    )
    assert renewed > first
    node_object = client.CoreV1Api(k8s).read_node(node)
    assert not node_object.spec.taints


def _lease_renew_time(coordination: client.CoordinationV1Api, node: str) -> Any:
    try:
        lease = coordination.read_namespaced_lease(node, "kube-node-lease")
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return lease.spec.renew_time
