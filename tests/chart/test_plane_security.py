"""Security with real tokens against the real API server: who may write what.

Tokens are what the kubelet would project into the chart's pods: TokenRequests bound to the pods
the DaemonSet and the Deployment created on kwok nodes, so they carry the node's name.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from maxtune.contract.names import GROUP, PROFILE_PLURAL, VERSION
from maxtune_dev.localplane import LocalPlane, wait_for
from tests.chart.conftest import GPU_PRESENT, Installer, Release
from tests.chart.localrun import kapi, pod_token, pods, token_client, unbound_token
from tests.chart.profiles import BIG, SMALL, profile, status
from tests.chart.rbac import EXPECTED, Permission

pytestmark = pytest.mark.plane

NodeFactory = Callable[..., list[str]]


def _agent_on(k8s: ApiClient, release: Release, node: str) -> Any:
    def found() -> Any:
        return next(
            (p for p in pods(k8s, release.namespace, "agent") if p.spec.node_name == node), None
        )

    return wait_for(found, timeout_s=60, what=f"the agent pod on {node}")


@dataclass(frozen=True)
class Refusal:
    status: int
    body: str


def _denied(call: Callable[[], Any]) -> Refusal:
    with pytest.raises(ApiException) as caught:
        call()
    return Refusal(int(caught.value.status or 0), str(caught.value.body))


def _policies_enforced(plane: LocalPlane, k8s: ApiClient, release: Release, node: str) -> None:
    """Until the API server enforces both new policies (they load a moment after creation).

    Probed with dry-run requests, which pass through admission but change nothing.
    """
    agent = pod_token(k8s, _agent_on(k8s, release, node))
    operator = pod_token(k8s, pods(k8s, release.namespace, "operator")[0])
    other = profile("gpu-policy-probe")

    def refused(token: str, call: Callable[[ApiClient], Any]) -> bool:
        with token_client(plane, token) as api:
            try:
                call(api)
            except ApiException as exc:
                return exc.status == 403 and "ValidatingAdmissionPolicy" in str(exc.body)
        return False

    wait_for(
        lambda: (
            refused(
                agent,
                lambda api: kapi("CustomObjectsApi", api).create_cluster_custom_object(
                    GROUP, VERSION, PROFILE_PLURAL, other, dry_run="All"
                ),
            )
            and refused(
                operator,
                lambda api: kapi("CoreV1Api", api).patch_node(
                    node, {"metadata": {"labels": {"probe": "x"}}}, dry_run="All"
                ),
            )
        ),
        timeout_s=30,
        what="the admission policies enforced",
    )


@pytest.fixture
def fleet(
    plane: LocalPlane, k8s: ApiClient, install: Installer, kwok_nodes: NodeFactory
) -> tuple[Release, str, str]:
    """A release and two GPU nodes, each with its agent pod, policies in force."""
    mine, other = kwok_nodes(2, labels=GPU_PRESENT)
    release = install()
    _policies_enforced(plane, k8s, release, mine)
    return release, mine, other


@pytest.fixture
def profiles(k8s: ApiClient) -> Iterator[Callable[[ApiClient], Any]]:
    """CustomObjectsApi per identity; every profile named in the test is deleted afterwards."""
    yield partial(kapi, "CustomObjectsApi")
    admin = kapi("CustomObjectsApi", k8s)
    for item in admin.list_cluster_custom_object(GROUP, VERSION, PROFILE_PLURAL)["items"]:
        if item["metadata"]["name"].startswith("gpu-"):
            admin.delete_cluster_custom_object(
                GROUP, VERSION, PROFILE_PLURAL, item["metadata"]["name"]
            )


def _status_patch(api: Any, node: str, body: dict[str, Any]) -> Any:
    return api.patch_cluster_custom_object_status(GROUP, VERSION, PROFILE_PLURAL, node, body)


def test_agent_writes_its_own_profile_and_no_other(
    plane: LocalPlane,
    k8s: ApiClient,
    fleet: tuple[Release, str, str],
    profiles: Callable[[ApiClient], Any],
) -> None:
    release, mine, other = fleet
    with token_client(plane, pod_token(k8s, _agent_on(k8s, release, mine))) as api:
        agent = profiles(api)
        admin = profiles(k8s)

        # Its own node: create, then publish its status (what the agent really does).
        agent.create_cluster_custom_object(GROUP, VERSION, PROFILE_PLURAL, profile(mine))
        _status_patch(agent, mine, {"status": status(*SMALL)})
        stored = admin.get_cluster_custom_object(GROUP, VERSION, PROFILE_PLURAL, mine)
        assert stored["status"]["summary"]["capable"] is False

        # Another node's profile: not even creating it.
        refused = _denied(
            lambda: agent.create_cluster_custom_object(
                GROUP, VERSION, PROFILE_PLURAL, profile(other)
            )
        )
        assert refused.status == 403
        assert f"may write only GPUNodeProfile {mine}, not {other}" in refused.body

        # The other node's agent published its small GPUs; this agent tries to mark it capable.
        admin.create_cluster_custom_object(GROUP, VERSION, PROFILE_PLURAL, profile(other))
        _status_patch(admin, other, {"status": status(*SMALL)})
        refused = _denied(lambda: _status_patch(agent, other, {"status": status(*BIG)}))
        assert refused.status == 403
        assert f"may write only GPUNodeProfile {mine}, not {other}" in refused.body
        after = admin.get_cluster_custom_object(GROUP, VERSION, PROFILE_PLURAL, other)
        assert after["status"]["summary"]["capable"] is False

        # RBAC: no delete, and no update of the main resource, even of its own profile.
        for call in (
            lambda: agent.delete_cluster_custom_object(GROUP, VERSION, PROFILE_PLURAL, mine),
            lambda: agent.patch_cluster_custom_object(
                GROUP, VERSION, PROFILE_PLURAL, mine, {"metadata": {"labels": {"x": "y"}}}
            ),
        ):
            assert _denied(call).status == 403


def test_a_token_without_a_node_writes_nothing(
    plane: LocalPlane,
    k8s: ApiClient,
    fleet: tuple[Release, str, str],
    profiles: Callable[[ApiClient], Any],
) -> None:
    release, mine, _ = fleet
    token = unbound_token(k8s, release.namespace, f"{release.fullname}-agent")
    with token_client(plane, token) as api:
        refused = _denied(
            lambda: profiles(api).create_cluster_custom_object(
                GROUP, VERSION, PROFILE_PLURAL, profile(mine)
            )
        )
    assert refused.status == 403
    assert "pod-bound service-account token of a pod scheduled on" in refused.body


def test_operator_is_not_bound_by_the_agent_policy_and_deletes_profiles(
    plane: LocalPlane,
    k8s: ApiClient,
    fleet: tuple[Release, str, str],
    profiles: Callable[[ApiClient], Any],
) -> None:
    release, _, other = fleet
    operator_pod = wait_for(
        lambda: pods(k8s, release.namespace, "operator"), timeout_s=60, what="operator pods"
    )[0]
    profiles(k8s).create_cluster_custom_object(GROUP, VERSION, PROFILE_PLURAL, profile(other))
    with token_client(plane, pod_token(k8s, operator_pod)) as api:
        profiles(api).delete_cluster_custom_object(GROUP, VERSION, PROFILE_PLURAL, other)
        refused = _denied(
            lambda: profiles(api).create_cluster_custom_object(
                GROUP, VERSION, PROFILE_PLURAL, profile(other)
            )
        )
    assert refused.status == 403 and "cannot create resource" in refused.body  # RBAC, not policy


def test_operator_changes_only_maxtune_node_labels(
    plane: LocalPlane, k8s: ApiClient, fleet: tuple[Release, str, str]
) -> None:
    release, node, _ = fleet
    operator_pod = wait_for(
        lambda: pods(k8s, release.namespace, "operator"), timeout_s=60, what="operator pods"
    )[0]
    with token_client(plane, pod_token(k8s, operator_pod)) as api:
        core = kapi("CoreV1Api", api)
        core.patch_node(node, {"metadata": {"labels": {"maxtune.io/sm-count": "132"}}})
        core.patch_node(node, {"metadata": {"labels": {"maxtune.io/sm-count": None}}})
        forbidden: dict[str, dict[str, Any]] = {
            "add a label": {"metadata": {"labels": {"team": "ml"}}},
            "remove a label": {"metadata": {"labels": {"nvidia.com/gpu.present": None}}},
            "annotate": {"metadata": {"annotations": {"note": "x"}}},
            "taint": {"spec": {"taints": [{"key": "k", "value": "v", "effect": "NoSchedule"}]}},
            "cordon": {"spec": {"unschedulable": True}},
        }
        for what, body in forbidden.items():
            refused = _denied(partial(core.patch_node, node, body))
            assert refused.status == 403, what
            assert "maxtune may" in refused.body and "maxtune.io/ node labels" in refused.body, what
        assert _denied(lambda: core.delete_node(node)).status == 403
    labels = kapi("CoreV1Api", k8s).read_node(node).metadata.labels
    assert labels["nvidia.com/gpu.present"] == "true" and "team" not in labels


def _rules(api: ApiClient, namespace: str) -> set[Permission]:
    """What the API server says this identity may do in `namespace` (cluster rules included)."""
    review = client.V1SelfSubjectRulesReview(
        spec=client.V1SelfSubjectRulesReviewSpec(namespace=namespace)
    )
    answer = kapi("AuthorizationV1Api", api).create_self_subject_rules_review(review)
    found: set[Permission] = set()
    for rule in answer.status.resource_rules:
        for group in rule.api_groups or []:
            for resource in rule.resources or []:
                for verb in rule.verbs:
                    for name in rule.resource_names or ["*"]:
                        found.add(Permission("", group, resource, verb, name))
    return found


def _strip_scope(expected: set[Permission]) -> set[Permission]:
    return {p._replace(scope="") for p in expected}


def test_each_account_holds_exactly_its_permissions_on_the_api_server(
    plane: LocalPlane, k8s: ApiClient, fleet: tuple[Release, str, str]
) -> None:
    release, node, _ = fleet
    ns = release.namespace
    core = kapi("CoreV1Api", k8s)
    core.create_namespaced_service_account(ns, {"metadata": {"name": "baseline"}})
    # What every service account may do anyway (discovery, self-reviews): not the chart's doing.
    with token_client(plane, unbound_token(k8s, ns, "baseline")) as api:
        baseline = _rules(api, ns)
    # The cleanup account exists only during uninstall: create it from the release's own hook.
    hooks = release.hook_manifests("post-delete")
    _apply_rbac(k8s, [h for h in hooks if h["kind"] != "Job"])

    identities = {
        f"{release.fullname}-operator": pod_token(k8s, pods(k8s, ns, "operator")[0]),
        f"{release.fullname}-agent": pod_token(k8s, _agent_on(k8s, release, node)),
        f"{release.fullname}-cleanup": unbound_token(k8s, ns, f"{release.fullname}-cleanup"),
    }
    for account, token in identities.items():
        # EXPECTED is written for the release the render tests use; only the prefix differs.
        expected = _strip_scope(EXPECTED["mt-maxtune" + account.removeprefix(release.fullname)])
        with token_client(plane, token) as api:
            granted = _rules(api, ns) - baseline
        assert granted == expected, (
            f"{account}: beyond need {sorted(granted - expected)}; "
            f"lacking {sorted(expected - granted)}"
        )
    _delete_rbac(k8s, hooks)


def _apply_rbac(k8s: ApiClient, objects: list[dict[str, Any]]) -> None:
    rbac, core = kapi("RbacAuthorizationV1Api", k8s), kapi("CoreV1Api", k8s)
    for obj in objects:
        body = json.loads(json.dumps(obj))
        if obj["kind"] == "ServiceAccount":
            core.create_namespaced_service_account(obj["metadata"]["namespace"], body)
        elif obj["kind"] == "ClusterRole":
            rbac.create_cluster_role(body)
        elif obj["kind"] == "ClusterRoleBinding":
            rbac.create_cluster_role_binding(body)
        else:
            raise AssertionError(f"unexpected hook object {obj['kind']}")


def _delete_rbac(k8s: ApiClient, objects: list[dict[str, Any]]) -> None:
    rbac = kapi("RbacAuthorizationV1Api", k8s)
    for obj in objects:
        if obj["kind"] == "ClusterRole":
            rbac.delete_cluster_role(obj["metadata"]["name"])
        elif obj["kind"] == "ClusterRoleBinding":
            rbac.delete_cluster_role_binding(obj["metadata"]["name"])
