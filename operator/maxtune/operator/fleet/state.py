"""FleetState: the operator's in-memory picture of the cluster, and the seam of its design.

The informers write into it, the labeller and the webhook read from it, and
nothing in here talks to the network, so every decision can be tested with
plain objects. One asyncio loop owns it (informer threads post their changes
to that loop), so it needs no locks.

It is three parts behind one surface: the records (`store`), the node indexes
the webhook's candidate search uses (`indexes`), and the per-policy views
derived from profiles (`views`). This class decides what each change means
for the other two, and tells subscribers (the labeller) which nodes to look at.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Mapping
from types import MappingProxyType

from maxtune.contract.models import AutotunePolicy, ResourceSummary
from maxtune.operator.cachedir import CacheEntry
from maxtune.operator.fleet.indexes import NodeIndex
from maxtune.operator.fleet.store import Store
from maxtune.operator.fleet.views import (
    Bucket,
    Overlap,
    OverlapAnswer,
    OverlapQuestion,
    Views,
    Wanted,
)
from maxtune.operator.records import NodeRecord, ProfileRecord

# Called with the names of nodes whose desired or actual labels may have changed;
# None means "every node" (the cluster policy changed).
DirtyListener = Callable[[Iterable[str] | None], None]


class FleetState:
    """Nodes, profiles, policies, agent leases and opted-in namespaces, as last seen."""

    def __init__(self) -> None:
        self._store = Store()
        self._index = NodeIndex()
        self._views = Views(self._store)
        self._listeners: list[DirtyListener] = []
        self._caches: Mapping[str, CacheEntry] = {}
        # The last stale set: (alive_version, latest stale beat, earliest live beat, set).
        self._stale: tuple[int, float, float, frozenset[str]] | None = None

    # ------------------------------------------------------------ listeners

    def subscribe(self, listener: DirtyListener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _dirty(self, names: Iterable[str] | None) -> None:
        for listener in list(self._listeners):
            listener(names)

    # ------------------------------------------------------------ nodes

    @property
    def nodes(self) -> Mapping[str, NodeRecord]:
        return MappingProxyType(self._store.nodes)

    def upsert_node(self, record: NodeRecord) -> bool:
        """Store the node; True when anything the operator decides from changed."""
        change, old = self._store.put_node(record)
        if not change.shaped:
            return False
        if old is not None:
            self._index.remove(old)
        self._index.add(record)
        self._views.node_moved(record.name)
        self._dirty((record.name,))
        return True

    def refresh_node(self, record: NodeRecord) -> bool:
        """A write's answer: update a node the informer already has, never bring one back."""
        old = self._store.nodes.get(record.name)
        if old is None or old.uid != record.uid:
            return False
        return self.upsert_node(record)

    def delete_node(self, name: str, uid: str | None = None) -> bool:
        old = self._store.pop_node(name, uid)
        if old is None:
            return False
        self._index.remove(old)
        self._views.node_moved(name)
        self._dirty((name,))
        return True

    # Index views for selection.py: never mutate what these return.
    def all_nodes(self) -> set[str]:
        return self._index.all_nodes()

    def with_label(self, key: str, value: str) -> set[str] | frozenset[str]:
        return self._index.with_label(key, value)

    def with_key(self, key: str) -> set[str] | frozenset[str]:
        return self._index.with_key(key)

    def with_resource(self, resource: str) -> set[str] | frozenset[str]:
        return self._index.with_resource(resource)

    def with_resource_at_least(self, resource: str, count: int) -> set[str] | frozenset[str]:
        return self._index.with_resource_at_least(resource, count, self._store.nodes)

    def tainted(self) -> set[str]:
        return self._index.tainted()

    def remembered(
        self, question: Hashable, answer: Callable[[], frozenset[str]]
    ) -> frozenset[str]:
        """An answer computed from the node index alone, kept until the index changes."""
        return self._index.remembered(question, answer)

    # ------------------------------------------------------------ profiles and liveness

    @property
    def profiles(self) -> Mapping[str, ProfileRecord]:
        """Keyed by node name (a profile is named after its node)."""
        return MappingProxyType(self._store.profiles)

    def upsert_profile(self, record: ProfileRecord) -> bool:
        change, _ = self._store.put_profile(record)
        if not change.stored:
            return False
        if change.shaped:  # a heartbeat alone keeps what was derived
            self._views.devices_changed(record.node_name)
        self._views.node_moved(record.node_name)  # liveness may appear or go
        self._dirty((record.node_name,))
        return True

    def delete_profile(self, node_name: str, uid: str | None = None) -> bool:
        if self._store.pop_profile(node_name, uid) is None:
            return False
        self._views.devices_changed(node_name)
        self._dirty((node_name,))
        return True

    def set_lease(self, node_name: str, renewed: float | None) -> bool:
        """The node agent's Lease was renewed at `renewed` (POSIX seconds; None: gone)."""
        if not self._store.put_lease(node_name, renewed):
            return False
        self._views.node_moved(node_name)
        self._dirty((node_name,))
        return True

    def delete_lease(self, node_name: str) -> bool:
        return self.set_lease(node_name, None)

    @property
    def heartbeats(self) -> Mapping[str, float]:
        """When each node's agent was last alive (POSIX seconds): the newer of its profile's
        heartbeatTime and its Lease's renewTime."""
        return self._store.alive

    def is_stale(self, node_name: str, now: float) -> bool:
        """The agent's last sign of life is older than the cluster policy allows (or missing)."""
        beat = self._store.alive.get(node_name)
        if beat is None or node_name not in self._store.profiles:
            return True
        return now - beat > self.cluster_policy().spec.stale_after_seconds

    def stale_profiles(self, oldest: float) -> frozenset[str]:
        """Nodes whose agent was last alive before `oldest` (POSIX time); usually none.

        Asked by every admission. The answer is the same for every `oldest` between the
        latest stale beat and the earliest live one, so it is kept until an agent's
        liveness changes or the clock moves past the next beat.
        """
        store = self._store
        first = store.oldest_alive()
        if first is None or first >= oldest:
            return frozenset()
        kept = self._stale
        if kept is not None and kept[0] == store.alive_version and kept[1] < oldest <= kept[2]:
            return kept[3]
        stale = frozenset(name for name, beat in store.alive.items() if beat < oldest)
        latest = max(store.alive[name] for name in stale)
        earliest = min((b for b in store.alive.values() if b >= oldest), default=math.inf)
        self._stale = (store.alive_version, latest, earliest, stale)
        return stale

    def desired_labels(self, node_name: str, now: float) -> Mapping[str, str]:
        """The node's maxtune labels under the cluster policy; empty means none at all.

        A node that is not known, has no profile, a profile without GPUs, or an agent not
        alive within the staleness window gets none.
        """
        if node_name not in self._store.nodes or self.is_stale(node_name, now):
            return {}
        return self._views.desired_labels(node_name)

    def summaries(self, node_name: str, policy: AutotunePolicy) -> Mapping[str, ResourceSummary]:
        return self._views.summaries(node_name, policy)

    def rank_cache(self, policy: AutotunePolicy) -> Mapping[str, Mapping[str, int]]:
        return self._views.rank_cache(policy)

    def mode_ranks(self, node_name: str, policy: AutotunePolicy) -> Mapping[str, int]:
        return self._views.mode_ranks(node_name, policy)

    def speeds(self, node_name: str, policy: AutotunePolicy) -> Mapping[str, Mapping[int, float]]:
        return self._views.speeds(node_name, policy)

    def warm(self, policy: AutotunePolicy, budget: int = 50) -> int:
        return self._views.warm(policy, budget)

    def node_groups(self, policy: AutotunePolicy, wanted: Wanted) -> Mapping[Bucket, set[str]]:
        return self._views.node_groups(policy, wanted)

    def overlap(
        self,
        policy: AutotunePolicy,
        wanted: Wanted,
        question: OverlapQuestion,
        answer: OverlapAnswer,
    ) -> Overlap:
        return self._views.overlap(policy, wanted, question, answer)

    # ------------------------------------------------------------ policies

    @property
    def policies(self) -> Mapping[str, AutotunePolicy]:
        return MappingProxyType(self._store.policies)

    def upsert_policy(self, policy: AutotunePolicy) -> bool:
        if not self._store.put_policy(policy):
            return False
        self._policies_changed()
        return True

    def delete_policy(self, name: str, uid: str | None = None) -> bool:
        if not self._store.pop_policy(name, uid):
            return False
        self._policies_changed()
        return True

    def _policies_changed(self) -> None:
        if self._views.policies_changed():
            self._dirty(None)

    def cluster_policy(self) -> AutotunePolicy:
        """The policy that governs node labels."""
        return self._views.cluster_policy()

    def policy_for(self, namespace: str) -> AutotunePolicy:
        return self._views.policy_for(namespace)

    # ------------------------------------------------------------ namespaces

    def set_namespace(self, name: str, *, opted_in: bool) -> None:
        self._store.put_namespace(name, opted_in=opted_in)

    def delete_namespace(self, name: str) -> bool:
        known = name in self._store.namespaces
        self._store.pop_namespace(name)
        return known

    def namespace_opted_in(self, name: str) -> bool:
        return name in self._store.inject_namespaces

    # ------------------------------------------------------------ compile caches

    def set_cache_directory(self, entries: Mapping[str, CacheEntry]) -> None:
        """The chart's compile-cache directory (maxtune.operator.cachedir), by namespace."""
        self._caches = dict(entries)

    def cache_for(self, namespace: str) -> CacheEntry | None:
        return self._caches.get(namespace)

    # ------------------------------------------------------------ relists

    def prune(self, kind: str, keep: Iterable[str]) -> list[str]:
        """Forget every object of `kind` a complete list no longer has; returns their names.

        An informer's relist (after its watch expired, 410 Gone) replaces what it had: a
        deletion that happened while it was not watching is never reported as an event.
        """
        kept = set(keep)
        gone = [name for name in list(self._store.names(kind)) if name not in kept]
        remove: dict[str, Callable[[str], object]] = {
            "node": self.delete_node,
            "profile": self.delete_profile,
            "policy": self.delete_policy,
            "namespace": self.delete_namespace,
            "lease": self.delete_lease,
        }
        for name in gone:
            remove[kind](name)
        return gone
