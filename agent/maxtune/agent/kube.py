"""`KubeSink`: the node's GPUNodeProfile and heartbeat Lease through the API server.

The profile's status is written when it changes (new measurements, inventory,
conditions), by GET (or create: spec only, status is a subresource) and a PUT
of the whole status under the object's resourceVersion. Liveness goes through
a coordination.k8s.io Lease named after the node in the release namespace,
renewed every round, as kubelets do for nodes: a Lease is about 600 bytes
where an 8-GPU profile is ~34 KB, so a steady fleet costs the API server
little (docs/benchmarks/heartbeatcost.md; the bodies: maxtune.agent.lease).
Without a Lease namespace (an agent run outside the chart), the heartbeat is
a merge patch of the profile's `status.heartbeatTime` instead, as agents
before 0.2 did.

Every call goes through the one client (maxtune.kube) with a short timeout and
no retries of its own: the agent's Backoff decides when to try again.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from maxtune.agent.lease import new_lease, node_owner, renewal
from maxtune.agent.publish import PublishError, readable_profile
from maxtune.cli.version import VERSION as MAXTUNE_VERSION
from maxtune.contract.models import AutotunePolicy, GPUNodeProfile, PolicySpec, ProfileStatus
from maxtune.contract.names import (
    GROUP,
    POLICY_PLURAL,
    PROFILE_PLURAL,
    VERSION,
)
from maxtune.contract.policy import cluster_policy
from maxtune.kube import MERGE_PATCH, ConfigError, Kube, KubeError, load_configuration

REQUEST_TIMEOUT: Final = (3.0, 10.0)  # connect, read (seconds)
PROFILES: Final = f"/apis/{GROUP}/{VERSION}/{PROFILE_PLURAL}"
log = logging.getLogger("maxtune.agent")
POLICIES: Final = f"/apis/{GROUP}/{VERSION}/{POLICY_PLURAL}"


class KubeSink:
    """The node's GPUNodeProfile (on change) and heartbeat Lease (every round)."""

    def __init__(
        self, kube: Kube, *, lease_namespace: str | None = None, lease_seconds: int = 300
    ) -> None:
        self.kube = kube
        self.lease_namespace = lease_namespace or None
        self.lease_seconds = lease_seconds
        self._written: dict[str, Any] | None = None  # our last status, heartbeat aside
        self._version: str | None = None  # the resourceVersion our last write produced
        self._lease: dict[str, Any] | None = None  # the Lease as our last write left it
        self._owner: dict[str, Any] | None = None  # the Node, as the Lease's owner
        self.writes: Counter[str] = Counter()  # status / heartbeat / lease: the path each took

    @property
    def description(self) -> str:
        where = f", heartbeat Lease in {self.lease_namespace}" if self.lease_namespace else ""
        return f"API server {self.kube.host}{where}"

    @classmethod
    def from_kubeconfig(
        cls,
        kubeconfig: str | Path | None,
        *,
        lease_namespace: str | None = None,
        lease_seconds: int = 300,
    ) -> KubeSink:
        """maxtune.kube's loader: --kubeconfig, in-cluster, $KUBECONFIG, ~/.kube/config."""
        try:
            configuration = load_configuration(kubeconfig)
        except ConfigError as exc:
            raise PublishError(
                f"{exc} (or use --profile-file to write the profile to a file)", retry=False
            ) from None
        kube = Kube(
            configuration, user_agent=f"maxtune-agent/{MAXTUNE_VERSION}", timeout=REQUEST_TIMEOUT
        )
        return cls(kube, lease_namespace=lease_namespace, lease_seconds=lease_seconds)

    def _call(
        self,
        what: str,
        method: str,
        path: str,
        *,
        passthrough: tuple[int, ...] = (404,),
        **kwargs: Any,
    ) -> Any:
        """One request; statuses in `passthrough` come back as KubeError, every other failure
        as a PublishError that says what was tried and whether to retry."""
        try:
            return self.kube.request(method, path, **kwargs)
        except KubeError as exc:
            if exc.status in passthrough:
                raise
            if exc.status == 0:
                message = f"{what}: API server unreachable: {exc.reason}"
                raise PublishError(message, retry=True) from None
            detail = exc.message[:600] or exc.reason
            raise PublishError(
                f"{what}: HTTP {exc.status}: {detail}", retry=exc.retryable
            ) from None

    # ------------------------------------------------------------ the profile

    def read(self, node: str) -> GPUNodeProfile | None:
        try:
            obj = self._call(f"get gpunodeprofile {node}", "GET", f"{PROFILES}/{node}")
        except KubeError:  # 404
            return None
        return readable_profile(obj, f"GPUNodeProfile {node}")

    def write(self, node: str, status: ProfileStatus) -> None:
        body = status.wire()
        steady = {k: v for k, v in body.items() if k != "heartbeatTime"}
        if steady != self._written:
            self._written = self._version = None
            self._version = self._write_status(node, body)
            self._written = steady
            self.writes["status"] += 1
        elif self.lease_namespace is None:
            if not self._heartbeat(node, body.get("heartbeatTime")):
                self._version = self._write_status(node, body)
                self.writes["status"] += 1
            else:
                self.writes["heartbeat"] += 1
        if self.lease_namespace is not None:
            self._renew(node, self.lease_namespace)
            self.writes["lease"] += 1

    def _heartbeat(self, node: str, beat: object) -> bool:
        """Only the heartbeat moved: patch it if our last write is still the latest."""
        if self._version is None or beat is None:
            return False
        patch = {"metadata": {"resourceVersion": self._version}, "status": {"heartbeatTime": beat}}
        try:
            obj = self._call(
                f"patch gpunodeprofile {node} heartbeat",
                "PATCH",
                f"{PROFILES}/{node}/status",
                body=patch,
                content_type=MERGE_PATCH,
                passthrough=(404, 409),
            )
        except KubeError:  # gone, or written by someone else since
            return False
        self._version = _resource_version(obj)
        return self._version is not None

    def _write_status(self, node: str, body: dict[str, Any]) -> str | None:
        """GET (or create) the profile and PUT the whole status; the new resourceVersion."""
        try:
            obj = self._call(f"get gpunodeprofile {node}", "GET", f"{PROFILES}/{node}")
        except KubeError:  # 404: first publish from this node
            new = {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "GPUNodeProfile",
                "metadata": {"name": node, "labels": {"app.kubernetes.io/managed-by": "maxtune"}},
                "spec": {"nodeName": node},
            }
            try:
                obj = self._call(f"create gpunodeprofile {node}", "POST", PROFILES, body=new)
            except KubeError as exc:  # 404 on create: the CRD is not installed
                raise PublishError(
                    "the GPUNodeProfile CRD is not installed (create answered 404)", retry=True
                ) from exc
        obj["status"] = body
        try:
            written = self._call(
                f"update gpunodeprofile {node} status",
                "PUT",
                f"{PROFILES}/{node}/status",
                body=obj,
            )
        except KubeError as exc:  # deleted between get and replace
            raise PublishError(f"profile {node} vanished while updating", retry=True) from exc
        return _resource_version(written)

    # ------------------------------------------------------------ the heartbeat Lease

    def _renew(self, node: str, namespace: str) -> None:
        """PUT the Lease we last wrote with a new renewTime; on a conflict or a missing
        Lease, read it (or create it) and write again. One small request per round."""
        now = datetime.now(UTC)
        collection = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
        path = f"{collection}/{node}"
        if self._lease is not None:
            body = renewal(self._lease, node, self.lease_seconds, now)
            try:
                self._lease = self._call(
                    f"renew lease {node}", "PUT", path, body=body, passthrough=(404, 409)
                )
                return
            except KubeError:
                self._lease = None
        try:
            current = self._call(f"get lease {node}", "GET", path)
        except KubeError:  # 404: the first round of this node's agent
            new = new_lease(namespace, node, self._node_owner(node), self.lease_seconds, now)
            self._lease = self._call(f"create lease {node}", "POST", collection, body=new)
            return
        body = renewal(current, node, self.lease_seconds, now)
        self._lease = self._call(f"renew lease {node}", "PUT", path, body=body)

    def _node_owner(self, node: str) -> dict[str, Any] | None:
        """The Node as the Lease's owner, so the garbage collector deletes the Lease with the
        node (as kubelets' node Leases are); none when the Node cannot be read."""
        if self._owner is None:
            try:
                found = self._call(f"get node {node}", "GET", f"/api/v1/nodes/{node}")
            except (KubeError, PublishError) as exc:
                log.warning("node %s not readable (%s): its Lease gets no owner", node, exc)
                return None
            uid = (found.get("metadata") or {}).get("uid")
            if not uid:
                return None
            self._owner = node_owner(node, uid)
        return self._owner

    # ------------------------------------------------------------ policies

    def policy(self) -> PolicySpec | None:
        try:
            listed = self._call("list autotunepolicies", "GET", POLICIES)
        except KubeError:  # 404: CRD not installed; built-in policy
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
