"""The webhook's test PKI: maxtune.localplane.certs makes it; the names the tests use."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509

from maxtune.localplane.certs import CertKey, ServingPki, write_serving_pki
from maxtune.localplane.certs import make_ca as _make_ca

WebhookPki = ServingPki


def make_ca(cn: str = "maxtune-test-ca") -> CertKey:
    return _make_ca(cn, days=1)


def write_pki(
    folder: Path, *, ca: CertKey | None = None, cn: str = "maxtune-webhook"
) -> WebhookPki:
    """CA + serving certificate (SAN 127.0.0.1 and localhost) as PEM files in `folder`."""
    return write_serving_pki(folder, ca=ca or make_ca(), common_name=cn, days=1)


def serial_of(pem: bytes) -> int:
    return x509.load_pem_x509_certificate(pem).serial_number
