"""Each account of the chart holds what it needs and no more, asked of the real API server.

tests/chart/test_plane_security.py compares the operator's, the agents' and the cleanup hook's
SelfSubjectRulesReview with exact expected sets. This adds the helm-test account (created only
for `helm test`, from the release's own hook manifest), and asks the API server, with each
account's real token, about the writes an attacker would want from a compromised pod: none
may be allowed to any of them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiClient

from maxtune_dev.localplane import LocalPlane, wait_for
from tests.chart.conftest import GPU_PRESENT, Installer
from tests.chart.localrun import kapi, pod_token, pods, token_client, unbound_token
from tests.chart.rbac import EXPECTED
from tests.chart.test_plane_security import (
    _agent_on,
    _apply_rbac,
    _delete_rbac,
    _rules,
    _strip_scope,
)

pytestmark = [pytest.mark.plane, pytest.mark.slow]

NodeFactory = Callable[..., list[str]]
# (group, resource, subresource, verb, namespaced): what a stolen token must never do.
DANGEROUS = [
    ("", "secrets", "", "get", True),
    ("", "secrets", "", "list", True),
    ("", "configmaps", "", "update", True),
    ("", "pods", "", "create", True),
    ("", "pods", "exec", "create", True),
    ("", "pods", "eviction", "create", True),
    ("", "serviceaccounts", "token", "create", True),
    ("", "nodes", "", "delete", False),
    ("", "nodes", "", "update", False),
    ("", "nodes", "status", "patch", False),
    ("", "nodes", "proxy", "get", False),
    ("", "users", "", "impersonate", False),
    ("", "serviceaccounts", "", "impersonate", True),
    ("rbac.authorization.k8s.io", "clusterroles", "", "escalate", False),
    ("rbac.authorization.k8s.io", "clusterroles", "", "bind", False),
    ("rbac.authorization.k8s.io", "clusterrolebindings", "", "create", False),
    ("admissionregistration.k8s.io", "mutatingwebhookconfigurations", "", "update", False),
    ("admissionregistration.k8s.io", "mutatingwebhookconfigurations", "", "delete", False),
    ("admissionregistration.k8s.io", "validatingadmissionpolicies", "", "delete", False),
    ("admissionregistration.k8s.io", "validatingadmissionpolicybindings", "", "delete", False),
    ("apiextensions.k8s.io", "customresourcedefinitions", "", "update", False),
    ("maxtune.io", "autotunepolicies", "", "create", False),
    ("maxtune.io", "autotunepolicies", "", "update", False),
    ("coordination.k8s.io", "leases", "", "delete", True),
    ("apps", "daemonsets", "", "patch", True),
    ("apps", "deployments", "", "patch", True),
    ("certificates.k8s.io", "certificatesigningrequests", "", "create", False),
]


def _allowed(api: ApiClient, namespace: str, rule: tuple[str, str, str, str, bool]) -> bool:
    group, resource, subresource, verb, namespaced = rule
    review = client.V1SelfSubjectAccessReview(
        spec=client.V1SelfSubjectAccessReviewSpec(
            resource_attributes=client.V1ResourceAttributes(
                group=group,
                resource=resource,
                subresource=subresource or None,
                verb=verb,
                namespace=namespace if namespaced else None,
            )
        )
    )
    answer = kapi("AuthorizationV1Api", api).create_self_subject_access_review(review)
    return bool(answer.status.allowed)


def _create(k8s: ApiClient, objects: list[dict[str, Any]]) -> None:
    core = kapi("CoreV1Api", k8s)
    for obj in objects:
        assert obj["kind"] == "ServiceAccount", obj["kind"]
        core.create_namespaced_service_account(
            obj["metadata"]["namespace"], json.loads(json.dumps(obj))
        )


def test_no_account_of_the_release_can_do_what_an_attacker_wants(
    plane: LocalPlane, k8s: ApiClient, install: Installer, kwok_nodes: NodeFactory
) -> None:
    node = kwok_nodes(1, labels=GPU_PRESENT)[0]
    release = install()
    ns = release.namespace
    core = kapi("CoreV1Api", k8s)
    core.create_namespaced_service_account(ns, {"metadata": {"name": "baseline"}})
    with token_client(plane, unbound_token(k8s, ns, "baseline")) as api:
        baseline = _rules(api, ns)
    # The hook accounts exist only while their hook runs: create them from the release's hooks.
    test_accounts = [h for h in release.hook_manifests("test") if h["kind"] == "ServiceAccount"]
    cleanup_rbac = [h for h in release.hook_manifests("post-delete") if h["kind"] != "Job"]
    _create(k8s, test_accounts)
    _apply_rbac(k8s, cleanup_rbac)
    (test_account,) = [a["metadata"]["name"] for a in test_accounts]
    operator_pod = wait_for(lambda: pods(k8s, ns, "operator"), timeout_s=60, what="operator pods")[
        0
    ]
    identities = {
        "operator": pod_token(k8s, operator_pod),
        "agent": pod_token(k8s, _agent_on(k8s, release, node)),
        "cleanup": unbound_token(k8s, ns, f"{release.fullname}-cleanup"),
        "test": unbound_token(k8s, ns, test_account),
    }
    # Controls: what each account needs is allowed, so a refusal below means something.
    needed = {
        "operator": ("", "nodes", "", "patch", False),
        "agent": ("maxtune.io", "gpunodeprofiles", "status", "patch", False),
        "cleanup": ("", "nodes", "", "patch", False),
        "test": ("authorization.k8s.io", "selfsubjectrulesreviews", "", "create", False),
    }
    found: dict[str, list[str]] = {}
    for component, token in identities.items():
        with token_client(plane, token) as api:
            assert _allowed(api, ns, needed[component]), (component, needed[component])
            if component == "test":  # the only account whose exact set the chart tests lack
                granted = _rules(api, ns) - baseline
                expected = _strip_scope(EXPECTED["mt-maxtune-test"])
                assert granted == expected, f"helm-test account holds {sorted(granted)}"
            found[component] = [
                f"{verb} {resource}{'/' + sub if sub else ''} ({group or 'core'})"
                for group, resource, sub, verb, namespaced in DANGEROUS
                if _allowed(api, ns, (group, resource, sub, verb, namespaced))
            ]
    assert found == {c: [] for c in identities}, found
    _delete_rbac(k8s, cleanup_rbac)
