"""The webhook's TLS listener speaks HTTP/2 to a client that offers it, else HTTP/1.1.

kube-apiserver offers h2 by ALPN; over HTTP/1.1 it opens a new TLS connection for each burst
beyond its idle pool (docs/decisions/0009-webhook-http2.md). The HTTP/2 client here is the `h2`
library (hypercorn's own dependency) on a real TLS socket: it negotiates by ALPN, multiplexes
streams on one connection and honours flow control, as Go's client does. Every server is the
real listener from `maxtune.operator.server` on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest

from maxtune.operator import server
from maxtune.operator.metrics import Metrics
from maxtune.operator.tls import CertReloader, server_context
from maxtune_dev.testkit import mixed_fleet, pod, review
from maxtune_dev.testkit.objects import REVIEW_UID
from maxtune_dev.testkit.operator import WebhookPki, make_ca, serial_of, write_pki

MALFORMED = [b"", b"{", b"[]", b'{"request": null}', b"\x00" * 1000]
NOT_A_POD = b'{"request":{"uid":"u-7"}}'  # a review of nothing: skipped, its uid answered


def review_of(uid: str) -> bytes:
    """An opted-in GPU pod's AdmissionReview with its own uid (its answer names it)."""
    return review(pod()).replace(REVIEW_UID.encode(), uid.encode(), 1)


@dataclass
class Served:
    pki: WebhookPki
    tls: ssl.SSLContext
    metrics: Metrics
    listener: server.Listener

    @property
    def port(self) -> int:
        return self.listener.port

    def count(self, result: str) -> float:
        name = "maxtune_operator_admission_requests_total"
        return self.metrics.registry.get_sample_value(name, {"result": result}) or 0.0


@asynccontextmanager
async def webhook(tmp: Path, ready: Callable[[], bool] = lambda: True) -> AsyncIterator[Served]:
    pki = write_pki(tmp / "pki")
    fleet = mixed_fleet().state
    metrics = Metrics("test", fleet)
    tls = server_context(pki.cert, pki.key)
    app = server.webhook_app(
        fleet, metrics, own_namespace="maxtune-system", version="test", ready=ready
    )
    listener = await server.serve_webhook(app, "127.0.0.1", 0, tls)
    try:
        yield Served(pki, tls, metrics, listener)
    finally:
        await listener.close()


def client_context(ca: Path, alpn: list[str] | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca))
    if alpn is not None:
        ctx.set_alpn_protocols(alpn)
    return ctx


@dataclass
class Answer:
    status: int = 0
    headers: dict[bytes, bytes] = field(default_factory=dict)
    body: bytearray = field(default_factory=bytearray)
    ended: bool = False
    reset: bool = False

    def review(self) -> dict[str, object]:
        assert self.status == 200, (self.status, bytes(self.body[:300]))
        assert self.headers[b"content-type"] == b"application/json"
        answer = json.loads(bytes(self.body))
        assert answer["kind"] == "AdmissionReview" and answer["response"]["allowed"] is True
        return dict(answer)


class H2Client:
    """One TLS connection with ALPN h2; streams multiplexed on it, flow control honoured."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        self.answers: dict[int, Answer] = {}
        self.closed_by_server = False

    @classmethod
    async def connect(cls, port: int, ca: Path) -> H2Client:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_context(ca, ["h2", "http/1.1"])
        )
        client = cls(reader, writer)
        client.conn.initiate_connection()
        await client.flush()
        return client

    @property
    def alpn(self) -> str | None:
        ssl_object = self.writer.get_extra_info("ssl_object")
        return None if ssl_object is None else ssl_object.selected_alpn_protocol()

    async def flush(self) -> None:
        self.writer.write(self.conn.data_to_send())
        await self.writer.drain()

    def open(self, method: str = "POST", path: str = "/mutate") -> int:
        stream = self.conn.get_next_available_stream_id()
        headers = [
            (b":method", method.encode()),
            (b":path", path.encode()),
            (b":scheme", b"https"),
            (b":authority", b"127.0.0.1"),
            (b"content-type", b"application/json"),
        ]
        self.conn.send_headers(stream, headers)
        self.answers[stream] = Answer()
        return stream

    async def send(self, stream: int, body: bytes, *, end: bool = True) -> None:
        """Send `body` on `stream` as the windows allow, reading the server between windows."""
        view = memoryview(body)
        while view:
            window = min(
                self.conn.local_flow_control_window(stream), self.conn.max_outbound_frame_size
            )
            if window <= 0:
                await self.pump()
                continue
            self.conn.send_data(stream, view[:window].tobytes())
            view = view[window:]
            await self.flush()
        if end:
            self.conn.end_stream(stream)
            await self.flush()

    async def pump(self) -> None:
        data = await asyncio.wait_for(self.reader.read(65536), timeout=10)
        if not data:
            self.closed_by_server = True
            raise ConnectionError("the server closed the connection")
        for ev in self.conn.receive_data(data):
            if isinstance(ev, h2.events.ResponseReceived):
                answer = self.answers[ev.stream_id]
                for name, value in ev.headers:
                    if name == b":status":
                        answer.status = int(value)
                    else:
                        answer.headers[bytes(name)] = bytes(value)
            elif isinstance(ev, h2.events.DataReceived):
                self.answers[ev.stream_id].body += ev.data
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                self.answers[ev.stream_id].ended = True
            elif isinstance(ev, h2.events.StreamReset):
                self.answers[ev.stream_id].reset = True
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self.closed_by_server = True
        await self.flush()

    async def wait(self, *streams: int) -> list[Answer]:
        while not all(self.answers[s].ended or self.answers[s].reset for s in streams):
            await self.pump()
        return [self.answers[s] for s in streams]

    async def post(self, body: bytes, method: str = "POST", path: str = "/mutate") -> Answer:
        stream = self.open(method, path)
        await self.send(stream, body)
        return (await self.wait(stream))[0]

    async def close(self) -> None:
        self.conn.close_connection()
        await self.flush()
        self.writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await self.writer.wait_closed()


@pytest.fixture
def errors(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    """Records at WARNING and above from any logger: a client's bad input must log none."""
    caplog.set_level(logging.WARNING)

    def found() -> list[str]:
        return [
            f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.WARNING
        ]

    return found


def test_h2_is_negotiated_and_reviews_multiplex_on_one_connection(
    tmp_path: Path, errors: Callable[[], list[str]]
) -> None:
    async def main() -> None:
        async with webhook(tmp_path) as s:
            client = await H2Client.connect(s.port, s.pki.ca_cert)
            assert client.alpn == "h2"
            # A real review and every malformed body, all in flight at once on one connection.
            bodies = [review_of("h2-real"), *MALFORMED, NOT_A_POD]
            streams = [client.open() for _ in bodies]
            for stream, body in zip(streams, bodies, strict=True):
                await client.send(stream, body)
            answers = await client.wait(*streams)
            reviews = [a.review() for a in answers]
            real = reviews[0]["response"]
            assert isinstance(real, dict) and real["uid"] == "h2-real" and "patch" in real
            last = reviews[-1]["response"]
            assert isinstance(last, dict) and last["uid"] == "u-7"  # salvaged from a bad review
            counted = (s.count("patched"), s.count("invalid"), s.count("skipped"), s.count("error"))
            assert counted == (1, len(MALFORMED), 1, 0)
            # Not the webhook: refused, never a review, and the connection stays usable.
            assert (await client.post(b"", method="GET")).status == 405
            assert (await client.post(b"{}", path="/other")).status == 404
            assert (await client.post(review_of("after"))).review()
            assert not client.closed_by_server
            await client.close()
        assert errors() == []

    asyncio.run(main())


def test_a_body_over_the_cap_over_h2_is_answered_and_the_connection_survives(
    tmp_path: Path, errors: Callable[[], list[str]]
) -> None:
    async def main() -> None:
        async with webhook(tmp_path) as s:
            client = await H2Client.connect(s.port, s.pki.ca_cert)
            big = b'{"request":{"uid":"big-h2","object":{"x":"' + b"a" * (
                server.MAX_BODY + (1 << 20)
            )
            answer = await client.post(big + b'"}}}')
            response = answer.review()["response"]
            assert isinstance(response, dict) and response["uid"] == "big-h2"
            assert s.count("invalid") == 1
            # Streams reset by the client half-way through their body, then a normal review.
            for _ in range(3):
                stream = client.open()
                await client.send(stream, b'{"request":', end=False)
                client.conn.reset_stream(stream)
                await client.flush()
            assert (await client.post(review_of("next"))).review()
            assert not client.closed_by_server
            await client.close()
        assert errors() == []

    asyncio.run(main())


def test_http11_clients_without_h2_are_still_served(tmp_path: Path) -> None:
    async def main() -> None:
        async with webhook(tmp_path) as s:
            ca = s.pki.ca_cert
            # A client that offers only http/1.1, and one that offers no ALPN at all.
            for alpn in (["http/1.1"], None):
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", s.port, ssl=client_context(ca, alpn)
                )
                selected = writer.get_extra_info("ssl_object").selected_alpn_protocol()
                assert selected == (None if alpn is None else "http/1.1")
                body = review_of("h1-raw")
                writer.write(
                    b"POST /mutate HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                    % len(body)
                    + body
                )
                head = await reader.readuntil(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 200 "), head
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                answer = json.loads(await reader.readexactly(length))
                assert answer["response"]["uid"] == "h1-raw" and "patch" in answer["response"]
                writer.close()
            # aiohttp's client (HTTP/1.1 only), keeping its connection for several reviews.
            async with aiohttp.ClientSession() as http:
                url = f"https://127.0.0.1:{s.port}/mutate"
                for body in [review(pod()), *MALFORMED]:
                    async with http.post(url, data=body, ssl=client_context(ca, None)) as resp:
                        assert resp.status == 200 and resp.version == aiohttp.HttpVersion11
                        assert json.loads(await resp.read())["response"]["allowed"] is True
            assert (s.count("patched"), s.count("invalid")) == (3, len(MALFORMED))

    asyncio.run(main())


def test_h2_survives_a_certificate_reload(tmp_path: Path) -> None:
    async def main() -> None:
        async with webhook(tmp_path) as s:
            pki = s.pki
            reloader = CertReloader(s.tls, pki.cert, pki.key, interval=0.1, metrics=s.metrics)
            rotated = write_pki(tmp_path / "next", ca=make_ca())
            pki.cert.write_bytes(rotated.cert.read_bytes())
            pki.key.write_bytes(rotated.key.read_bytes())
            assert reloader.check()
            client = await H2Client.connect(s.port, rotated.ca_cert)
            der = client.writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
            assert serial_of(ssl.DER_cert_to_PEM_cert(der).encode()) == serial_of(
                rotated.cert.read_bytes()
            )
            assert client.alpn == "h2"  # ALPN lives on the same live context
            assert (await client.post(review_of("rotated"))).review()
            await client.close()

    asyncio.run(main())


def test_closing_lets_a_request_in_flight_finish(tmp_path: Path) -> None:
    async def main() -> None:
        async with webhook(tmp_path) as s:
            client = await H2Client.connect(s.port, s.pki.ca_cert)
            body = review_of("in-flight")
            stream = client.open()
            await client.send(stream, body[:100], end=False)
            await asyncio.sleep(0.05)  # the server has the stream before it is told to close
            closing = asyncio.create_task(s.listener.close())
            await asyncio.sleep(0.05)
            assert not closing.done()
            await client.send(stream, body[100:])
            (answer,) = await client.wait(stream)
            response = answer.review()["response"]
            assert isinstance(response, dict) and response["uid"] == "in-flight"
            await asyncio.wait_for(closing, timeout=server.GRACEFUL_SECONDS + 2)
            assert not s.listener.alive()
            # No new connection is accepted any more.
            with pytest.raises((ConnectionError, OSError)):
                await H2Client.connect(s.port, s.pki.ca_cert)

    asyncio.run(main())


def test_a_long_lived_h2_connection_loses_no_review(tmp_path: Path) -> None:
    """kube-apiserver keeps one HTTP/2 connection for as long as it can: every review on it,
    however many, is answered. (hypercorn's keep_alive_max_requests sends GOAWAY and then drops
    the streams already in flight: found with vegeta, two answers of 3,000 never came.)"""

    async def main() -> None:
        async with webhook(tmp_path) as s:
            client = await H2Client.connect(s.port, s.pki.ca_cert)
            body = review_of("many")
            for _ in range(1200 // 20):  # 20 streams in flight at a time
                streams = [client.open() for _ in range(20)]
                for stream in streams:
                    await client.send(stream, body)
                answers = await asyncio.wait_for(client.wait(*streams), timeout=10)
                assert all(a.status == 200 and not a.reset for a in answers)
            assert not client.closed_by_server
            assert s.count("patched") == 1200
            await client.close()

    asyncio.run(main())
