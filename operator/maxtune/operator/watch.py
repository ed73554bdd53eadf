"""kopf drives the watches; its handlers do nothing but feed FleetState.

Only `@kopf.on.event` handlers: they run for every event and store no progress
on the objects (no annotations, no finalizers), which is right for a
level-triggered operator whose state is recomputed from the cluster. kopf runs
standalone in every replica (no peering: same-priority peers would all pause,
and paused watches would starve the webhook's picture on standbys), posts no
Kubernetes Events (2,000 nodes must not make 2,000 Events, and the chart grants
no `events` permission), lists in pages, and logs warnings only.

kopf runs on its own thread and event loop: when `kopf.operator()` ends it
cancels every task of its loop that it did not find there at start, and it
takes over SIGINT/SIGTERM in the main thread. Neither may happen to the
webhook server or the labeller.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import kopf

from maxtune.contract.names import GROUP, POLICY_PLURAL, PROFILE_PLURAL, VERSION
from maxtune.operator.fleet import FleetState
from maxtune.operator.kube import Kube
from maxtune.operator.sync import Kind, event_change

Deliver = Callable[[Callable[[FleetState], object]], None]


class NoDiffBase(kopf.DiffBaseStorage):
    """No "essence" of objects: nothing here compares one.

    kopf builds a diff-base for every event it processes (a deep copy of the
    whole body, then a JSON dump) so that change handlers can see what
    changed. `on.event` handlers never look at it, and they are the only kind
    registered here, so building it was pure cost: a tenth of the operator's
    CPU per profile heartbeat (2,000 nodes: 1.81 -> 1.62 ms per event), and GIL
    time taken from the webhook's loop.
    """

    def build(self, *, body: Any, extra_fields: Any = None) -> Any:
        return {}

    def fetch(self, *, body: Any) -> Any:
        return None

    def store(self, *, body: Any, patch: Any, essence: Any) -> None:
        return None


def settings(*, list_chunk: int = 500) -> kopf.OperatorSettings:
    s = kopf.OperatorSettings()
    s.peering.standalone = True
    s.peering.clusterwide = True
    s.posting.enabled = False
    s.posting.level = logging.ERROR
    s.watching.chunk_size = list_chunk
    s.watching.server_timeout = 300
    s.watching.connect_timeout = 10
    s.networking.request_timeout = 60
    # No CRD/namespace discovery at runtime: the chart grants no access to CRDs, and the
    # CRDs are installed before the operator. A CRD that appears later makes the runtime
    # restart (sync.relist_forever notices it).
    s.scanning.disabled = True
    s.persistence.diffbase_storage = NoDiffBase()
    return s


RESOURCES: tuple[tuple[Kind, str, str, str], ...] = (
    ("node", "", "v1", "nodes"),
    ("namespace", "", "v1", "namespaces"),
    ("profile", GROUP, VERSION, PROFILE_PLURAL),
    ("policy", GROUP, VERSION, POLICY_PLURAL),
)


def registry(
    deliver: Deliver, kube: Kube, on_first_event: Callable[[Kind], None]
) -> kopf.OperatorRegistry:
    """A private registry (never kopf's global one), so tests can run several operators.

    Handlers read each event into a small change and `deliver` it to the loop
    that owns FleetState (kopf runs on a thread of its own: see runtime.py).
    `on_first_event(kind)` reports kopf's first event of each kind: kopf's
    initial list of that kind was taken before it, which is what the runtime
    needs to know to close the gap between its own list and kopf's.

    No `@kopf.index` handlers, on purpose: kopf holds every event handler until
    all indexed kinds are listed and indexed, and at 2,000 nodes that held all
    4,000 bodies in memory for minutes (measured: ready after 160 s, 378 MiB).
    """
    reg = kopf.OperatorRegistry()
    seen: set[Kind] = set()

    def feed(kind: Kind) -> Any:
        async def handler(event: dict[str, Any], **_: Any) -> None:
            if kind not in seen:
                seen.add(kind)
                on_first_event(kind)
            change = event_change(kind, event.get("type"), event.get("object") or {})
            if change is not None:
                deliver(change)

        handler.__name__ = f"feed_{kind}"
        return handler

    for kind, group, version, plural in RESOURCES:
        kopf.on.event(group, version, plural, registry=reg, id=kind)(feed(kind))

    @kopf.on.login(registry=reg)
    def login(**_: Any) -> kopf.ConnectionInfo:
        """The same credentials as our own client: --kubeconfig or the service account."""
        cfg = kube.configuration
        return kopf.ConnectionInfo(
            server=cfg.host,
            ca_path=cfg.ssl_ca_cert,
            insecure=not cfg.verify_ssl,
            certificate_path=cfg.cert_file,
            private_key_path=cfg.key_file,
            scheme="Bearer" if kube.bearer_token() else None,
            token=kube.bearer_token(),
        )

    return reg


def _expected_warning(record: logging.LogRecord) -> bool:
    # kopf runs on its own thread on purpose (see runtime.py); signals are ours.
    return "OS signals are ignored" not in record.getMessage()


def quiet_kopf(level: int = logging.WARNING) -> None:
    """kopf logs every handler run at INFO; at 2,000 nodes that is noise, not signal."""
    for name in ("kopf", "kopf.objects", "kopf.activities", "kopf.reactor", "kopf.engines"):
        logging.getLogger(name).setLevel(level)
    logging.getLogger("kopf._core.reactor.running").addFilter(_expected_warning)
