"""The PrometheusRule: every alert tested with `promtool test rules`, as the chart renders it.

tests/chart/alerts/maxtune_test.yaml holds the cases (a firing and a quiet case per alert, with
the exact labels and annotations an alert carries); this module renders the chart, writes the
rule groups next to them and runs Debian's promtool on both.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from maxtune_dev.demo.promfetch import ensure_promtool
from tests.chart.helmkit import NAMESPACE, render, render_error

MONITORING = ("monitoring.coreos.com/v1",)
CASES = Path(__file__).parent / "alerts" / "maxtune_test.yaml"


def rule_groups(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    merged = {"metrics": {"prometheusRule": {"enabled": True, **(values or {})}}}
    (rule,) = render(merged, MONITORING).all("PrometheusRule")
    groups: list[dict[str, Any]] = rule["spec"]["groups"]
    return groups


def alerts(groups: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for g in groups for r in g["rules"]}


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ensure_promtool()), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def rules_folder(tmp_path: Path) -> Path:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule_groups()}))
    shutil.copy(CASES, tmp_path / CASES.name)
    return tmp_path


def test_promtool_checks_the_rendered_rules(rules_folder: Path) -> None:
    done = promtool("check", "rules", "rules.yaml", cwd=rules_folder)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(alerts(rule_groups()))} rules found" in done.stdout


def test_every_alert_passes_its_promtool_cases(rules_folder: Path) -> None:
    done = promtool("test", "rules", CASES.name, cwd=rules_folder)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_has_a_case_where_it_fires_and_one_where_it_does_not() -> None:
    cases = yaml.safe_load(CASES.read_text())["tests"]
    checks = [c for case in cases for c in case["alert_rule_test"]]
    fires = {c["alertname"] for c in checks if c.get("exp_alerts")}
    quiet = {c["alertname"] for c in checks if not c.get("exp_alerts")}
    names = set(alerts(rule_groups()))
    assert fires == names
    # Alerts on a value that is there or not (certificates, failed checks) show the quiet side
    # with a second series in the same case: it must not alert.
    assert names - quiet == {
        "MaxtuneWebhookCertificateExpiresSoon",
        "MaxtuneWebhookCertificateReloadFailing",
        "MaxtuneAgentPublishErrors",
        "MaxtuneTritonGemmCheckFailing",
        "MaxtuneCompileCheckFailing",
    }


def test_every_expression_selects_the_release_namespace_only() -> None:
    for name, rule in alerts(rule_groups()).items():
        selectors = rule["expr"].count("{")
        assert selectors and rule["expr"].count(f'namespace="{NAMESPACE}"') == selectors, name


def test_alerts_can_be_disabled_labelled_and_tuned() -> None:
    groups = rule_groups(
        {
            "disabled": ["MaxtuneCompileCheckFailing", "MaxtuneNoLabeller"],
            "alertLabels": {"team": "gpu-platform", "severity": "critical"},
            "agentPublishAgeSeconds": 600,
            "webhookLatencySeconds": 0.25,
            "webhookErrorRatio": 0.1,
            "certificateExpiryDays": 3,
        }
    )
    found = alerts(groups)
    assert "MaxtuneCompileCheckFailing" not in found and "MaxtuneNoLabeller" not in found
    assert all(
        r["labels"] == {"team": "gpu-platform", "severity": "critical"} for r in found.values()
    )
    assert "> 600" in found["MaxtuneAgentNotPublishing"]["expr"]
    assert found["MaxtuneWebhookSlow"]["expr"].endswith("> 0.25")
    assert found["MaxtuneWebhookErrors"]["expr"].endswith("> 0.1")
    assert found["MaxtuneWebhookCertificateExpiresSoon"]["expr"].endswith("< 259200")


def test_a_group_with_every_alert_disabled_is_left_out() -> None:
    agent = [
        "MaxtuneAgentNotPublishing",
        "MaxtuneAgentPublishErrors",
        "MaxtuneTritonGemmCheckFailing",
        "MaxtuneCompileCheckFailing",
    ]
    groups = rule_groups({"disabled": agent})
    assert [g["name"] for g in groups] == ["maxtune.operator", "maxtune.webhook"]
    assert all(g["rules"] for g in groups)
    everything = list(alerts(rule_groups()))
    assert rule_groups({"disabled": everything}) == []


def test_certificate_alert_says_how_to_renew_in_each_tls_mode() -> None:
    def description(values: dict[str, Any], apis: tuple[str, ...] = MONITORING) -> str:
        merged = {"metrics": {"prometheusRule": {"enabled": True}}, **values}
        (rule,) = render(merged, apis).all("PrometheusRule")
        found = alerts(rule["spec"]["groups"])["MaxtuneWebhookCertificateExpiresSoon"]
        text: str = found["annotations"]["description"]
        return text

    assert "helm upgrade" in description({"webhook": {"tls": {"mode": "chart"}}})
    cert_manager = description({}, (*MONITORING, "cert-manager.io/v1"))
    assert "describe certificate mt-maxtune-webhook" in cert_manager
    secret = {"mode": "secret", "secret": {"name": "my-tls", "caBundle": PEM}}
    assert "Renew the Secret my-tls" in description({"webhook": {"tls": secret}})


def test_rules_need_the_prometheus_operator_api() -> None:
    message = render_error({"metrics": {"prometheusRule": {"enabled": True}}})
    assert "does not serve monitoring.coreos.com/v1" in message


PEM = "-----BEGIN CERTIFICATE-----\nMIIBsjCCAVmgAwIBAgIUEXAMPLE=\n-----END CERTIFICATE-----\n"
