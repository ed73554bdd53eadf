"""Fuzzing the running operator's webhook over TLS, as the API server would reach it.

`maxtune operator` runs as a process against the session plane; hypothesis sends it reviews
with odd pods, reviews spoiled anywhere, raw bytes, and raw HTTP. Every answer must be HTTP 200
with a valid AdmissionReview (the checks in checks.py); raw HTTP may be refused, never with a
5xx. Afterwards the same process (same pid) is healthy, counted no internal error, and still
patches an ordinary pod.
"""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from maxtune.kube import Kube
from maxtune_dev import testkit
from maxtune_dev.testkit import operator as operatorkit
from tests.faults.conftest import OperatorFactory
from tests.fuzz.budget import count, examples
from tests.fuzz.checks import check_review, expected_uid, parse_answer, patch_ops
from tests.fuzz.strategies import raw_bodies, review, reviews, spoiled
from tests.fuzz.wire import Webhook, small_fleet, wait_labelled

pytestmark = [pytest.mark.plane, pytest.mark.slow]


def budget(default: int, share: float = 1.0) -> settings:
    return settings(
        max_examples=examples(default, share=share),
        deadline=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.function_scoped_fixture,
        ],
    )


@dataclass(frozen=True)
class Served:
    op: operatorkit.OperatorProcess
    hook: Webhook
    pid: int


@pytest.fixture(scope="module")
def served(kube: Kube, operators: OperatorFactory) -> Iterator[Served]:
    fleet = small_fleet(kube)
    wanted = next(fleet)
    op = operators(identity="op-fuzz", lease="fuzz-labeller")
    op.start()
    assert op.proc is not None
    wait_labelled(kube, wanted)
    hook = Webhook(op.webhook_port, op.pki.ca_cert)
    try:
        yield Served(op, hook, op.proc.pid)
    finally:
        hook.close()
        op.stop()
        fleet.close()


@budget(200)
@given(case=reviews())
def test_pods_over_tls(served: Served, case: Any) -> None:
    body, uid = case
    hook = served.hook
    check_review(
        json.dumps(body).encode(),
        uid,
        body["request"]["object"],
        hook.ask,
        namespace=body["request"]["namespace"],
    )
    count("wire: pods in reviews")


@budget(200)
@given(body=spoiled())
def test_spoiled_reviews_over_tls(served: Served, body: dict[str, Any]) -> None:
    request = body.get("request")
    request = request if isinstance(request, dict) else {}
    check_review(
        json.dumps(body).encode(),
        request.get("uid"),
        request.get("object"),
        served.hook.ask,
        namespace=request.get("namespace"),
    )
    count("wire: spoiled reviews")


@budget(200)
@given(body=raw_bodies)
def test_raw_bodies_over_tls(served: Served, body: bytes) -> None:
    answer = parse_answer(served.hook.ask(body))
    want = expected_uid(body)
    if want is not None:
        assert answer["response"]["uid"] == want
    count("wire: raw bodies")


http_methods = st.sampled_from(["GET", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "POST", "BREW"])
http_paths = st.one_of(
    st.sampled_from(["/mutate", "/", "/mutate/", "/mutate?timeout=1s", "/metrics", "//mutate"]),
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=30).map(
        lambda t: "/" + t
    ),
)
content_types = st.sampled_from(
    ["application/json", "text/plain", "application/x-www-form-urlencoded", "", "multipart/x"]
)


@budget(150)
@given(line=st.tuples(http_methods, http_paths, content_types), body=raw_bodies)
def test_any_method_path_and_content_type_never_5xx(
    served: Served, line: tuple[str, str, str], body: bytes
) -> None:
    method, path, content_type = line
    webhook = method == "POST" and path.split("?", maxsplit=1)[0] == "/mutate"
    try:
        status, _, data = served.hook.request(method, path, body, {"Content-Type": content_type})
    except OSError:
        # The server answered 400/405 without reading the body and hung up while it was still
        # being sent: a refusal, never an error, but not acceptable for a real review.
        assert not webhook
        event("closed while sending")
        count("wire: methods, paths, content types")
        return
    assert status < 500, (status, data[:300])
    if webhook:
        assert status == 200
        parse_answer(data)
    count("wire: methods, paths, content types")


@budget(100, share=0.2)  # a new TLS connection each
@given(
    junk=st.one_of(
        st.binary(min_size=1, max_size=400),
        st.sampled_from(
            [
                b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{",
                b"POST /mutate HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                b"POST /mutate HTTP/1.1\r\n" + b"X-A: " + b"a" * 70_000 + b"\r\n\r\n",
                b"GET / HTTP/9.9\r\n\r\n",
                b"\x16\x03\x01\x02\x00" * 50,
            ]
        ),
    )
)
def test_raw_http_garbage_is_refused_cleanly(served: Served, junk: bytes) -> None:
    op = served.op
    context = ssl.create_default_context(cafile=str(op.pki.ca_cert))
    with (
        socket.create_connection(("127.0.0.1", op.webhook_port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        try:
            tls.sendall(junk)
            tls.shutdown(socket.SHUT_WR)
            head = tls.recv(64)
        except (OSError, ssl.SSLError):
            head = b""
    if head.startswith(b"HTTP/"):
        code = int(head.split()[1])
        assert code < 500, head
    count("wire: raw HTTP garbage")


def test_the_same_process_is_healthy_afterwards(served: Served) -> None:
    op, hook = served.op, served.hook
    assert op.proc is not None and op.proc.poll() is None and op.proc.pid == served.pid
    assert op.get("/healthz")[0] == 200 and op.get("/readyz")[0] == 200
    # Bad input is the client's error, not ours: no internal error counted, nothing logged at
    # ERROR (a client that can reach the port must not be able to flood the log).
    assert op.metric("maxtune_operator_admission_requests_total", result="error") == 0, op.tail()
    errors = [line for line in op.tail(100_000).splitlines() if " ERROR " in line]
    assert errors == [], "\n".join(errors[:10])
    # An ordinary opted-in GPU pod is still decided and patched.
    answer = parse_answer(hook.ask(json.dumps(review(testkit.pod(), uid="last")).encode()))
    assert answer["response"]["uid"] == "last" and patch_ops(answer)
    # A body over the 16 MiB cap: an allowing answer with the uid salvaged.
    big = b'{"request":{"uid":"big-1","object":{"x":"' + b"a" * (17 << 20) + b'"}}}'
    assert parse_answer(hook.ask(big))["response"]["uid"] == "big-1"
    served_total = sum(
        op.metric("maxtune_operator_admission_requests_total", result=r)
        for r in ("patched", "unchanged", "skipped", "invalid", "not_ready")
    )
    print(f"the operator answered {served_total:.0f} admission requests over TLS")
