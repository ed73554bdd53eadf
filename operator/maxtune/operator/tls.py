"""TLS for the webhook port: TLS 1.2 at least (1.3 preferred), certificates reloaded in place.

cert-manager and the chart's own certificate job rotate the Secret behind the
mounted files; the kubelet swaps them atomically some time later. Like kopf's
WebhookServer (1.41+), the files are watched by content hash; unlike it, the
new pair is loaded into the live SSLContext, which OpenSSL uses for every new
handshake, so there is no listening gap. A half-written or mismatched pair is
refused and the old one kept until the next check.

The reloader reports to the operator's Metrics: the expiry of the certificate in
use (at start and after each reload), reloads, and changed files that did not load.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import ssl
from pathlib import Path

from cryptography import x509

from maxtune.operator.metrics import Metrics

log = logging.getLogger(__name__)

# TLS 1.2 suites for clients without 1.3: forward-secret AEAD only.
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


def server_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS12_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION
    context.load_cert_chain(str(cert_file), str(key_file))
    return context


def _digest(*paths: Path) -> str:
    hasher = hashlib.sha256()
    for path in paths:
        hasher.update(path.read_bytes())
        hasher.update(b"\0")
    return hasher.hexdigest()


def certificate_expiry(cert_file: Path) -> float:
    """Unix time at which the first certificate of a PEM file (the serving one) expires."""
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    return cert.not_valid_after_utc.timestamp()


class CertReloader:
    def __init__(
        self,
        context: ssl.SSLContext,
        cert_file: Path,
        key_file: Path,
        interval: float = 10.0,
        metrics: Metrics | None = None,
    ) -> None:
        self.context = context
        self.cert_file = cert_file
        self.key_file = key_file
        self.interval = interval
        self.metrics = metrics
        self.reloads = 0
        self.failures = 0
        self._digest = _digest(cert_file, key_file)
        self._failed_digest = ""
        self._observe_expiry()

    def _observe_expiry(self) -> None:
        if self.metrics is None:
            return
        try:
            self.metrics.observe_certificate(certificate_expiry(self.cert_file))
        except (OSError, ValueError) as exc:  # loaded by OpenSSL, yet unreadable here: keep going
            log.warning("cannot read the certificate's expiry: %s", exc)

    def _failed(self) -> None:
        self.failures += 1
        if self.metrics is not None:
            self.metrics.certificate_reload_failures.inc()

    def check(self) -> bool:
        """Load the files if they changed; True when a new pair is now in use."""
        try:
            digest = _digest(self.cert_file, self.key_file)
        except OSError as exc:
            log.warning("cannot read TLS files: %s (keeping the current pair)", exc)
            return False
        if digest == self._digest:
            return False
        try:
            # Try the pair on a scratch context first: a failed load half-way
            # into the live one would leave a new certificate with the old key.
            server_context(self.cert_file, self.key_file)
            self.context.load_cert_chain(str(self.cert_file), str(self.key_file))
        except (ssl.SSLError, OSError) as exc:
            log.warning("new TLS files do not load: %s (keeping the current pair)", exc)
            if digest != self._failed_digest:  # count each bad pair once, not every check
                self._failed_digest = digest
                self._failed()
            return False
        self._digest = digest
        self.reloads += 1
        if self.metrics is not None:
            self.metrics.certificate_reloads.inc()
        self._observe_expiry()
        log.info("reloaded the webhook's TLS certificate")
        return True

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.check()
