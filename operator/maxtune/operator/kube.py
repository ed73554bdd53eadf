"""A small JSON client over the official `kubernetes` package's connection and auth.

The operator needs a handful of calls (list pages, patch node labels, get and
update one Lease, delete an orphaned profile). Going through the generated
typed API would build a model object for every Node of a 2,000-node list and
every patch answer; this keeps plain JSON and lets the `kubernetes` package do
what it is good at: kubeconfig and in-cluster config, TLS, bearer-token refresh.
Calls block, so async code runs them with `asyncio.to_thread`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final

from kubernetes import client, config

from maxtune.cli.version import VERSION

MERGE_PATCH: Final = "application/merge-patch+json"
NODES: Final = "/api/v1/nodes"
NAMESPACES: Final = "/api/v1/namespaces"


class KubeError(Exception):
    """A non-2xx answer from the API server (status 0: no answer at all)."""

    def __init__(self, status: int, reason: str, message: str = "") -> None:
        super().__init__(f"{status} {reason}: {message}".strip(": "))
        self.status = status
        self.reason = reason
        self.message = message


def load_configuration(kubeconfig: str | Path | None = None) -> client.Configuration:
    """--kubeconfig, else in-cluster service account, else $KUBECONFIG / ~/.kube/config."""
    cfg = client.Configuration()
    if kubeconfig is not None:
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(kubeconfig), client_configuration=cfg
        )
    elif os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    else:
        config.load_kube_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    cfg.connection_pool_maxsize = 16
    return cfg


class Kube:
    def __init__(self, configuration: client.Configuration, *, timeout: float = 30.0) -> None:
        self.configuration = configuration
        self.api = client.ApiClient(configuration)
        # Named in the API server's audit log and request metrics, so its writes can be told
        # from everyone else's (the default is the generated client's own name).
        self.api.user_agent = f"maxtune-operator/{VERSION}"
        self.timeout = timeout

    @classmethod
    def connect(cls, kubeconfig: str | Path | None = None) -> Kube:
        return cls(load_configuration(kubeconfig))

    def close(self) -> None:
        self.api.close()  # type: ignore[no-untyped-call]

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

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float | None = None,
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
            data = response.read()
        except Exception as exc:  # urllib3 connection and timeout errors
            raise KubeError(0, type(exc).__name__, str(exc)) from exc
        status = int(response.status)
        if status >= 300:
            reason, message = "", ""
            try:
                parsed = json.loads(data)
                reason, message = str(parsed.get("reason", "")), str(parsed.get("message", ""))
            except (ValueError, AttributeError):
                message = data[:200].decode("utf-8", "replace") if data else ""
            raise KubeError(status, reason or str(response.reason or ""), message)
        return json.loads(data) if data else None

    def list_pages(self, path: str, *, page_size: int = 500) -> Iterator[list[dict[str, Any]]]:
        """A collection one page at a time, so a 2,000-node list is never all in memory."""
        token = ""
        while True:
            query = {"limit": str(page_size)}
            if token:
                query["continue"] = token
            answer = self.request("GET", path, query=query)
            yield list(answer.get("items") or [])
            token = (answer.get("metadata") or {}).get("continue") or ""
            if not token:
                return
