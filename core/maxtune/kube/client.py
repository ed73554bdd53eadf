"""Plain JSON over the official `kubernetes` package's connection, auth and token refresh.

maxtune needs a handful of calls (list in pages, watch, get, create, patch, put, delete) and
must not build a generated model object for every Node of a 5,000-node list. The `kubernetes`
package does what it is good at (kubeconfig and in-cluster config, TLS, bearer-token refresh,
connection pooling); this keeps the bodies as JSON. Calls block: async code runs them with
`asyncio.to_thread`, and watches run on threads of their own (maxtune.operator.informer).
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from kubernetes import client

from maxtune.kube.config import load_configuration

MERGE_PATCH: Final = "application/merge-patch+json"
JSON_PATCH: Final = "application/json-patch+json"
Timeout = float | tuple[float, float]


class KubeError(Exception):
    """A non-2xx answer from the API server; status 0: no answer at all (connection, timeout)."""

    def __init__(self, status: int, reason: str, message: str = "") -> None:
        super().__init__(f"{status} {reason}: {message}".strip(": "))
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def retryable(self) -> bool:
        """Whether the same request may succeed later (conflicts, throttling, server trouble)."""
        return self.status in (0, 409, 429) or self.status >= 500


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One line of a watch stream: ADDED, MODIFIED, DELETED, BOOKMARK or ERROR."""

    type: str
    object: Mapping[str, Any]

    @property
    def resource_version(self) -> str:
        meta = self.object.get("metadata")
        rv = meta.get("resourceVersion") if isinstance(meta, Mapping) else None
        return rv if isinstance(rv, str) else ""


class Kube:
    """One API server, one connection pool; safe to share between threads."""

    def __init__(
        self,
        configuration: client.Configuration,
        *,
        user_agent: str = "maxtune",
        timeout: Timeout = (5.0, 30.0),
    ) -> None:
        self.configuration = configuration
        self.api = client.ApiClient(configuration)
        # Named in the API server's audit log and request metrics, so maxtune's requests can be
        # told from everyone else's (the default is the generated client's own name).
        self.api.user_agent = user_agent
        self.timeout = timeout
        self._open: set[Any] = set()  # streaming responses, closed by close()
        self._lock = threading.Lock()

    @classmethod
    def connect(cls, kubeconfig: str | Path | None = None, *, user_agent: str = "maxtune") -> Kube:
        """From the one config loader (raises maxtune.kube.ConfigError without a cluster)."""
        return cls(load_configuration(kubeconfig), user_agent=user_agent)

    @property
    def host(self) -> str:
        return str(self.configuration.host)

    def close(self) -> None:
        with self._lock:
            streams, self._open = list(self._open), set()
        for response in streams:
            _shutdown(response)
        self.api.close()  # type: ignore[no-untyped-call]

    def _send(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None,
        body: Any,
        content_type: str,
        timeout: Timeout | None,
    ) -> Any:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        method, url, headers, body, post = self.api.param_serialize(
            method=method,
            resource_path=path,
            query_params=list((query or {}).items()),
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        try:
            response = self.api.rest_client.request(  # type: ignore[no-untyped-call]
                method,
                url,
                headers=headers,
                body=body,
                post_params=post,
                _request_timeout=timeout or self.timeout,
            )
        except Exception as exc:  # urllib3 connection and timeout errors
            raise KubeError(0, type(exc).__name__, str(exc)) from exc
        status = int(response.status)
        if status >= 300:
            try:
                data = response.read()
            except Exception:  # the status says enough
                data = b""
            raise _error(status, str(response.reason or ""), data)
        return response

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: Timeout | None = None,
    ) -> Any:
        """The decoded JSON answer (None for an empty body); KubeError for anything else."""
        response = self._send(
            method, path, query=query, body=body, content_type=content_type, timeout=timeout
        )
        try:
            data = response.read()
        except Exception as exc:
            raise KubeError(0, type(exc).__name__, str(exc)) from exc
        return json.loads(data) if data else None

    def list_pages(
        self, path: str, *, page_size: int = 500, query: Mapping[str, str] | None = None
    ) -> Iterator[tuple[list[dict[str, Any]], str]]:
        """A collection one page at a time, with the list's resourceVersion on every page.

        A 5,000-node list is never all in memory. The resourceVersion of the last page is the
        one to watch from. A continue token that expired (410) is the caller's to handle: the
        list must be taken again from the start (maxtune.operator.informer does).
        """
        token = ""
        while True:
            params = {**(query or {}), "limit": str(page_size)}
            if token:
                params["continue"] = token
            answer = self.request("GET", path, query=params)
            meta = answer.get("metadata") or {}
            yield list(answer.get("items") or []), str(meta.get("resourceVersion") or "")
            token = meta.get("continue") or ""
            if not token:
                return

    def list_all(
        self, path: str, *, page_size: int = 500, query: Mapping[str, str] | None = None
    ) -> list[dict[str, Any]]:
        """Every object of a collection (for small ones, or one-shot commands)."""
        items: list[dict[str, Any]] = []
        for page, _ in self.list_pages(path, page_size=page_size, query=query):
            items.extend(page)
        return items

    def watch(
        self,
        path: str,
        resource_version: str,
        *,
        timeout_seconds: int = 300,
        query: Mapping[str, str] | None = None,
    ) -> Iterator[WatchEvent]:
        """The collection's changes after `resource_version`, until the server ends the stream.

        Bookmarks are asked for, so a quiet kind still moves its resourceVersion forward and a
        reconnect rarely meets 410 Gone. An ERROR event (410 Gone among them) is yielded as
        it comes: the caller relists. `close()` from another thread ends a blocked read.
        """
        params = {
            **(query or {}),
            "watch": "1",
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
        }
        if resource_version:
            params["resourceVersion"] = resource_version
        connect = self.timeout[0] if isinstance(self.timeout, tuple) else self.timeout
        response = self._send(
            "GET",
            path,
            query=params,
            body=None,
            content_type="application/json",
            timeout=(connect, timeout_seconds + 30.0),
        )
        raw = response.response  # urllib3's, unread
        with self._lock:
            self._open.add(raw)
        try:
            for line in _lines(raw):
                try:
                    event = json.loads(line)
                except ValueError as exc:
                    raise KubeError(0, "BadWatchLine", line[:200].decode(errors="replace")) from exc
                obj = event.get("object") if isinstance(event, dict) else None
                yield WatchEvent(str(event.get("type")), obj if isinstance(obj, dict) else {})
        except KubeError:
            raise
        except Exception as exc:  # the stream broke (closed, reset, read timeout)
            raise KubeError(0, type(exc).__name__, str(exc)) from exc
        finally:
            with self._lock:
                self._open.discard(raw)
            _shutdown(raw)

    def bearer_token(self) -> str | None:
        """The current token (re-read from the service-account file when it rotates)."""
        cfg = self.configuration
        hook: Any = getattr(cfg, "refresh_api_key_hook", None)
        if hook is not None:
            hook(cfg)
        value = (cfg.api_key or {}).get("authorization") or (cfg.api_key or {}).get("BearerToken")
        if not value:
            return None
        return str(value).removeprefix("Bearer ").strip() or None


def _error(status: int, http_reason: str, data: bytes) -> KubeError:
    reason, message = "", ""
    try:
        parsed = json.loads(data)
        reason, message = str(parsed.get("reason", "")), str(parsed.get("message", ""))
    except (ValueError, AttributeError):
        message = data[:200].decode("utf-8", "replace") if data else ""
    return KubeError(status, reason or http_reason, message)


def _lines(raw: Any) -> Iterator[bytes]:
    """Complete lines of a streamed body, as they arrive."""
    pending = b""
    for chunk in raw.stream(65536, decode_content=True):
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            if line.strip():
                yield line
    if pending.strip():
        yield pending


def _shutdown(raw: Any) -> None:
    """End a streaming response, also one another thread is blocked reading."""
    for name in ("shutdown", "release_conn", "close"):
        method = getattr(raw, name, None)
        if method is not None:
            with contextlib.suppress(Exception):  # best effort on a connection going away
                method()
