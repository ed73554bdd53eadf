"""The webhook Service's job on loopback: one port, every operator replica behind it.

In a cluster the API server calls the webhook Service and kube-proxy spreads the connections
over the ready operator pods. Here the operators are local processes, each on its own port, and
the webhook configuration names one URL (`webhook.url`). This forwarder is that URL: it accepts
on 127.0.0.1, picks the next replica round-robin, skips one that refuses the connection, and
passes bytes through untouched (TLS is between the API server and the operator, as with a
Service).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
from collections.abc import Sequence

HOST = "127.0.0.1"


class Forwarder:
    """A TCP round-robin forwarder on 127.0.0.1:`port`, on a thread of its own."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._backends: tuple[int, ...] = ()
        self._turn = itertools.count()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="webhook-service", daemon=True)
        self.connections = 0

    def set_backends(self, ports: Sequence[int]) -> None:
        self._backends = tuple(ports)

    def start(self) -> Forwarder:
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._thread.is_alive() and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(10)

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        try:
            server = await asyncio.start_server(self._handle, HOST, self.port)
        except OSError as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        async with server:
            await self._stop.wait()

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        backends = self._backends
        start = next(self._turn)
        for i in range(len(backends)):
            port = backends[(start + i) % len(backends)]
            with contextlib.suppress(OSError):
                return await asyncio.open_connection(HOST, port)
        return None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        upstream = await self._connect()
        if upstream is None:  # no replica up: the API server sees a refused call (fails open)
            writer.close()
            return
        up_reader, up_writer = upstream
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(ConnectionError, OSError, RuntimeError):
            writer.close()
