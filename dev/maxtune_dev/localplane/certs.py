"""A throwaway PKI for one local plane: a CA, serving and client certificates, an SA key.

ECDSA P-256 keys: every component accepts them and they are generated in
microseconds, which matters when every test session makes a fresh PKI.
Identities follow the names Kubernetes' default RBAC bootstrap roles expect
(system:kube-controller-manager, system:kube-scheduler), so RBAC is exercised
for real instead of everything running as a superuser.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# First address of the service range (components.SERVICE_CIDR): the `kubernetes` Service.
SERVICE_IP = "127.96.0.1"
APISERVER_DNS = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
APISERVER_IPS = ("127.0.0.1", SERVICE_IP)


@dataclass(frozen=True)
class CertKey:
    """A PEM certificate and its PEM private key."""

    cert_pem: bytes
    key_pem: bytes

    @property
    def cert(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(common_name: str, organizations: Sequence[str] = ()) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


def _validity(days: int) -> tuple[dt.datetime, dt.datetime]:
    # Back-date a little: components compare against their own clock.
    now = dt.datetime.now(dt.UTC)
    return now - dt.timedelta(minutes=5), now + dt.timedelta(days=days)


def make_ca(common_name: str = "maxtune-localplane-ca", days: int = 30) -> CertKey:
    key = _new_key()
    not_before, not_after = _validity(days)
    name = _name(common_name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertKey(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def issue(
    ca: CertKey,
    common_name: str,
    *,
    organizations: Sequence[str] = (),
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str] = (),
    server: bool = False,
    client: bool = False,
    days: int = 30,
) -> CertKey:
    """A leaf certificate signed by `ca`; CN and O are the Kubernetes user and groups."""
    if not (server or client):
        raise ValueError("a certificate must be for a server, a client or both")
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise TypeError("the CA key must be an ECDSA key")
    key = _new_key()
    not_before, not_after = _validity(days)
    usages = []
    if server:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    if client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, organizations))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    alt_names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
    alt_names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return CertKey(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def make_signing_key() -> tuple[bytes, bytes]:
    """(private PEM, public PEM) of the service-account token signing key."""
    key = _new_key()
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return _key_pem(key), public


# Client identities: (file stem, user, groups).
CLIENTS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("admin", "maxtune-admin", ("system:masters",)),
    ("controller-manager", "system:kube-controller-manager", ()),
    ("scheduler", "system:kube-scheduler", ()),
    # kwok plays the kubelet of every fake node at once; no single node identity
    # can do that under the Node authorizer, so it runs as an administrator.
    ("kwok", "kwok-controller", ("system:masters",)),
)


FRONT_PROXY_USER = "front-proxy-client"
CLIENT_USERS: dict[str, str] = {stem: user for stem, user, _ in CLIENTS}


@dataclass(frozen=True)
class PkiFiles:
    """Where write_pki put each file (the flags of the components point here)."""

    ca_cert: Path
    ca_key: Path
    serving_cert: Path
    serving_key: Path
    sa_private: Path
    sa_public: Path
    front_proxy_ca: Path
    front_proxy_cert: Path
    front_proxy_key: Path
    clients: dict[str, CertKey]
    ca: CertKey

    @property
    def folder(self) -> Path:
        return self.ca_cert.parent


def write_pki(folder: Path) -> PkiFiles:
    """Generate a fresh PKI into `folder` (mode 0600 keys) and return the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    ca = make_ca()
    serving = issue(
        ca, "kube-apiserver", dns_names=APISERVER_DNS, ip_addresses=APISERVER_IPS, server=True
    )
    sa_private, sa_public = make_signing_key()
    clients = {
        stem: issue(ca, user, organizations=groups, client=True) for stem, user, groups in CLIENTS
    }

    def put(name: str, data: bytes, private: bool = False) -> Path:
        path = folder / name
        path.write_bytes(data)
        if private:
            path.chmod(0o600)
        return path

    # The aggregation layer's own CA: the API server proves itself to aggregated
    # API servers with it, and the controllers read it to trust that identity.
    front_ca = make_ca("maxtune-localplane-front-proxy-ca")
    front_client = issue(front_ca, FRONT_PROXY_USER, client=True)
    for stem, pair in clients.items():
        put(f"{stem}.crt", pair.cert_pem)
        put(f"{stem}.key", pair.key_pem, private=True)
    return PkiFiles(
        ca_cert=put("ca.crt", ca.cert_pem),
        ca_key=put("ca.key", ca.key_pem, private=True),
        serving_cert=put("apiserver.crt", serving.cert_pem),
        serving_key=put("apiserver.key", serving.key_pem, private=True),
        sa_private=put("sa.key", sa_private, private=True),
        sa_public=put("sa.pub", sa_public),
        front_proxy_ca=put("front-proxy-ca.crt", front_ca.cert_pem),
        front_proxy_cert=put("front-proxy-client.crt", front_client.cert_pem),
        front_proxy_key=put("front-proxy-client.key", front_client.key_pem, private=True),
        clients=clients,
        ca=ca,
    )


@dataclass(frozen=True)
class ServingPki:
    """A CA and a serving certificate for a process on 127.0.0.1 (a webhook under test)."""

    ca_cert: Path
    cert: Path
    key: Path

    @property
    def ca_pem(self) -> bytes:
        return self.ca_cert.read_bytes()


def write_serving_pki(
    folder: Path, *, ca: CertKey | None = None, common_name: str = "maxtune-webhook", days: int = 2
) -> ServingPki:
    """CA (a new one unless given) and a serving certificate for 127.0.0.1 and localhost, as PEM
    files in `folder` (key mode 0600): what the operator's webhook serves in tests and
    benchmarks, ECDSA P-256 as the chart's certificates are."""
    folder.mkdir(parents=True, exist_ok=True)
    ca = ca or make_ca("maxtune-webhook-ca", days=days)
    leaf = issue(
        ca, common_name, dns_names=["localhost"], ip_addresses=["127.0.0.1"], server=True, days=days
    )
    pki = ServingPki(folder / "ca.crt", folder / "tls.crt", folder / "tls.key")
    pki.ca_cert.write_bytes(ca.cert_pem)
    pki.cert.write_bytes(leaf.cert_pem)
    pki.key.touch(mode=0o600)
    pki.key.write_bytes(leaf.key_pem)
    return pki
