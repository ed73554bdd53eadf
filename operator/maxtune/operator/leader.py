"""Leader election over a coordination.k8s.io/v1 Lease, the way client-go does it.

Only the leader writes node labels; every replica serves the webhook. Expiry
is judged on this replica's own monotonic clock (how long the Lease record has
stayed unchanged since we first saw it), never by comparing our wall clock
with another replica's `renewTime`, so clock skew cannot make two leaders. A
leader that cannot renew for `renew_deadline` steps down before anyone else
may take over (`lease_duration` > `renew_deadline`). On shutdown the leader
releases the Lease so a standby takes over at once instead of waiting it out.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from maxtune.kube import Kube, KubeError

log = logging.getLogger(__name__)


def _micro_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(
        self,
        kube: Kube,
        *,
        namespace: str,
        name: str,
        identity: str,
        on_started: Callable[[], None],
        on_stopped: Callable[[], None],
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
    ) -> None:
        if not lease_duration > renew_deadline > retry_period:
            raise ValueError("need lease_duration > renew_deadline > retry_period")
        self.kube = kube
        self.path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}"
        self.collection = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.on_started = on_started
        self.on_stopped = on_stopped
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.leading = False
        self._observed: dict[str, Any] | None = None
        self._observed_at = 0.0
        self._last_renew = 0.0

    async def run(self) -> None:
        try:
            while True:
                # An attempt may not outlive the renew deadline: an API server that accepts
                # the request and never answers (etcd gone, a black-holed connection) must
                # not keep a leader leading past it, into the time a standby may take over.
                budget = self.renew_deadline
                if self.leading:
                    budget = self._last_renew + self.renew_deadline - time.monotonic()
                try:
                    async with asyncio.timeout(max(0.05, budget)):
                        held = await asyncio.to_thread(self._try_acquire_or_renew)
                except KubeError as exc:
                    log.warning("lease %s/%s: %s", self.namespace, self.name, exc)
                    held = None  # unknown: keep leading until the renew deadline
                except TimeoutError:
                    log.warning(
                        "lease %s/%s: no answer within %.1fs", self.namespace, self.name, budget
                    )
                    held = None
                now = time.monotonic()
                if held:
                    self._last_renew = now
                    if not self.leading:
                        log.info("became leader (lease %s/%s)", self.namespace, self.name)
                        self.leading = True
                        self.on_started()
                elif self.leading and (
                    held is False or now - self._last_renew >= self.renew_deadline
                ):
                    log.warning("lost leadership (lease %s/%s)", self.namespace, self.name)
                    self.leading = False
                    self.on_stopped()
                await asyncio.sleep(self.retry_period)
        finally:
            if self.leading:
                self.leading = False
                self.on_stopped()

    async def release(self) -> None:
        """Give the Lease up (on shutdown), so a standby need not wait for it to expire."""
        if self._observed is None or self._observed.get("holderIdentity") != self.identity:
            return
        try:
            await asyncio.to_thread(self._release)
        except KubeError as exc:
            log.warning("releasing lease %s/%s failed: %s", self.namespace, self.name, exc)

    # ------------------------------------------------------------ blocking calls

    def _lease_body(self, spec: dict[str, Any], resource_version: str | None) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if resource_version:
            meta["resourceVersion"] = resource_version
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": meta,
            "spec": spec,
        }

    def _try_acquire_or_renew(self) -> bool:
        """True: we hold the Lease now. False: someone else validly holds it."""
        now = datetime.now(UTC)
        mine = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self.lease_duration),
            "acquireTime": _micro_time(now),
            "renewTime": _micro_time(now),
            "leaseTransitions": 0,
        }
        try:
            lease = self.kube.request("GET", self.path, timeout=self.renew_deadline)
        except KubeError as exc:
            if exc.status != 404:
                raise
            try:
                self.kube.request(
                    "POST",
                    self.collection,
                    body=self._lease_body(mine, None),
                    timeout=self.renew_deadline,
                )
            except KubeError as create_exc:
                if create_exc.status == 409:
                    return False  # another replica created it first
                raise
            self._observe(mine)
            return True
        spec: dict[str, Any] = dict(lease.get("spec") or {})
        self._observe(spec)
        holder = spec.get("holderIdentity") or ""
        if holder and holder != self.identity:
            duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
            if time.monotonic() - self._observed_at < duration:
                return False
        if holder == self.identity:
            mine["acquireTime"] = spec.get("acquireTime") or mine["acquireTime"]
            mine["leaseTransitions"] = spec.get("leaseTransitions") or 0
        else:
            mine["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
        rv = (lease.get("metadata") or {}).get("resourceVersion")
        try:
            self.kube.request(
                "PUT", self.path, body=self._lease_body(mine, rv), timeout=self.renew_deadline
            )
        except KubeError as exc:
            if exc.status == 409:
                return False  # lost a race for it
            raise
        self._observe(mine)
        return True

    def _observe(self, spec: dict[str, Any]) -> None:
        if spec != self._observed:
            self._observed = dict(spec)
            self._observed_at = time.monotonic()

    def _release(self) -> None:
        lease = self.kube.request("GET", self.path)
        spec = dict(lease.get("spec") or {})
        if spec.get("holderIdentity") != self.identity:
            return
        spec.update(
            holderIdentity=None,
            leaseDurationSeconds=1,
            renewTime=_micro_time(datetime.now(UTC)),
        )
        rv = (lease.get("metadata") or {}).get("resourceVersion")
        self.kube.request("PUT", self.path, body=self._lease_body(spec, rv))
        log.info("released lease %s/%s", self.namespace, self.name)
