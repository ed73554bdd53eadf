"""Monitors' scrape options and the Grafana dashboard ConfigMap, as users set them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.chart.helmkit import CHART, FULLNAME, NAMESPACE, render

MONITORING = ("monitoring.coreos.com/v1",)
NODE_FROM_POD = {"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node"}
DROP = {"sourceLabels": ["__name__"], "regex": "maxtune_gpu_compile_seconds", "action": "drop"}
ZONE = {"sourceLabels": ["__meta_kubernetes_pod_label_zone"], "targetLabel": "zone"}


def endpoints(kind: str, switch: str, options: dict[str, Any]) -> dict[str, dict[str, Any]]:
    values = {"metrics": {switch: {"enabled": True, **options}}}
    found = {}
    for monitor in render(values, MONITORING).all(kind):
        spec = monitor["spec"]
        (endpoint,) = spec.get("endpoints") or spec["podMetricsEndpoints"]
        found[monitor["metadata"]["name"].removeprefix(f"{FULLNAME}-")] = endpoint
    return found


@pytest.mark.parametrize(
    ("kind", "switch"), [("ServiceMonitor", "serviceMonitor"), ("PodMonitor", "podMonitor")]
)
def test_monitor_options_reach_both_endpoints(kind: str, switch: str) -> None:
    defaults = endpoints(kind, switch, {})
    assert defaults["agent"]["relabelings"] == [NODE_FROM_POD]
    assert "relabelings" not in defaults["operator"]
    assert all(e["honorLabels"] is False and "scrapeTimeout" not in e for e in defaults.values())
    assert all("metricRelabelings" not in e for e in defaults.values())

    options = {
        "scrapeTimeout": "10s",
        "honorLabels": True,
        "relabelings": [ZONE],
        "metricRelabelings": [DROP],
    }
    found = endpoints(kind, switch, options)
    assert found["agent"]["relabelings"] == [NODE_FROM_POD, ZONE]  # the chart's own first
    assert found["operator"]["relabelings"] == [ZONE]
    for endpoint in found.values():
        assert endpoint["scrapeTimeout"] == "10s" and endpoint["honorLabels"] is True
        assert endpoint["metricRelabelings"] == [DROP]


def test_dashboard_configmap_for_the_grafana_sidecar() -> None:
    assert not render().has("ConfigMap", f"{FULLNAME}-dashboard")  # off by default
    (config,) = [
        c
        for c in render({"metrics": {"grafanaDashboard": {"enabled": True}}}).all("ConfigMap")
        if c["metadata"]["name"] == f"{FULLNAME}-dashboard"
    ]
    assert config["metadata"]["namespace"] == NAMESPACE
    assert config["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads((CHART / "dashboards" / "maxtune.json").read_text())
    assert json.loads(config["data"]["maxtune.json"]) == shipped


def test_dashboard_label_namespace_and_folder_are_configurable() -> None:
    values = {
        "metrics": {
            "grafanaDashboard": {
                "enabled": True,
                "namespace": "grafana",
                "label": "my.org/dashboard",
                "labelValue": "maxtune",
                "annotations": {"grafana_folder": "GPU"},
            }
        }
    }
    (config,) = [
        c for c in render(values).all("ConfigMap") if c["metadata"]["name"].endswith("-dashboard")
    ]
    assert config["metadata"]["namespace"] == "grafana"
    assert config["metadata"]["labels"]["my.org/dashboard"] == "maxtune"
    assert "grafana_dashboard" not in config["metadata"]["labels"]
    assert config["metadata"]["annotations"] == {"grafana_folder": "GPU"}


def test_dashboard_queries_use_its_variables_and_data_source() -> None:
    dashboard = json.loads((CHART / "dashboards" / "maxtune.json").read_text())
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert variables == {"datasource", "namespace", "gpu_class"}
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    for panel in panels:
        assert panel["targets"], panel["title"]
        assert panel["description"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert 'namespace="$namespace"' in target["expr"], panel["title"]
