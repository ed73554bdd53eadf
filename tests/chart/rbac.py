"""Each service account's permissions, computed from rendered RBAC objects, as exact sets.

A permission is (scope, apiGroup, resource, verb, resourceName): scope is "cluster" for a
ClusterRole bound cluster-wide, or the namespace of a RoleBinding; resourceName is "*" when the
rule names none. The expectation lists are the least each component needs; anything more is a
finding, not a convenience.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from tests.chart.helmkit import FULLNAME, NAMESPACE, Rendered


class Permission(NamedTuple):
    scope: str
    group: str
    resource: str
    verb: str
    name: str


def _rules(role: Mapping[str, Any]) -> Iterable[Permission]:
    for rule in role.get("rules") or []:
        names = rule.get("resourceNames") or ["*"]
        for group in rule.get("apiGroups", []):
            for resource in rule.get("resources", []):
                for verb in rule.get("verbs", []):
                    for name in names:
                        yield Permission("", group, resource, verb, name)


def permissions(rendered: Rendered, namespace: str, account: str) -> set[Permission]:
    """What `system:serviceaccount:namespace:account` may do through the rendered bindings."""
    found: set[Permission] = set()
    for binding in rendered.all("ClusterRoleBinding") + rendered.all("RoleBinding"):
        subjects = binding.get("subjects") or []
        if not any(
            s["kind"] == "ServiceAccount" and s["name"] == account and s["namespace"] == namespace
            for s in subjects
        ):
            continue
        ref = binding["roleRef"]
        role = rendered.get(ref["kind"], ref["name"])
        scope = (
            "cluster"
            if binding["kind"] == "ClusterRoleBinding"
            else binding["metadata"]["namespace"]
        )
        found |= {p._replace(scope=scope) for p in _rules(role)}
    return found


def grant(
    scope: str, group: str, resource: str, verbs: Iterable[str], name: str = "*"
) -> set[Permission]:
    return {Permission(scope, group, resource, verb, name) for verb in verbs}


OPERATOR = (
    grant("cluster", "", "nodes", ["get", "list", "watch", "patch"])
    | grant("cluster", "maxtune.io", "gpunodeprofiles", ["get", "list", "watch", "delete"])
    | grant("cluster", "maxtune.io", "autotunepolicies", ["get", "list", "watch"])
    | grant("cluster", "", "namespaces", ["get", "list", "watch"])
    | grant(NAMESPACE, "coordination.k8s.io", "leases", ["list", "watch"])
    | grant(NAMESPACE, "coordination.k8s.io", "leases", ["create"])
    | grant(NAMESPACE, "coordination.k8s.io", "leases", ["get", "update"], "maxtune-labeller")
)
AGENT = (
    grant("cluster", "maxtune.io", "gpunodeprofiles", ["get", "create"])
    | grant("cluster", "maxtune.io", "gpunodeprofiles/status", ["get", "update", "patch"])
    | grant("cluster", "maxtune.io", "autotunepolicies", ["get", "list", "watch"])
    | grant("cluster", "", "nodes", ["get"])
    | grant(NAMESPACE, "coordination.k8s.io", "leases", ["get", "create", "update"])
)
CLEANUP = grant("cluster", "", "nodes", ["list", "patch"])
EXPECTED: dict[str, set[Permission]] = {
    f"{FULLNAME}-operator": OPERATOR,
    f"{FULLNAME}-agent": AGENT,
    f"{FULLNAME}-cleanup": CLEANUP,
    f"{FULLNAME}-test": set(),  # the helm test uses only what every authenticated client may
}
