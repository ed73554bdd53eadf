"""An asyncio client for the plane's API server (aiohttp, the admin's client certificate).

The benchmarks create thousands of objects and 50 concurrent pod creators; the
blocking `kubernetes` client would spend the 2-core machine on threads and model
objects. This speaks plain JSON over one keep-alive connection pool, which keeps
the load generator's own CPU small next to the processes being measured.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import aiohttp
import yaml

T = TypeVar("T")
MERGE_PATCH = "application/merge-patch+json"
PROFILES = "/apis/maxtune.io/v1alpha1/gpunodeprofiles"
WEBHOOKS = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


class ApiError(Exception):
    def __init__(self, status: int, method: str, path: str, text: str) -> None:
        super().__init__(f"{method} {path}: {status} {text[:300]}")
        self.status = status


@dataclass(frozen=True, slots=True)
class Credentials:
    """Server URL and TLS material of a kubeconfig with embedded data (the plane writes those)."""

    server: str
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes

    @classmethod
    def from_kubeconfig(cls, path: Path) -> Credentials:
        doc = yaml.safe_load(path.read_text())
        cluster = doc["clusters"][0]["cluster"]
        user = doc["users"][0]["user"]
        return cls(
            server=cluster["server"],
            ca_pem=base64.b64decode(cluster["certificate-authority-data"]),
            cert_pem=base64.b64decode(user["client-certificate-data"]),
            key_pem=base64.b64decode(user["client-key-data"]),
        )

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cadata=self.ca_pem.decode())
        with tempfile.TemporaryDirectory(prefix="bench-cred-") as folder:
            cert, key = Path(folder) / "tls.crt", Path(folder) / "tls.key"
            cert.write_bytes(self.cert_pem)
            key.touch(mode=0o600)
            key.write_bytes(self.key_pem)
            context.load_cert_chain(cert, key)
        return context


class Api:
    """`async with Api(credentials) as api:` then `await api.call("GET", "/api/v1/nodes")`."""

    def __init__(self, credentials: Credentials, *, connections: int = 64) -> None:
        self.credentials = credentials
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Api:
        connector = aiohttp.TCPConnector(
            ssl=self.credentials.ssl_context(), limit=self._connections
        )
        self._session = aiohttp.ClientSession(
            base_url=self.credentials.server,
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=60),
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "use Api as an async context manager"
        return self._session

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        query: Mapping[str, str] | None = None,
        ok: Iterable[int] = (),
    ) -> Any:
        """The decoded JSON answer; statuses in `ok` are returned as None instead of raising."""
        data = None if body is None else json.dumps(body).encode()
        async with self.session.request(
            method,
            path,
            data=data,
            params=dict(query or {}),
            headers={"Content-Type": content_type, "Accept": "application/json"},
        ) as response:
            text = await response.read()
            if response.status >= 300:
                if response.status in set(ok):
                    return None
                raise ApiError(response.status, method, path, text.decode(errors="replace"))
            return json.loads(text) if text else None

    async def pages(self, path: str, *, limit: int = 500) -> AsyncIterator[list[dict[str, Any]]]:
        token = ""
        while True:
            query = {"limit": str(limit), **({"continue": token} if token else {})}
            answer = await self.call("GET", path, query=query)
            yield list(answer.get("items") or [])
            token = (answer.get("metadata") or {}).get("continue") or ""
            if not token:
                return

    async def list_all(self, path: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        async for page in self.pages(path):
            found.extend(page)
        return found


async def bounded(jobs: Iterable[Callable[[], Awaitable[T]]], concurrency: int) -> list[T]:
    """Run the jobs with at most `concurrency` in flight; results in job order."""
    semaphore = asyncio.Semaphore(concurrency)

    async def one(job: Callable[[], Awaitable[T]]) -> T:
        async with semaphore:
            return await job()

    return list(await asyncio.gather(*(one(job) for job in jobs)))
