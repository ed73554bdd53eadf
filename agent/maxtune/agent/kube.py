"""`KubeSink`: the node's GPUNodeProfile through the API server, official client only.

Get the profile, create it when missing (spec only: status is a subresource),
then replace its status under the object's resourceVersion; read
AutotunePolicies for the torch rule. Every call has a short timeout and
urllib3's own retries are off, so the agent's `Backoff` decides when to try
again. A separate module so that runs without a cluster (probe, file sink) do
not need the `kubernetes` package at all.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any, Final

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from maxtune.agent.publish import PublishError, readable_profile
from maxtune.cli.version import VERSION as MAXTUNE_VERSION
from maxtune.contract.models import AutotunePolicy, GPUNodeProfile, PolicySpec, ProfileStatus
from maxtune.contract.names import GROUP, POLICY_PLURAL, PROFILE_PLURAL, VERSION
from maxtune.contract.policy import cluster_policy

REQUEST_TIMEOUT: Final = (3.0, 10.0)  # connect, read (seconds)
MERGE_PATCH: Final = "application/merge-patch+json"


def _body(status: ProfileStatus) -> dict[str, Any]:
    return status.wire()


class KubeSink:
    """The node's GPUNodeProfile through the real API server.

    Most rounds change nothing but the heartbeat. Those send one merge patch of
    `status.heartbeatTime`, conditional on the resourceVersion of this sink's own last
    write, instead of a GET and a PUT of the whole status: half the requests, and 10-20%
    less API server CPU per heartbeat (`benchmarks.heartbeatcost`, figures in
    docs/benchmarks/webhook.md). Anyone else's
    write in between (409) or a deleted profile (404) sends the whole status again, so
    a hand edit never outlives the next round.
    """

    def __init__(self, api_client: Any) -> None:

        self._api = client.CustomObjectsApi(api_client)
        self._host = str(getattr(api_client.configuration, "host", "?"))
        self._written: dict[str, Any] | None = None  # our last status, heartbeat aside
        self._version: str | None = None  # the resourceVersion our last write produced
        self.writes: Counter[str] = Counter()  # "status" / "heartbeat": the path each took

    @property
    def description(self) -> str:
        return f"API server {self._host}"

    @classmethod
    def from_kubeconfig(cls, kubeconfig: str | None) -> KubeSink:
        """The given kubeconfig, else in-cluster config, else ~/.kube/config."""

        configuration = client.Configuration()
        try:
            if kubeconfig:
                config.load_kube_config(  # type: ignore[no-untyped-call]
                    config_file=kubeconfig, client_configuration=configuration
                )
            else:
                try:
                    config.load_incluster_config(  # type: ignore[no-untyped-call]
                        client_configuration=configuration
                    )
                except config.ConfigException:
                    config.load_kube_config(  # type: ignore[no-untyped-call]
                        client_configuration=configuration
                    )
        except (config.ConfigException, OSError) as exc:
            raise PublishError(
                f"no cluster configuration ({exc}); pass --kubeconfig, run in a pod, or "
                "use --profile-file to write the profile to a file",
                retry=False,
            ) from None
        configuration.retries = 0  # our Backoff decides
        api_client = client.ApiClient(configuration)
        api_client.user_agent = f"maxtune-agent/{MAXTUNE_VERSION}"  # named in audit logs
        return cls(api_client)

    def _call(
        self, what: str, fn: Any, *args: Any, passthrough: tuple[int, ...] = (404,), **kwargs: Any
    ) -> Any:
        """`fn` with our timeout; answers in `passthrough` come back as ApiException, every
        other failure as a PublishError that says what was tried and whether to retry."""
        try:
            return fn(*args, _request_timeout=REQUEST_TIMEOUT, **kwargs)
        except ApiException as exc:
            if exc.status in passthrough:
                raise
            retry = exc.status in (409, 429) or (exc.status or 0) >= 500
            detail = _api_message(exc)
            raise PublishError(f"{what}: HTTP {exc.status}: {detail}", retry=retry) from None
        except (HTTPError, OSError) as exc:
            raise PublishError(
                f"{what}: API server unreachable: {type(exc).__name__}", retry=True
            ) from None

    def read(self, node: str) -> GPUNodeProfile | None:

        try:
            obj = self._call(
                f"get gpunodeprofile {node}",
                self._api.get_cluster_custom_object,
                GROUP,
                VERSION,
                PROFILE_PLURAL,
                node,
            )
        except ApiException:  # 404
            return None
        return readable_profile(obj, f"GPUNodeProfile {node}")

    def write(self, node: str, status: ProfileStatus) -> None:

        body = _body(status)
        steady = {k: v for k, v in body.items() if k != "heartbeatTime"}
        if steady == self._written and self._heartbeat(node, body.get("heartbeatTime")):
            self.writes["heartbeat"] += 1
            return
        self._written = self._version = None
        self._version = self._write_status(node, body)
        self._written = steady
        self.writes["status"] += 1

    def _heartbeat(self, node: str, beat: object) -> bool:
        """Only the heartbeat moved: patch it if our last write is still the latest."""
        if self._version is None or beat is None:
            return False
        patch = {"metadata": {"resourceVersion": self._version}, "status": {"heartbeatTime": beat}}
        try:
            obj = self._call(
                f"patch gpunodeprofile {node} heartbeat",
                self._api.patch_cluster_custom_object_status,
                GROUP,
                VERSION,
                PROFILE_PLURAL,
                node,
                patch,
                passthrough=(404, 409),
                _content_type=MERGE_PATCH,
            )
        except ApiException:  # gone, or written by someone else since
            return False
        self._version = _resource_version(obj)
        return self._version is not None

    def _write_status(self, node: str, body: dict[str, Any]) -> str | None:
        """GET (or create) the profile and PUT the whole status; the new resourceVersion."""
        try:
            obj = self._call(
                f"get gpunodeprofile {node}",
                self._api.get_cluster_custom_object,
                GROUP,
                VERSION,
                PROFILE_PLURAL,
                node,
            )
        except ApiException:  # 404: first publish from this node
            new = {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "GPUNodeProfile",
                "metadata": {"name": node, "labels": {"app.kubernetes.io/managed-by": "maxtune"}},
                "spec": {"nodeName": node},
            }
            try:
                obj = self._call(
                    f"create gpunodeprofile {node}",
                    self._api.create_cluster_custom_object,
                    GROUP,
                    VERSION,
                    PROFILE_PLURAL,
                    new,
                )
            except ApiException as exc:  # pragma: no cover - 404 on create means no CRD
                raise PublishError(
                    "the GPUNodeProfile CRD is not installed (create answered 404)", retry=True
                ) from exc
        obj["status"] = body
        try:
            written = self._call(
                f"update gpunodeprofile {node} status",
                self._api.replace_cluster_custom_object_status,
                GROUP,
                VERSION,
                PROFILE_PLURAL,
                node,
                obj,
            )
        except ApiException as exc:  # deleted between get and replace
            raise PublishError(f"profile {node} vanished while updating", retry=True) from exc
        return _resource_version(written)

    def policy(self) -> PolicySpec | None:

        try:
            listed = self._call(
                "list autotunepolicies",
                self._api.list_cluster_custom_object,
                GROUP,
                VERSION,
                POLICY_PLURAL,
            )
        except ApiException:  # 404: CRD not installed; built-in policy
            return None
        policies = []
        for item in listed.get("items", []):
            try:
                policies.append(AutotunePolicy.model_validate(item))
            except ValueError:
                continue  # the API server validated it; a newer schema we do not know
        return cluster_policy(policies).spec


def _resource_version(obj: object) -> str | None:
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    version = meta.get("resourceVersion") if isinstance(meta, dict) else None
    return version if isinstance(version, str) and version else None


def _api_message(exc: Any) -> str:
    try:
        return str(json.loads(exc.body).get("message", exc.reason))[:600]
    except (TypeError, ValueError, AttributeError):
        return str(exc.reason)
