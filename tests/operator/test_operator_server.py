"""The webhook and health servers over real sockets: TLS only, always 200, certificates reload."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import warnings
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from maxtune.operator import server
from maxtune.operator.metrics import Metrics
from maxtune.operator.tls import CertReloader, server_context
from maxtune_dev.testkit import mixed_fleet, pod, review
from maxtune_dev.testkit.operator import make_ca, serial_of, write_pki


def client_context(ca: Path, *, maximum: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca))
    if maximum is not None:
        with warnings.catch_warnings():  # old TLS versions are deprecated: that is the point
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
            ctx.maximum_version = maximum
    return ctx


@asynccontextmanager
async def running(
    tmp: Path, ready: Callable[[], bool] = lambda: True
) -> AsyncIterator[dict[str, Any]]:
    pki = write_pki(tmp / "pki")
    fleet = mixed_fleet().state
    metrics = Metrics("test", fleet)
    tls = server_context(pki.cert, pki.key)
    hook_runner, hook_port = await server.start(
        server.webhook_app(
            fleet, metrics, own_namespace="maxtune-system", version="test", ready=ready
        ),
        "127.0.0.1",
        0,
        tls,
    )
    health_runner, health_port = await server.start(
        server.health_app(metrics, healthy=lambda: True, ready=ready), "127.0.0.1", 0
    )
    try:
        yield {"pki": pki, "hook": hook_port, "health": health_port, "tls": tls, "metrics": metrics}
    finally:
        await hook_runner.cleanup()
        await health_runner.cleanup()


def test_webhook_answers_every_post_with_200_over_tls(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(tmp_path) as s, aiohttp.ClientSession() as http:
            url = f"https://127.0.0.1:{s['hook']}/mutate"
            ctx = client_context(s["pki"].ca_cert)
            bodies = [review(pod()), b"", b"{", b"[]", b'{"request": null}', b"\x00" * 1000]
            for body in bodies:
                async with http.post(url, data=body, ssl=ctx) as resp:
                    assert resp.status == 200
                    answer = json.loads(await resp.read())
                    assert answer["kind"] == "AdmissionReview"
                    assert answer["response"]["allowed"] is True
            # Plain HTTP on the TLS port is refused: the webhook serves TLS only.
            try:
                async with http.post(f"http://127.0.0.1:{s['hook']}/mutate", data=b"{}") as resp:
                    assert resp.status == 400  # aiohttp's answer to a non-TLS hello, never a review
            except aiohttp.ClientError:
                pass
            async with http.get(url, ssl=ctx) as resp:
                assert resp.status == 405
            # A body over the cap still gets an allowing answer with the uid salvaged.
            big = (
                b'{"request":{"uid":"big-1","object":{"x":"'
                + b"a" * (server.MAX_BODY + 10)
                + b'"}}}'
            )
            async with http.post(url, data=big, ssl=ctx) as resp:
                answer = json.loads(await resp.read())
                assert resp.status == 200 and answer["response"]["uid"] == "big-1"
            text = await (await http.get(f"http://127.0.0.1:{s['health']}/metrics")).text()
            assert 'maxtune_operator_admission_requests_total{result="patched"} 1.0' in text
            assert 'maxtune_operator_admission_requests_total{result="invalid"} 6.0' in text
            assert "maxtune_operator_admission_duration_seconds_bucket" in text
            assert 'maxtune_operator_build_info{version="test"} 1.0' in text
            assert (
                'maxtune_operator_nodes{capable="true",gpu_class="nvidia-h100-80gb-hbm3-132sm"} 2.0'
                in text
            )

    asyncio.run(main())


def test_open_tls_connections_cost_little_memory(tmp_path: Path) -> None:
    """The API server opens a TLS connection per concurrent webhook call under bursts (hundreds
    at its default in-flight limits). asyncio gave each a 256 KiB read buffer: 600 of them were
    150 MiB, past the chart's 256 MiB limit with the fleet's state. Measured here, with the
    client's side of each connection counted: about 300 KiB each before, about 80 KiB now."""
    count = 300

    def connect(port: int, ctx: ssl.SSLContext, n: int) -> list[ssl.SSLSocket]:
        opened = []
        for _ in range(n):
            raw = socket.create_connection(("127.0.0.1", port), timeout=10)
            opened.append(ctx.wrap_socket(raw, server_hostname="127.0.0.1"))
        return opened

    async def main() -> None:
        async with running(tmp_path) as s, aiohttp.ClientSession() as http:
            ctx = client_context(s["pki"].ca_cert)
            me = psutil.Process()
            # A few first (kept open: memory freed by closing ones would be reused unseen).
            opened = await asyncio.to_thread(connect, s["hook"], ctx, 5)
            await asyncio.sleep(0.2)
            before = me.memory_info().rss
            opened += await asyncio.to_thread(connect, s["hook"], ctx, count)
            await asyncio.sleep(0.5)  # every handshake finished on the server's side
            per_connection = (me.memory_info().rss - before) / count
            assert per_connection < 160 * 1024, f"{per_connection / 1024:.0f} KiB per connection"
            url = f"https://127.0.0.1:{s['hook']}/mutate"
            async with http.post(url, data=review(pod()), ssl=ctx) as resp:
                assert resp.status == 200  # still answering with all of them open
            for conn in opened:
                conn.close()

    asyncio.run(main())


def test_tls_below_1_2_is_refused_and_1_3_preferred(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(tmp_path) as s:
            ca = s["pki"].ca_cert
            _, writer = await asyncio.open_connection(
                "127.0.0.1", s["hook"], ssl=client_context(ca)
            )
            assert writer.get_extra_info("ssl_object").version() == "TLSv1.3"
            writer.close()
            old = client_context(ca, maximum=ssl.TLSVersion.TLSv1_1)
            old.set_ciphers("ALL:@SECLEVEL=0")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", s["hook"], ssl=old)
            except (ssl.SSLError, ConnectionError):
                return
            writer.close()
            raise AssertionError("a TLS 1.1 handshake succeeded")

    asyncio.run(main())


def test_certificates_reload_in_place(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(tmp_path) as s:
            pki = s["pki"]
            metrics: Metrics = s["metrics"]
            reloader = CertReloader(s["tls"], pki.cert, pki.key, interval=0.1, metrics=metrics)

            def sample(name: str) -> float | None:
                return metrics.registry.get_sample_value(name)

            expiry = "maxtune_operator_webhook_certificate_expiry_timestamp_seconds"
            reloads = "maxtune_operator_webhook_certificate_reloads_total"
            failures = "maxtune_operator_webhook_certificate_reload_failures_total"
            assert sample(expiry) == not_after(pki.cert)

            async def served_serial() -> int:
                _, writer = await asyncio.open_connection(
                    "127.0.0.1", s["hook"], ssl=client_context(pki.ca_cert)
                )
                der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
                writer.close()
                return serial_of(ssl.DER_cert_to_PEM_cert(der).encode())

            first = await served_serial()
            assert not reloader.check()
            # A half-written rotation (new certificate, old key) is refused, the old pair kept.
            rotated = write_pki(tmp_path / "next", ca=make_ca())
            pki.cert.write_bytes(rotated.cert.read_bytes())
            assert not reloader.check()
            assert not reloader.check()  # the same bad pair counts once
            assert await served_serial() == first
            assert (sample(reloads), sample(failures)) == (0, 1)
            pki.key.write_bytes(rotated.key.read_bytes())
            pki.ca_cert.write_bytes(rotated.ca_cert.read_bytes())
            assert reloader.check()
            assert await served_serial() == serial_of(rotated.cert.read_bytes()) != first
            assert (sample(reloads), sample(failures)) == (1, 1)
            assert sample(expiry) == not_after(rotated.cert)

    asyncio.run(main())


def not_after(cert: Path) -> float:
    """The certificate's notAfter as the ssl module decodes it (not our cryptography path)."""
    decoded = ssl._ssl._test_decode_cert(str(cert))  # type: ignore[attr-defined]
    return float(ssl.cert_time_to_seconds(decoded["notAfter"]))


def test_readyz_follows_readiness(tmp_path: Path) -> None:
    state = {"ready": False}

    async def main() -> None:
        async with (
            running(tmp_path, ready=lambda: state["ready"]) as s,
            aiohttp.ClientSession() as http,
        ):
            base = f"http://127.0.0.1:{s['health']}"
            assert (await http.get(f"{base}/healthz")).status == 200
            assert (await http.get(f"{base}/readyz")).status == 503
            ctx = client_context(s["pki"].ca_cert)
            async with http.post(
                f"https://127.0.0.1:{s['hook']}/mutate", data=review(pod()), ssl=ctx
            ) as r:
                assert "patch" not in json.loads(await r.read())["response"]  # fails open
            state["ready"] = True
            assert (await http.get(f"{base}/readyz")).status == 200

    asyncio.run(main())
