"""Admission policies, the cleanup hook, the helm test, monitors and NOTES inputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.chart.helmkit import (
    CHART,
    FULLNAME,
    NAMESPACE,
    container,
    flag,
    pod_spec,
    render,
    render_text,
)

MONITORING = ("monitoring.coreos.com/v1",)
AGENT_USER = f"system:serviceaccount:{NAMESPACE}:{FULLNAME}-agent"
OPERATOR_USER = f"system:serviceaccount:{NAMESPACE}:{FULLNAME}-operator"


def policy(name: str, values: dict[str, Any] | None = None) -> dict[str, Any]:
    return render(values).get("ValidatingAdmissionPolicy", name)


def test_agent_policy_binds_profiles_to_the_token_node_of_the_agent_only() -> None:
    spec = policy(f"{FULLNAME}-agent-own-profile")["spec"]
    assert spec["failurePolicy"] == "Fail"
    assert spec["matchConstraints"]["resourceRules"] == [
        {
            "apiGroups": ["maxtune.io"],
            "apiVersions": ["*"],
            "operations": ["CREATE", "UPDATE", "DELETE"],
            "resources": ["gpunodeprofiles", "gpunodeprofiles/status"],
        },
        {
            "apiGroups": ["coordination.k8s.io"],
            "apiVersions": ["*"],
            "operations": ["CREATE", "UPDATE", "DELETE"],
            "resources": ["leases"],
        },
    ]
    # Only the agent's account is matched: the operator (which deletes stale profiles) is not.
    assert spec["matchConditions"] == [
        {"name": "is-maxtune-agent", "expression": f"request.userInfo.username == '{AGENT_USER}'"}
    ]
    variables = {v["name"]: v["expression"] for v in spec["variables"]}
    assert (
        "request.userInfo.extra['authentication.kubernetes.io/node-name'][0]"
        in variables["tokenNode"]
    )
    assert [v["expression"] for v in spec["validations"]] == [
        "variables.tokenNode != ''",
        "variables.profile == variables.tokenNode",
    ]
    binding = render().get("ValidatingAdmissionPolicyBinding", f"{FULLNAME}-agent-own-profile")
    assert binding["spec"] == {
        "policyName": f"{FULLNAME}-agent-own-profile",
        "validationActions": ["Deny"],
    }


def test_node_label_policy_matches_the_operator() -> None:
    spec = policy(f"{FULLNAME}-operator-node-labels")["spec"]
    assert spec["failurePolicy"] == "Fail"
    assert (
        spec["matchConditions"][0]["expression"]
        == f"request.userInfo.username == '{OPERATOR_USER}'"
    )
    rule = spec["matchConstraints"]["resourceRules"][0]
    assert rule["apiGroups"] == [""] and set(rule["resources"]) == {"nodes", "nodes/status"}
    assert all(
        "maxtune.io/" in v["expression"] or "spec" in v["expression"] or "UPDATE" in v["expression"]
        for v in spec["validations"]
    )
    binding = render().get("ValidatingAdmissionPolicyBinding", f"{FULLNAME}-operator-node-labels")
    assert binding["spec"]["validationActions"] == ["Deny"]


@pytest.mark.parametrize("guard", ["agentProfileGuard", "nodeLabelGuard"])
def test_policies_can_be_turned_off(guard: str) -> None:
    rendered = render({"security": {guard: {"enabled": False}}})
    assert len(rendered.all("ValidatingAdmissionPolicy")) == 1
    assert len(rendered.all("ValidatingAdmissionPolicyBinding")) == 1


def test_cleanup_hook_runs_maxtune_cleanup_after_the_operator_is_gone() -> None:
    job = render().get("Job", f"{FULLNAME}-cleanup")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-delete"
    main = container(job, "cleanup")
    assert main["command"] == ["maxtune"] and main["args"] == ["cleanup"]
    assert main["image"] == "maxtune-operator:0.1.0"  # no torch needed
    assert pod_spec(job)["restartPolicy"] == "Never"
    assert job["spec"]["backoffLimit"] == 3
    assert not render({"cleanup": {"enabled": False}}).all("Job")


def test_helm_test_checks_the_served_api_readiness_and_webhook_tls() -> None:
    rendered = render()
    pod = rendered.get("Pod", f"{FULLNAME}-test")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    main = container(pod, "smoke-test")
    assert main["command"] == ["python", "/opt/maxtune-test/smoke_test.py"]
    args = main["args"]
    assert flag(args, "--readyz-url") == (
        f"http://{FULLNAME}-operator-metrics.{NAMESPACE}.svc:8080/readyz"
    )
    assert flag(args, "--webhook-url") == f"https://{FULLNAME}-webhook.{NAMESPACE}.svc:443/mutate"
    assert flag(args, "--ca-file") == "/etc/maxtune/webhook-ca/ca.crt"
    script = rendered.get("ConfigMap", f"{FULLNAME}-test")["data"]["smoke_test.py"]
    assert script == (CHART / "files" / "smoke_test.py").read_text()
    ca = next(v for v in pod_spec(pod)["volumes"] if v["name"] == "webhook-ca")
    assert ca["secret"] == {
        "secretName": f"{FULLNAME}-webhook-tls",
        "items": [{"key": "ca.crt", "path": "ca.crt"}],  # the CA only, never the serving key
    }


@pytest.mark.parametrize(
    ("switch", "kind"), [("serviceMonitor", "ServiceMonitor"), ("podMonitor", "PodMonitor")]
)
def test_monitors_for_operator_and_agents(switch: str, kind: str) -> None:
    values = {
        "metrics": {switch: {"enabled": True, "interval": "15s", "labels": {"release": "kps"}}}
    }
    rendered = render(values, MONITORING)
    monitors = {m["metadata"]["name"]: m for m in rendered.all(kind)}
    assert set(monitors) == {f"{FULLNAME}-operator", f"{FULLNAME}-agent"}
    for component, monitor in (
        ("operator", monitors[f"{FULLNAME}-operator"]),
        ("agent", monitors[f"{FULLNAME}-agent"]),
    ):
        assert monitor["metadata"]["labels"]["release"] == "kps"
        selector = monitor["spec"]["selector"]["matchLabels"]
        assert selector["app.kubernetes.io/component"] == component
        endpoints = monitor["spec"].get("endpoints") or monitor["spec"]["podMetricsEndpoints"]
        assert endpoints[0]["port"] == "metrics" and endpoints[0]["interval"] == "15s"
        assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert not render(None, MONITORING).all(kind)  # off by default, even where served


def test_service_monitor_selects_only_metrics_services() -> None:
    values = {"metrics": {"serviceMonitor": {"enabled": True}}}
    rendered = render(values, MONITORING)
    for monitor in rendered.all("ServiceMonitor"):
        selector = monitor["spec"]["selector"]["matchLabels"]
        chosen = [
            s["metadata"]["name"]
            for s in rendered.all("Service")
            if selector.items() <= s["metadata"]["labels"].items()
        ]
        assert chosen == [monitor["metadata"]["name"] + "-metrics"], chosen


def test_notes_name_the_commands_users_need() -> None:
    notes = (CHART / "templates" / "NOTES.txt").read_text()
    for needed in (
        "kubectl get gpunodeprofiles",
        "-L maxtune.io/max-autotune-capable",
        "-L maxtune.io/recommended-mode",
        'maxtune.io/inject: "true"',
        "maxtune.io/inject=enabled",
        "helm test",
        "/metrics",
    ):
        assert needed in notes, needed


def test_every_template_renders_something_in_some_value_set() -> None:
    simulate: dict[str, Any] = {"agent": {"simulate": {"enabled": True, "fleetConfigMap": "f"}}}
    everything = {
        **simulate,
        "metrics": {
            "serviceMonitor": {"enabled": True},
            "podMonitor": {"enabled": True},
            "prometheusRule": {"enabled": True},
            "grafanaDashboard": {"enabled": True},
        },
        "networkPolicy": {"enabled": True},
        "compileCache": {
            "enabled": True,
            "groups": [{"name": "team", "namespaces": ["team-a"]}],
            "persistence": {"enabled": True},
            "podDisruptionBudget": {"enabled": True},
            "metrics": {"enabled": True},
        },
    }
    runs: list[tuple[dict[str, Any], tuple[str, ...]]] = [
        (simulate, ()),
        (everything, ("cert-manager.io/v1", *MONITORING)),
    ]
    sources: set[str] = set()
    for values, apis in runs:
        for line in render_text(values, apis).stdout.splitlines():
            if line.startswith("# Source: maxtune/"):
                sources.add(line.removeprefix("# Source: maxtune/"))
    templates = {
        str(Path("templates") / p.relative_to(CHART / "templates"))
        for p in (CHART / "templates").rglob("*.yaml")
    }
    assert templates <= sources, templates - sources
