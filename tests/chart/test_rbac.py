"""Least privilege, from the rendered chart: every component holds exactly what it needs."""

from __future__ import annotations

import pytest

from tests.chart.helmkit import FULLNAME, NAMESPACE, pod_spec, render
from tests.chart.rbac import EXPECTED, permissions

ESCALATING_VERBS = {"*", "escalate", "bind", "impersonate"}


@pytest.mark.parametrize("account", sorted(EXPECTED))
def test_exact_permissions(account: str) -> None:
    found = permissions(render(), NAMESPACE, account)
    extra = sorted(found - EXPECTED[account])
    missing = sorted(EXPECTED[account] - found)
    assert not extra, f"{account} holds more than it needs: {extra}"
    assert not missing, f"{account} lacks: {missing}"


def test_every_service_account_is_one_of_the_known_components() -> None:
    rendered = render()
    accounts = {sa["metadata"]["name"] for sa in rendered.all("ServiceAccount")}
    assert accounts == set(EXPECTED)
    # Each workload runs as its own account: no sharing, no namespace default.
    users = {
        workload["metadata"]["name"]: pod_spec(workload)["serviceAccountName"]
        for workload in rendered.workloads()
    }
    assert users == {
        f"{FULLNAME}-operator": f"{FULLNAME}-operator",
        f"{FULLNAME}-agent": f"{FULLNAME}-agent",
        f"{FULLNAME}-cleanup": f"{FULLNAME}-cleanup",
        f"{FULLNAME}-test": f"{FULLNAME}-test",
    }


def test_no_wildcards_no_escalation_no_secrets() -> None:
    rendered = render()
    for role in rendered.all("ClusterRole") + rendered.all("Role"):
        for rule in role["rules"]:
            where = f"{role['kind']}/{role['metadata']['name']}: {rule}"
            assert "*" not in rule["apiGroups"] and "*" not in rule["resources"], where
            assert not ESCALATING_VERBS & set(rule["verbs"]), where
            assert "secrets" not in rule["resources"], where
            assert not rule.get("nonResourceURLs"), where


def test_leader_election_permissions_follow_the_lease_name() -> None:
    values = {"operator": {"leaderElection": {"enabled": True, "leaseName": "labeller-x"}}}
    found = permissions(render(values), NAMESPACE, f"{FULLNAME}-operator")
    names = {p.name for p in found if p.resource == "leases" and p.verb in ("get", "update")}
    assert names == {"labeller-x"}
    operator = next(
        w for w in render(values).workloads() if w["metadata"]["name"] == f"{FULLNAME}-operator"
    )
    args = pod_spec(operator)["containers"][0]["args"]
    assert args[args.index("--lease-name") + 1] == "labeller-x"


def test_cleanup_rbac_exists_only_for_the_hook() -> None:
    rendered = render()
    for kind in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Job"):
        obj = rendered.get(kind, f"{FULLNAME}-cleanup")
        annotations = obj["metadata"]["annotations"]
        assert annotations["helm.sh/hook"] == "post-delete", kind
        assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
    weights = {
        kind: int(
            rendered.get(kind, f"{FULLNAME}-cleanup")["metadata"]["annotations"][
                "helm.sh/hook-weight"
            ]
        )
        for kind in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Job")
    }
    assert weights["Job"] > max(v for k, v in weights.items() if k != "Job")
