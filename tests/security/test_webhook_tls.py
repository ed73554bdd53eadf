"""The running operator's webhook port speaks TLS 1.2+ with AEAD ciphers only.

Against `maxtune operator` as a process (its flags as the chart passes them): plain HTTP gets no
AdmissionReview, TLS 1.0 and 1.1 are refused, TLS 1.2 only with ECDHE and AES-GCM or
ChaCha20 (no CBC), TLS 1.3 whenever the client has it, and the certificate is the one the
operator was given (it verifies against that CA, for 127.0.0.1). A control proves the client
used here can speak TLS 1.0/1.1 and CBC at all, so the refusals are the server's.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from maxtune_dev.testkit import operator as operatorkit
from tests.faults.conftest import OperatorFactory

pytestmark = [pytest.mark.plane]

OLD = (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1)
CBC = "ECDHE-ECDSA-AES128-SHA"  # TLS 1.2-capable, but CBC with SHA-1 MACs
GCM = "ECDHE-ECDSA-AES128-GCM-SHA256"


def client(
    ca: Path, *, maximum: ssl.TLSVersion | None = None, ciphers: str | None = None
) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    with warnings.catch_warnings():  # old versions are deprecated: testing them is the point
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        if maximum is not None:
            context.maximum_version = maximum
    context.set_ciphers(ciphers or "ALL:@SECLEVEL=0")
    return context


def handshake(port: int, context: ssl.SSLContext) -> tuple[str, str]:
    """(TLS version, cipher) of a completed handshake; raises when the server refuses."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        version, cipher = tls.version(), tls.cipher()
        assert version is not None and cipher is not None
        return version, cipher[0]


def refused(port: int, context: ssl.SSLContext) -> bool:
    try:
        handshake(port, context)
    except (ssl.SSLError, ConnectionError):
        return True
    return False


@pytest.fixture(scope="module")
def operator(operators: OperatorFactory) -> Iterator[operatorkit.OperatorProcess]:
    op = operators(identity="op-tls", lease="tls-labeller")
    op.start()
    yield op
    op.stop()


@pytest.fixture(scope="module")
def permissive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """A server that accepts anything, to prove the client side can offer old TLS and CBC."""
    pki = operatorkit.write_pki(tmp_path_factory.mktemp("permissive"))
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        server.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    server.set_ciphers("ALL:@SECLEVEL=0")
    server.load_cert_chain(pki.cert, pki.key)
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with contextlib.suppress(OSError), server.wrap_socket(conn, server_side=True):
                pass

    threading.Thread(target=serve, daemon=True).start()
    yield listener.getsockname()[1], pki.ca_cert
    stop.set()
    listener.close()


def test_the_client_can_offer_what_the_webhook_must_refuse(permissive: tuple[int, Path]) -> None:
    port, ca = permissive
    for version in OLD:
        assert handshake(port, client(ca, maximum=version))[0] in ("TLSv1", "TLSv1.1")
    assert handshake(port, client(ca, maximum=ssl.TLSVersion.TLSv1_2, ciphers=CBC)) == (
        "TLSv1.2",
        CBC,
    )


def test_old_tls_and_cbc_are_refused_modern_tls_is_served(
    operator: operatorkit.OperatorProcess,
) -> None:
    port, ca = operator.webhook_port, operator.pki.ca_cert
    for version in OLD:
        assert refused(port, client(ca, maximum=version)), f"{version.name} was accepted"
    assert refused(port, client(ca, maximum=ssl.TLSVersion.TLSv1_2, ciphers=CBC))
    assert handshake(port, client(ca, maximum=ssl.TLSVersion.TLSv1_2, ciphers=GCM)) == (
        "TLSv1.2",
        GCM,
    )
    assert handshake(port, ssl.create_default_context(cafile=str(ca)))[0] == "TLSv1.3"
    # A client that trusts another CA does not get through: the certificate is the given one.
    other = operatorkit.write_pki(operator.log_path.parent / "other-ca")
    assert refused(port, ssl.create_default_context(cafile=str(other.ca_cert)))


def test_plain_http_gets_no_admission_review(operator: operatorkit.OperatorProcess) -> None:
    request = (
        b"POST /mutate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 2\r\nConnection: close\r\n\r\n{}"
    )
    with socket.create_connection(("127.0.0.1", operator.webhook_port), timeout=5) as raw:
        raw.sendall(request)
        answer = b""
        with contextlib.suppress(OSError):
            while chunk := raw.recv(4096):
                answer += chunk
    assert b"AdmissionReview" not in answer, answer[:300]
    assert not answer.startswith(b"HTTP/1.1 200"), answer[:300]
    # And the plain metrics port does not serve the webhook.
    status, _ = operator.get("/mutate")
    assert status in (404, 405), status
