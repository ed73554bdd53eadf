"""The generated PKI and kubeconfigs: what the components and clients rely on."""

from __future__ import annotations

import base64
import ipaddress
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from kubernetes import client, config

from maxtune_dev.localplane.certs import CLIENT_USERS, SERVICE_IP, issue, make_ca, write_pki
from maxtune_dev.localplane.components import SERVICE_CIDR
from maxtune_dev.localplane.kubeconfig import render_kubeconfig, write_kubeconfig


def _san(cert: x509.Certificate) -> x509.SubjectAlternativeName:
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value


def test_ca_is_a_ca_and_signs_its_leaves() -> None:
    ca = make_ca()
    constraints = ca.cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca
    leaf = issue(ca, "someone", client=True)
    leaf.cert.verify_directly_issued_by(ca.cert)


def test_serving_certificate_covers_loopback_and_the_service_names(tmp_path: Path) -> None:
    pki = write_pki(tmp_path)
    serving = x509.load_pem_x509_certificate(pki.serving_cert.read_bytes())
    san = _san(serving)
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert "kubernetes.default.svc" in san.get_values_for_type(x509.DNSName)
    ips = san.get_values_for_type(x509.IPAddress)
    assert ipaddress.ip_address("127.0.0.1") in ips
    assert ipaddress.ip_address(SERVICE_IP) in ips
    # The `kubernetes` Service takes the first address of the service range.
    assert ipaddress.ip_address(SERVICE_IP) == next(ipaddress.ip_network(SERVICE_CIDR).hosts())
    usage = serving.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in usage


def test_client_certificates_carry_user_and_groups(tmp_path: Path) -> None:
    pki = write_pki(tmp_path)
    admin = pki.clients["admin"].cert
    assert admin.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "maxtune-admin"
    groups = [a.value for a in admin.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    assert groups == ["system:masters"]
    kcm = pki.clients["controller-manager"].cert
    assert CLIENT_USERS["controller-manager"] == "system:kube-controller-manager"
    assert kcm.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
        "system:kube-controller-manager"
    )
    for pair in pki.clients.values():
        pair.cert.verify_directly_issued_by(pki.ca.cert)
    assert (pki.sa_private.stat().st_mode & 0o777) == 0o600
    assert pki.sa_public.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")


def test_kubeconfig_embeds_credentials_and_loads_in_the_client(tmp_path: Path) -> None:
    pki = write_pki(tmp_path / "pki")
    text = render_kubeconfig(
        "https://127.0.0.1:6443", pki.ca.cert_pem, pki.clients["admin"], user="maxtune-admin"
    )
    document = yaml.safe_load(text)
    cluster = document["clusters"][0]["cluster"]
    assert cluster["server"] == "https://127.0.0.1:6443"
    assert base64.b64decode(cluster["certificate-authority-data"]) == pki.ca.cert_pem
    user = document["users"][0]["user"]
    assert base64.b64decode(user["client-key-data"]) == pki.clients["admin"].key_pem
    path = write_kubeconfig(tmp_path / "kubeconfig", text)
    assert (path.stat().st_mode & 0o777) == 0o600
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(path), client_configuration=configuration)
    assert configuration.host == "https://127.0.0.1:6443"
