"""helm install, upgrade and uninstall of the chart on the real local control plane."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from maxtune_dev.localplane import wait_for
from tests.chart.conftest import GPU_PRESENT, GPU_TAINT, Installer, Release
from tests.chart.localrun import kapi

pytestmark = pytest.mark.plane

NodeFactory = Callable[..., list[str]]


def _exists(read: Callable[[], Any]) -> bool:
    try:
        read()
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def _cluster_objects(k8s: ApiClient, release: Release) -> dict[str, bool]:
    adm = kapi("AdmissionregistrationV1Api", k8s)
    rbac = kapi("RbacAuthorizationV1Api", k8s)
    name = release.fullname
    return {
        "webhook": _exists(lambda: adm.read_mutating_webhook_configuration(name)),
        "agent-policy": _exists(
            lambda: adm.read_validating_admission_policy(f"{name}-agent-own-profile")
        ),
        "agent-binding": _exists(
            lambda: adm.read_validating_admission_policy_binding(f"{name}-agent-own-profile")
        ),
        "label-policy": _exists(
            lambda: adm.read_validating_admission_policy(f"{name}-operator-node-labels")
        ),
        "label-binding": _exists(
            lambda: adm.read_validating_admission_policy_binding(f"{name}-operator-node-labels")
        ),
        "operator-role": _exists(lambda: rbac.read_cluster_role(f"{name}-operator")),
        "agent-role": _exists(lambda: rbac.read_cluster_role(f"{name}-agent")),
        "cleanup-role": _exists(lambda: rbac.read_cluster_role(f"{name}-cleanup")),
    }


def _policy_status(adm: Any, name: str) -> Any:
    return adm.read_validating_admission_policy(name).status


def test_install_creates_everything_the_cluster_accepts(install: Installer, k8s: ApiClient) -> None:
    release = install()
    apps = kapi("AppsV1Api", k8s)
    name, ns = release.fullname, release.namespace
    assert apps.read_namespaced_deployment(f"{name}-operator", ns).spec.replicas == 2
    assert apps.read_namespaced_daemon_set(f"{name}-agent", ns)
    assert kapi("PolicyV1Api", k8s).read_namespaced_pod_disruption_budget(f"{name}-operator", ns)
    found = _cluster_objects(k8s, release)
    # The cleanup role is a post-delete hook: it exists only while uninstall runs.
    assert found == {**dict.fromkeys(found, True), "cleanup-role": False}
    # The API server type-checked the policies' CEL against the CRD and Node schemas.
    adm = kapi("AdmissionregistrationV1Api", k8s)
    for policy in ("agent-own-profile", "operator-node-labels"):
        probe = partial(_policy_status, adm, f"{name}-{policy}")
        checked = wait_for(probe, timeout_s=30, what=f"checks of {policy}")
        assert not (checked.type_checking and checked.type_checking.expression_warnings), policy
    served = kapi("CustomObjectsApi", k8s).get_api_resources("maxtune.io", "v1alpha1")
    assert {r.name for r in served.resources} >= {"gpunodeprofiles", "autotunepolicies"}
    assert "kubectl get gpunodeprofiles" in release.notes
    # The fixture's releases share the plane's CRDs (crds.enabled=false); NOTES says whose they are.
    assert "This release did not install the CRDs (crds.enabled=false)" in release.notes


def test_agents_land_only_on_gpu_nodes(
    install: Installer, k8s: ApiClient, kwok_nodes: NodeFactory
) -> None:
    tainted = kwok_nodes(labels=GPU_PRESENT, taints=[GPU_TAINT], prefix="gpu-tainted")
    nfd = kwok_nodes(
        labels={"feature.node.kubernetes.io/pci-10de.present": "true"}, prefix="gpu-nfd"
    )
    counted = kwok_nodes(labels={"nvidia.com/gpu.count": "4"}, prefix="gpu-count")
    cpu = kwok_nodes(capacity={}, prefix="cpu")
    gpu_nodes = set(tainted + nfd + counted)
    release = install()
    core = kapi("CoreV1Api", k8s)
    selector = "app.kubernetes.io/component=agent"

    def placed() -> set[str] | None:
        listed = core.list_namespaced_pod(release.namespace, label_selector=selector).items
        nodes = {p.spec.node_name for p in listed if p.spec.node_name}
        return nodes if gpu_nodes <= nodes else None

    nodes = wait_for(placed, timeout_s=60, what="an agent pod on every GPU node")
    assert not nodes & set(cpu)
    for node in nodes:  # any other node it chose must carry a GPU presence label too
        labels = core.read_node(node).metadata.labels
        assert {"nvidia.com/gpu.present", "feature.node.kubernetes.io/pci-10de.present"} & set(
            labels
        ) or "nvidia.com/gpu.count" in labels, node


def _tls(k8s: ApiClient, release: Release) -> tuple[dict[str, str], set[str]]:
    secret = kapi("CoreV1Api", k8s).read_namespaced_secret(
        f"{release.fullname}-webhook-tls", release.namespace
    )
    config = kapi("AdmissionregistrationV1Api", k8s).read_mutating_webhook_configuration(
        release.fullname
    )
    bundles = {hook.client_config.ca_bundle for hook in config.webhooks}
    return dict(secret.data), bundles


def test_upgrade_keeps_the_generated_ca(install: Installer, k8s: ApiClient, tmp_path: Path) -> None:
    release = install()
    before, bundles = _tls(k8s, release)
    assert bundles == {before["ca.crt"]}

    release.upgrade({"operator": {"replicas": 3}}, tmp_path)
    deployment = kapi("AppsV1Api", k8s).read_namespaced_deployment(
        f"{release.fullname}-operator", release.namespace
    )
    assert deployment.spec.replicas == 3  # the upgrade did apply
    after, bundles = _tls(k8s, release)
    assert after == before
    assert bundles == {before["ca.crt"]}

    # New names for the certificate: a new certificate, and the caBundle follows it.
    release.upgrade({"webhook": {"tls": {"extraDNSNames": ["maxtune.dev.local"]}}}, tmp_path)
    renamed, bundles = _tls(k8s, release)
    assert renamed["tls.crt"] != before["tls.crt"]
    assert bundles == {renamed["ca.crt"]}


def test_uninstall_leaves_no_webhook_configuration_policy_or_hook(
    install: Installer, k8s: ApiClient
) -> None:
    release = install()
    release.uninstall()
    assert not any(_cluster_objects(k8s, release).values())
    assert not kapi("BatchV1Api", k8s).list_namespaced_job(release.namespace).items
    core = kapi("CoreV1Api", k8s)
    accounts = {
        sa.metadata.name for sa in core.list_namespaced_service_account(release.namespace).items
    }
    assert not {a for a in accounts if a.startswith(release.fullname)}


def test_every_pod_is_admitted_under_restricted_pod_security(
    install: Installer, k8s: ApiClient, namespace: str, kwok_nodes: NodeFactory
) -> None:
    """The API server's PodSecurity admission, level restricted, accepts all the chart's pods.

    The uninstall in teardown creates the post-delete Job's pod under the same level: a refused
    pod would hold the hook, and uninstall, to its timeout.
    """
    core = kapi("CoreV1Api", k8s)
    enforce = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "warn")}
    core.patch_namespace(namespace, {"metadata": {"labels": enforce}})
    kwok_nodes(labels=GPU_PRESENT)
    release = install()

    def created() -> bool:
        found = {
            p.metadata.labels["app.kubernetes.io/component"]
            for p in core.list_namespaced_pod(namespace).items
        }
        return {"operator", "agent"} <= found

    wait_for(created, timeout_s=60, what="operator and agent pods admitted")
    refused = [
        e.message
        for e in core.list_namespaced_event(namespace).items
        if e.reason == "FailedCreate" and "violates PodSecurity" in (e.message or "")
    ]
    assert not refused, refused
    assert release.installed
