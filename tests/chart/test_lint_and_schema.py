"""helm lint, and values.schema.json refusing bad values with a message that says what is wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.chart.helmkit import CHART, helm, render, render_error, values_args

VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "three-replicas": {"operator": {"replicas": 3}},
    "runtime-class": {"agent": {"runtimeClassName": "nvidia"}},
    "simulation": {"agent": {"simulate": {"enabled": True, "fleetConfigMap": "fleet"}}},
    "webhook-url": {
        "webhook": {"url": "https://127.0.0.1:9443/mutate", "tls": {"extraIPSANs": ["::1"]}}
    },
    # (helm lint has no --api-versions: the PrometheusRule's renders are tested in test_alerts.py)
    "observability": {
        "metrics": {"grafanaDashboard": {"enabled": True}},
        "networkPolicy": {"enabled": True, "metricsFrom": [{"namespaceSelector": {}}]},
    },
    "crds-off": {"crds": {"enabled": False}},
    "no-agent-no-guards": {
        "agent": {"enabled": False},
        "security": {"agentProfileGuard": {"enabled": False}, "nodeLabelGuard": {"enabled": False}},
        "cleanup": {"enabled": False},
    },
}


@pytest.mark.parametrize("strict", [False, True], ids=["lint", "lint-strict"])
@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_lint(name: str, strict: bool, tmp_path: Path) -> None:
    args = ["lint", str(CHART), *values_args(VALUE_SETS[name], tmp_path)]
    done = helm(*args, *(["--strict"] if strict else []), check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 chart(s) failed" in done.stdout
    assert "[WARNING]" not in done.stdout and "[ERROR]" not in done.stdout


def test_every_value_set_renders() -> None:
    for name, values in VALUE_SETS.items():
        assert render(values).objects, name


# (values, the path helm names, words of the reason)
REFUSED: list[tuple[dict[str, Any], str, str]] = [
    ({"operator": {"replicas": 0}}, "/operator/replicas", "minimum: got 0, want 1"),
    ({"operator": {"replicas": "two"}}, "/operator/replicas", "got string, want integer"),
    ({"operator": {"replicas": 1.5}}, "/operator/replicas", "want integer"),
    ({"webhook": {"timeoutSeconds": 5}}, "/webhook/timeoutSeconds", "maximum: got 5, want 3"),
    ({"webhook": {"timeoutSeconds": 0}}, "/webhook/timeoutSeconds", "minimum: got 0, want 1"),
    ({"webhook": {"url": "http://127.0.0.1:9443/mutate"}}, "/webhook/url", "https://"),
    (
        {"webhook": {"tls": {"mode": "self"}}},
        "/webhook/tls/mode",
        "'auto', 'certManager', 'secret', 'chart'",
    ),
    ({"webhook": {"tls": {"extraIPSANs": ["localhost"]}}}, "/webhook/tls/extraIPSANs/0", "match"),
    ({"unknownKey": True}, "", "additional properties 'unknownKey' not allowed"),
    ({"operator": {"replica": 2}}, "/operator", "additional properties 'replica' not allowed"),
    ({"agent": {"level": "fast"}}, "/agent/level", "'inventory', 'gemm', 'full'"),
    ({"agent": {"intervalSeconds": 1}}, "/agent/intervalSeconds", "minimum: got 1, want 10"),
    ({"agent": {"metricsPort": 70000}}, "/agent/metricsPort", "maximum: got 70,000, want 65,535"),
    ({"agent": {"gpuNodeSelectorTerms": []}}, "/agent/gpuNodeSelectorTerms", "minItems"),
    (
        {"agent": {"tolerations": [{"operator": "Maybe"}]}},
        "/agent/tolerations/0/operator",
        "one of",
    ),
    ({"crds": {"enabled": "yes"}}, "/crds/enabled", "want boolean"),
    ({"agent": {"priorityClassName": "Not_A_Name"}}, "/agent/priorityClassName", "pattern"),
    ({"networkPolicy": {"metricsFrom": [{}]}}, "/networkPolicy/metricsFrom/0", "minProperties"),
    (
        {"networkPolicy": {"webhookFrom": [{"ipBlock": {}}]}},
        "/networkPolicy/webhookFrom/0/ipBlock",
        "missing property 'cidr'",
    ),
    (
        {"metrics": {"serviceMonitor": {"scrapeTimeout": "10 seconds"}}},
        "/metrics/serviceMonitor/scrapeTimeout",
        "",
    ),
    (
        {"metrics": {"prometheusRule": {"webhookErrorRatio": 2}}},
        "/metrics/prometheusRule/webhookErrorRatio",
        "maximum",
    ),
    (
        {"metrics": {"prometheusRule": {"disabled": ["NotOurs"]}}},
        "/metrics/prometheusRule/disabled/0",
        "pattern",
    ),
    (
        {"metrics": {"grafanaDashboard": {"label": ""}}},
        "/metrics/grafanaDashboard/label",
        "minLength",
    ),
    ({"operator": {"podAntiAffinity": "always"}}, "/operator/podAntiAffinity", "'soft'"),
    ({"operator": {"image": {"digest": "latest"}}}, "/operator/image/digest", "pattern"),
    (
        {"operator": {"resources": {"limits": {"memory": "lots"}}}},
        "/operator/resources/limits/memory",
        "'lots' does not match pattern",
    ),
    (
        {"metrics": {"serviceMonitor": {"enabled": "yes"}}},
        "/metrics/serviceMonitor/enabled",
        "want boolean",
    ),
]


@pytest.mark.parametrize(("values", "path", "reason"), REFUSED, ids=[r[1] or "/" for r in REFUSED])
def test_schema_refuses_with_a_clear_message(
    values: dict[str, Any], path: str, reason: str
) -> None:
    message = render_error(values)
    assert "values don't meet the specifications of the schema" in message
    assert f"at '{path}'" in message, message
    assert reason in message, message


# Values the schema cannot judge alone: the templates refuse them and say how to fix it.
TEMPLATE_REFUSALS: list[tuple[dict[str, Any], tuple[str, ...], str]] = [
    (
        {"agent": {"simulate": {"enabled": True}}},
        (),
        "agent.simulate.enabled=true needs agent.simulate.fleetConfigMap",
    ),
    (
        {"webhook": {"tls": {"mode": "certManager"}}},
        (),
        "does not serve cert-manager.io/v1: install cert-manager first, "
        "or use webhook.tls.mode=secret or chart",
    ),
    (
        {"metrics": {"serviceMonitor": {"enabled": True}}},
        (),
        "does not serve monitoring.coreos.com/v1",
    ),
    (
        {"metrics": {"podMonitor": {"enabled": True}}},
        (),
        "does not serve monitoring.coreos.com/v1",
    ),
    (
        {"metrics": {"prometheusRule": {"enabled": True}}},
        (),
        "does not serve monitoring.coreos.com/v1",
    ),
]


@pytest.mark.parametrize(("values", "apis", "reason"), TEMPLATE_REFUSALS)
def test_templates_refuse_what_cannot_work(
    values: dict[str, Any], apis: tuple[str, ...], reason: str
) -> None:
    assert reason in render_error(values, apis)
