"""NetworkPolicies: off by default; on, each component admits only the ports it serves."""

from __future__ import annotations

from typing import Any

from tests.chart.helmkit import FULLNAME, render

TEST_POD = {
    "podSelector": {
        "matchLabels": {
            "app.kubernetes.io/name": "maxtune",
            "app.kubernetes.io/instance": "mt",
            "app.kubernetes.io/component": "test",
        }
    }
}
ANYWHERE = [{"ipBlock": {"cidr": "0.0.0.0/0"}}, {"ipBlock": {"cidr": "::/0"}}]
MONITORING_NS = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "mon"}}}


def policies(values: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    merged = {"networkPolicy": {"enabled": True, **(values or {})}}
    return {p["metadata"]["name"]: p["spec"] for p in render(merged).all("NetworkPolicy")}


def ports(rule: dict[str, Any]) -> list[Any]:
    return [p["port"] for p in rule["ports"]]


def test_off_by_default() -> None:
    assert render().all("NetworkPolicy") == []


def test_operator_admits_the_webhook_from_anywhere_and_metrics_from_anyone_by_default() -> None:
    spec = policies()[f"{FULLNAME}-operator"]
    assert spec["policyTypes"] == ["Ingress"]  # egress stays open: the API server's address varies
    assert spec["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "operator"
    webhook, metrics = spec["ingress"]
    assert ports(webhook) == ["webhook"] and webhook["from"] == [*ANYWHERE, TEST_POD]
    assert ports(metrics) == ["metrics"] and "from" not in metrics  # no `from`: every source


def test_metrics_sources_narrow_both_components_and_keep_the_helm_test_pod() -> None:
    found = policies(
        {"metricsFrom": [MONITORING_NS], "webhookFrom": [{"ipBlock": {"cidr": "10.0.0.0/24"}}]}
    )
    operator = found[f"{FULLNAME}-operator"]["ingress"]
    assert operator[0]["from"] == [{"ipBlock": {"cidr": "10.0.0.0/24"}}, TEST_POD]
    assert operator[1]["from"] == [MONITORING_NS, TEST_POD]
    (agent,) = found[f"{FULLNAME}-agent"]["ingress"]
    assert ports(agent) == ["metrics"] and agent["from"] == [MONITORING_NS]


def test_every_named_port_exists_on_the_pods_it_selects() -> None:
    rendered = render({"networkPolicy": {"enabled": True}})
    for policy in rendered.all("NetworkPolicy"):
        component = policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
        kind = "Deployment" if component == "operator" else "DaemonSet"
        (workload,) = rendered.all(kind)
        named = {
            p["name"]
            for c in workload["spec"]["template"]["spec"]["containers"]
            for p in c["ports"]
        }
        wanted = {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
        assert wanted <= named, (component, wanted - named)


def test_no_agent_policy_without_the_agent() -> None:
    merged = {"networkPolicy": {"enabled": True}, "agent": {"enabled": False}}
    assert [p["metadata"]["name"] for p in render(merged).all("NetworkPolicy")] == [
        f"{FULLNAME}-operator"
    ]
