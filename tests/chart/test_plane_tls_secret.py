"""webhook.tls.mode=secret on the real API server, with the optional objects a user would add.

The user creates the serving Secret; the release trusts the CA given in values. The operator runs
from the Deployment's own pod spec (its TLS volume is the user's Secret), the API server calls it
for an opted-in pod (so the caBundle from values is what it trusts), and the helm test script
checks the webhook with the CA the test hook's ConfigMap carries. The NetworkPolicies and the
dashboard ConfigMap go in the same release, so the API server validates them too (nothing here
enforces network policies: kwok runs no network).
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from kubernetes.client import ApiClient

from maxtune.contract.names import ANNOTATION_DECISION
from maxtune_dev.localplane import LocalPlane, wait_for
from maxtune_dev.localplane.certs import write_serving_pki
from tests.chart.conftest import Installer
from tests.chart.helmkit import CHART
from tests.chart.localrun import flag_value, kapi, pod_token, pods, prepare, token_kubeconfig

pytestmark = [pytest.mark.plane, pytest.mark.slow]


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return int(answer.status) == 200
    except (urllib.error.URLError, OSError):
        return False


def test_users_secret_serves_the_webhook_the_api_server_calls(
    plane: LocalPlane, k8s: ApiClient, namespace: str, install: Installer, tmp_path: Path
) -> None:
    pki = write_serving_pki(tmp_path / "pki")  # CA + a certificate for 127.0.0.1 (webhook.url)
    core = kapi("CoreV1Api", k8s)
    core.create_namespaced_secret(
        namespace,
        {
            "metadata": {"name": "user-webhook-tls"},
            "type": "kubernetes.io/tls",
            "data": {
                "tls.crt": base64.b64encode(pki.cert.read_bytes()).decode(),
                "tls.key": base64.b64encode(pki.key.read_bytes()).decode(),
            },
        },
    )
    release = install(
        {
            "webhook": {
                "tls": {
                    "mode": "secret",
                    "secret": {"name": "user-webhook-tls", "caBundle": pki.ca_cert.read_text()},
                }
            },
            "networkPolicy": {
                "enabled": True,
                "metricsFrom": [{"namespaceSelector": {"matchLabels": {"team": "monitoring"}}}],
            },
            "metrics": {"grafanaDashboard": {"enabled": True}},
        }
    )
    secrets = {s.metadata.name for s in core.list_namespaced_secret(namespace).items}
    assert f"{release.fullname}-webhook-tls" not in secrets  # the chart made none of its own
    policies = kapi("NetworkingV1Api", k8s).list_namespaced_network_policy(namespace).items
    assert sorted(p.metadata.name for p in policies) == [
        f"{release.fullname}-agent",
        f"{release.fullname}-operator",
    ]
    dashboard = core.read_namespaced_config_map(f"{release.fullname}-dashboard", namespace)
    assert dashboard.metadata.labels["grafana_dashboard"] == "1"
    assert json.loads(dashboard.data["maxtune.json"])["uid"] == "maxtune-overview"

    pod = wait_for(
        lambda: next(iter(pods(k8s, namespace, "operator")), None),
        timeout_s=60,
        what="operator pod",
    )
    kubeconfig = token_kubeconfig(plane, pod_token(k8s, pod), tmp_path / "operator.kubeconfig")
    run = prepare(k8s, pod, "operator", tmp_path / "operator", kubeconfig)
    served = run.root / "etc" / "maxtune" / "tls" / "tls.crt"
    assert served.read_bytes() == pki.cert.read_bytes()  # the user's Secret, mounted
    log_path = tmp_path / "operator.log"
    with log_path.open("wb") as log:
        process = run.start(log)
        try:
            readyz = f"http://127.0.0.1:{flag_value(run.argv, '--metrics-port')}/readyz"
            wait_for(
                lambda: process.poll() is None and _ready(readyz),
                timeout_s=60,
                what=f"the operator's /readyz (log: {log_path})",
            )
            team = f"{namespace}-team"
            core.create_namespace({"metadata": {"name": team}})
            try:
                created = core.create_namespaced_pod(
                    team,
                    {
                        "metadata": {"name": "train", "labels": {"maxtune.io/inject": "true"}},
                        "spec": {
                            "containers": [
                                {
                                    "name": "train",
                                    "image": "registry.invalid/train:1",
                                    "resources": {"limits": {"nvidia.com/gpu": "1"}},
                                }
                            ]
                        },
                    },
                )
            finally:
                core.delete_namespace(team)
            # Annotated: the API server reached the webhook and trusted it through the caBundle.
            assert ANNOTATION_DECISION in (created.metadata.annotations or {})

            # The helm test's own arguments and CA (from its ConfigMap), pointed at this operator.
            hooks = release.hook_manifests("test")
            test_pod = next(o for o in hooks if o["kind"] == "Pod")
            config = next(o for o in hooks if o["kind"] == "ConfigMap")
            ca_file = tmp_path / "test-ca.crt"
            ca_file.write_text(config["data"]["ca.crt"])
            args = list(test_pod["spec"]["containers"][0]["args"])
            swap = {
                "--readyz-url": readyz,
                "--webhook-url": release.values["webhook"]["url"],
                "--ca-file": str(ca_file),
            }
            for name, value in swap.items():
                args[args.index(name) + 1] = value
            script = str(CHART / "files" / "smoke_test.py")
            argv = [sys.executable, script, *args, "--kubeconfig", str(plane.kubeconfig)]
            done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
            assert done.returncode == 0, done.stdout + done.stderr
            assert "ok    webhook:" in done.stdout and "ok    tls-only:" in done.stdout
        finally:
            process.terminate()
            process.wait(timeout=20)
