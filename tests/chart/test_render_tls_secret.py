"""webhook.tls.mode=secret: the user's Secret, a caBundle from values, the same every render.

That is the GitOps-safe mode without cert-manager: nothing is generated and nothing is looked
up, so two renders (Argo CD renders without cluster access) are identical.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from maxtune_dev.localplane.certs import write_serving_pki
from tests.chart.helmkit import FULLNAME, pod_spec, render, render_error, render_text


@pytest.fixture(scope="module")
def ca_pem(tmp_path_factory: pytest.TempPathFactory) -> str:
    pki = write_serving_pki(Path(tmp_path_factory.mktemp("pki")))
    return pki.ca_cert.read_text()


def secret_mode(ca_pem: str, **more: Any) -> dict[str, Any]:
    return {
        "webhook": {"tls": {"mode": "secret", "secret": {"name": "my-tls", "caBundle": ca_pem}}},
        **more,
    }


def test_webhook_trusts_the_given_ca_and_the_chart_makes_no_secret(ca_pem: str) -> None:
    rendered = render(secret_mode(ca_pem))
    assert not rendered.has("Secret", f"{FULLNAME}-webhook-tls")
    assert rendered.all("Certificate") == []
    config = rendered.get("MutatingWebhookConfiguration", FULLNAME)
    assert "cert-manager.io/inject-ca-from" not in config["metadata"].get("annotations", {})
    for hook in config["webhooks"]:
        assert base64.b64decode(hook["clientConfig"]["caBundle"]).decode() == ca_pem.strip()


def test_operator_serves_the_users_secret(ca_pem: str) -> None:
    deployment = render(secret_mode(ca_pem)).get("Deployment", f"{FULLNAME}-operator")
    tls = next(v for v in pod_spec(deployment)["volumes"] if v["name"] == "tls")
    assert tls["secret"]["secretName"] == "my-tls"
    assert [i["key"] for i in tls["secret"]["items"]] == ["tls.crt", "tls.key"]


def test_helm_test_checks_the_webhook_with_the_given_ca(ca_pem: str) -> None:
    rendered = render(secret_mode(ca_pem))
    pod = rendered.get("Pod", f"{FULLNAME}-test")
    volume = next(v for v in pod_spec(pod)["volumes"] if v["name"] == "webhook-ca")
    assert volume["configMap"] == {
        "name": f"{FULLNAME}-test",
        "items": [{"key": "ca.crt", "path": "ca.crt"}],
    }
    config = rendered.get("ConfigMap", f"{FULLNAME}-test")
    assert config["data"]["ca.crt"].strip() == ca_pem.strip()


def test_two_renders_are_identical(ca_pem: str) -> None:
    """What Argo CD needs: nothing random, nothing read from the cluster."""
    first, second = (render_text(secret_mode(ca_pem)).stdout for _ in range(2))
    assert first == second
    chart_mode = [render_text({"webhook": {"tls": {"mode": "chart"}}}).stdout for _ in range(2)]
    assert chart_mode[0] != chart_mode[1]  # what the README warns about


@pytest.mark.parametrize(
    "secret",
    [
        {"name": "my-tls"},
        {"caBundle": "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----"},
    ],
    ids=["no-ca", "no-name"],
)
def test_secret_mode_refuses_half_the_settings(secret: dict[str, str]) -> None:
    message = render_error({"webhook": {"tls": {"mode": "secret", "secret": secret}}})
    assert "webhook.tls.mode=secret needs webhook.tls.secret.name" in message


def test_schema_refuses_a_ca_that_is_not_pem() -> None:
    values = {
        "webhook": {"tls": {"mode": "secret", "secret": {"name": "x", "caBundle": "not pem"}}}
    }
    message = render_error(values)
    assert "at '/webhook/tls/secret/caBundle'" in message
