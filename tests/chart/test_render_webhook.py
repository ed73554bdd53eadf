"""The MutatingWebhookConfiguration and its TLS: fail-open, opt-in by selectors, a CA that signs."""

from __future__ import annotations

import base64
import ipaddress
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.chart.helmkit import FULLNAME, NAMESPACE, render

CERT_MANAGER = ("cert-manager.io/v1",)
SERVICE_NAMES = [
    f"{FULLNAME}-webhook",
    f"{FULLNAME}-webhook.{NAMESPACE}",
    f"{FULLNAME}-webhook.{NAMESPACE}.svc",
    f"{FULLNAME}-webhook.{NAMESPACE}.svc.cluster.local",
]
EXCLUDED = {"key": "kubernetes.io/metadata.name", "operator": "NotIn"}


def webhooks(values: dict[str, Any] | None = None, apis: tuple[str, ...] = ()) -> list[Any]:
    config = render(values, apis).get("MutatingWebhookConfiguration", FULLNAME)
    found: list[Any] = config["webhooks"]
    return found


def by_name(values: dict[str, Any] | None = None) -> dict[str, Any]:
    return {hook["name"]: hook for hook in webhooks(values)}


def test_every_entry_fails_open_fast_without_side_effects() -> None:
    for hook in webhooks():
        assert hook["failurePolicy"] == "Ignore"
        assert hook["timeoutSeconds"] == 2
        assert hook["sideEffects"] == "None"
        assert hook["admissionReviewVersions"] == ["v1"]
        assert hook["reinvocationPolicy"] == "IfNeeded"
        assert hook["rules"] == [
            {
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "operations": ["CREATE"],
                "resources": ["pods"],
                "scope": "Namespaced",
            }
        ]
        assert hook["clientConfig"]["service"] == {
            "name": f"{FULLNAME}-webhook",
            "namespace": NAMESPACE,
            "path": "/mutate",
            "port": 443,
        }
    assert all(hook["timeoutSeconds"] == 3 for hook in webhooks({"webhook": {"timeoutSeconds": 3}}))


def test_pod_opt_in_entry_selects_labelled_pods_only() -> None:
    hook = by_name()["pod-opt-in.webhook.maxtune.io"]
    assert hook["objectSelector"] == {"matchLabels": {"maxtune.io/inject": "true"}}
    assert hook["namespaceSelector"] == {
        "matchExpressions": [{**EXCLUDED, "values": ["kube-system", NAMESPACE]}]
    }


def test_namespace_opt_in_entry_skips_pods_that_decide_for_themselves() -> None:
    hook = by_name()["namespace-opt-in.webhook.maxtune.io"]
    assert hook["namespaceSelector"] == {
        "matchLabels": {"maxtune.io/inject": "enabled"},
        "matchExpressions": [{**EXCLUDED, "values": ["kube-system", NAMESPACE]}],
    }
    # "false" opts out; "true" is served by the pod entry (no second call for the same pod).
    assert hook["objectSelector"] == {
        "matchExpressions": [
            {"key": "maxtune.io/inject", "operator": "NotIn", "values": ["true", "false"]}
        ]
    }


def test_more_namespaces_can_be_excluded() -> None:
    for hook in webhooks({"webhook": {"extraExcludedNamespaces": ["gpu-operator"]}}):
        assert hook["namespaceSelector"]["matchExpressions"] == [
            {**EXCLUDED, "values": ["kube-system", NAMESPACE, "gpu-operator"]}
        ]


def _cert(pem_b64: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(base64.b64decode(pem_b64))


def _sans(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return ext.get_values_for_type(x509.DNSName), [
        str(ip) for ip in ext.get_values_for_type(x509.IPAddress)
    ]


def _signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    public = ca.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    assert cert.signature_hash_algorithm is not None
    try:
        public.verify(
            cert.signature,
            cert.tbs_certificate_bytes,
            padding.PKCS1v15(),
            cert.signature_hash_algorithm,
        )
    except Exception:
        return False
    return cert.issuer == ca.subject


def test_chart_tls_secret_is_signed_by_the_ca_bundle_for_the_service_names() -> None:
    rendered = render()
    secret = rendered.get("Secret", f"{FULLNAME}-webhook-tls")
    assert secret["type"] == "kubernetes.io/tls"
    data = secret["data"]
    assert set(data) == {"ca.crt", "tls.crt", "tls.key"}  # the CA's key is never stored
    ca, leaf = _cert(data["ca.crt"]), _cert(data["tls.crt"])
    for hook in rendered.get("MutatingWebhookConfiguration", FULLNAME)["webhooks"]:
        assert hook["clientConfig"]["caBundle"] == data["ca.crt"]
    assert _signed_by(leaf, ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    usage = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.oid.ExtendedKeyUsageOID.SERVER_AUTH in usage
    assert _sans(leaf) == (SERVICE_NAMES, [])
    key = base64.b64decode(data["tls.key"])
    assert b"PRIVATE KEY" in key
    annotations = secret["metadata"]["annotations"]
    expires = int(annotations["maxtune.io/tls-expires-unix"])
    assert abs(expires - leaf.not_valid_after_utc.timestamp()) <= 1  # read back by upgrades


def test_url_mode_calls_the_url_and_certifies_its_host() -> None:
    values = {"webhook": {"url": "https://127.0.0.1:19443/mutate"}}
    rendered = render(values)
    for hook in rendered.get("MutatingWebhookConfiguration", FULLNAME)["webhooks"]:
        assert hook["clientConfig"]["url"] == "https://127.0.0.1:19443/mutate"
        assert "service" not in hook["clientConfig"]
    leaf = _cert(rendered.get("Secret", f"{FULLNAME}-webhook-tls")["data"]["tls.crt"])
    assert _sans(leaf) == (SERVICE_NAMES, ["127.0.0.1"])


@pytest.mark.parametrize(
    ("url", "dns", "ips"),
    [
        ("https://localhost:9443/mutate", ["localhost"], []),
        ("https://[::1]:9443/mutate", [], ["::1"]),
    ],
)
def test_url_host_becomes_a_name_or_an_address(url: str, dns: list[str], ips: list[str]) -> None:
    leaf = _cert(
        render({"webhook": {"url": url}}).get("Secret", f"{FULLNAME}-webhook-tls")["data"][
            "tls.crt"
        ]
    )
    assert _sans(leaf) == (SERVICE_NAMES + dns, ips)


def test_extra_names_and_addresses_reach_the_certificate() -> None:
    values = {"webhook": {"tls": {"extraDNSNames": ["op.dev.local"], "extraIPSANs": ["10.0.0.7"]}}}
    leaf = _cert(render(values).get("Secret", f"{FULLNAME}-webhook-tls")["data"]["tls.crt"])
    assert _sans(leaf) == ([*SERVICE_NAMES, "op.dev.local"], ["10.0.0.7"])


def test_cert_manager_is_chosen_when_served_and_injects_the_ca() -> None:
    rendered = render(None, CERT_MANAGER)
    assert not rendered.has("Secret", f"{FULLNAME}-webhook-tls")  # cert-manager writes it
    config = rendered.get("MutatingWebhookConfiguration", FULLNAME)
    assert config["metadata"]["annotations"] == {
        "cert-manager.io/inject-ca-from": f"{NAMESPACE}/{FULLNAME}-webhook"
    }
    assert all("caBundle" not in hook["clientConfig"] for hook in config["webhooks"])
    serving = rendered.get("Certificate", f"{FULLNAME}-webhook")
    assert serving["spec"]["secretName"] == f"{FULLNAME}-webhook-tls"
    assert serving["spec"]["dnsNames"] == SERVICE_NAMES
    assert serving["spec"]["issuerRef"] == {
        "name": f"{FULLNAME}-ca",
        "kind": "Issuer",
        "group": "cert-manager.io",
    }
    ca = rendered.get("Certificate", f"{FULLNAME}-webhook-ca")
    assert ca["spec"]["isCA"] is True
    assert rendered.get("Issuer", f"{FULLNAME}-ca")["spec"] == {
        "ca": {"secretName": f"{FULLNAME}-webhook-ca"}
    }
    assert rendered.get("Issuer", f"{FULLNAME}-selfsigned")["spec"] == {"selfSigned": {}}


def test_cert_manager_with_an_existing_issuer_creates_no_issuer() -> None:
    issuer = {"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}
    values = {"webhook": {"tls": {"certManager": {"issuerRef": issuer}}}}
    rendered = render(values, CERT_MANAGER)
    assert not rendered.all("Issuer")
    assert [c["metadata"]["name"] for c in rendered.all("Certificate")] == [f"{FULLNAME}-webhook"]
    assert rendered.get("Certificate", f"{FULLNAME}-webhook")["spec"]["issuerRef"] == issuer


def test_chart_mode_can_be_forced_where_cert_manager_is_served() -> None:
    rendered = render({"webhook": {"tls": {"mode": "chart"}}}, CERT_MANAGER)
    assert rendered.has("Secret", f"{FULLNAME}-webhook-tls")
    assert not rendered.all("Certificate")


def test_cert_manager_certificate_names_the_url_host() -> None:
    values = {"webhook": {"url": "https://127.0.0.1:9443/mutate"}}
    serving = render(values, CERT_MANAGER).get("Certificate", f"{FULLNAME}-webhook")
    assert serving["spec"]["ipAddresses"] == ["127.0.0.1"]
    assert ipaddress.ip_address(serving["spec"]["ipAddresses"][0]).is_loopback
