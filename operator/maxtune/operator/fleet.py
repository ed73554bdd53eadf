"""FleetState: the operator's in-memory picture of the cluster, and the seam of its design.

kopf's watch handlers write into it, the labeller and the webhook read from it,
and nothing in here talks to the network, so every decision can be tested with
plain objects. One asyncio loop owns it (kopf handlers are coroutines), so it
needs no locks.

It keeps inverted indexes over node labels, GPU resources and taints, so that
the webhook finds a pod's candidate nodes with a few set operations instead of
a Python loop over 2,000 nodes on every admission request.
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeVar

from maxtune.contract.assess import node_labels, resources_by_name, summarize
from maxtune.contract.models import AutotunePolicy, ResourceSummary
from maxtune.contract.modes import strength
from maxtune.contract.names import LABEL_CLASS, LABEL_MODE
from maxtune.contract.policy import cluster_policy, policy_for_namespace
from maxtune.operator.records import NodeRecord, ProfileRecord, resource_version_number

PolicyKey = tuple[str, str | None]
# Called with the names of nodes whose desired or actual labels may have changed;
# None means "every node" (the cluster policy changed).
DirtyListener = Callable[[Iterable[str] | None], None]
# The GPU resources each GPU container of a pod asks for, in container order.
Wanted = tuple[tuple[str, ...], ...]
Ranks = tuple[int, ...] | None  # one mode rank per GPU container; None: nothing known
# Nodes that look alike to the webhook: (gpu-class label, recommended-mode label, ranks).
Bucket = tuple[str | None, str | None, Ranks]

_EMPTY: frozenset[str] = frozenset()
K = TypeVar("K")
TOMBSTONES = 8192  # remembered deletions; far more than happen between two relists


def policy_key(policy: AutotunePolicy) -> PolicyKey:
    return (policy.metadata.name, policy.metadata.resource_version)


def _newer_or_unordered(incoming: str, current: str) -> bool:
    """False only when both versions are numbers and `incoming` is older.

    A node patch answers with the patched object before the watch delivers the
    same change; a watch event still in flight from before the patch must not
    roll the record back (it would cause a second, needless write).
    """
    a, b = resource_version_number(incoming), resource_version_number(current)
    return a is None or b is None or a >= b


def ranks_for(table: Mapping[str, int], wanted: Wanted) -> Ranks:
    """Per container, the weakest mode rank among the resources it asks for; None if one is
    missing from the node's table."""
    got = tuple(min(table.get(r, -1) for r in resources) for resources in wanted)
    return None if min(got) < 0 else got


@dataclass(slots=True)
class _Groups:
    """Every node's bucket for one policy and one `Wanted`, kept up to date incrementally."""

    members: dict[Bucket, set[str]] = field(default_factory=dict)
    where: dict[str, Bucket] = field(default_factory=dict)
    dirty: set[str] = field(default_factory=set)


class FleetState:
    """Nodes, profiles, policies and opted-in namespaces, as the watches last saw them."""

    def __init__(self) -> None:
        self._nodes: dict[str, NodeRecord] = {}
        self._profiles: dict[str, ProfileRecord] = {}
        self._policies: dict[str, AutotunePolicy] = {}
        self._inject_namespaces: set[str] = set()
        self._by_label: dict[tuple[str, str], set[str]] = defaultdict(set)
        self._by_key: dict[str, set[str]] = defaultdict(set)
        self._by_resource: dict[str, set[str]] = defaultdict(set)
        self._tainted: set[str] = set()
        self._all: set[str] = set()
        # (resource, count) -> nodes with at least `count` of it; cleared on any index change.
        self._at_least: dict[tuple[str, int], frozenset[str]] = {}
        self._summaries: dict[PolicyKey, dict[str, Mapping[str, ResourceSummary]]] = {}
        self._ranks: dict[PolicyKey, dict[str, Mapping[str, int]]] = {}
        self._heartbeats: dict[str, float] = {}
        self._policy_for_ns: dict[str, AutotunePolicy] = {}
        self._cluster_policy: AutotunePolicy | None = None
        self._listeners: list[DirtyListener] = []
        self._desired: dict[str, tuple[PolicyKey, Mapping[str, str]]] = {}
        self._groups: dict[tuple[PolicyKey, Wanted], _Groups] = {}
        # Which upsert last saw each object; a relist prunes what it did not see since.
        self._tick = 0
        self._seen: dict[tuple[str, str], int] = {}
        # uids of deleted objects: a list taken before a deletion but read after it
        # must not bring the object back.
        self._tombstones: OrderedDict[tuple[str, str], None] = OrderedDict()

    # ------------------------------------------------------------ listeners

    def subscribe(self, listener: DirtyListener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _dirty(self, names: Iterable[str] | None) -> None:
        for listener in list(self._listeners):
            listener(names)

    # ------------------------------------------------------------ bookkeeping for relists

    def tick(self) -> int:
        return self._tick

    def _bury(self, kind: str, uid: str | None) -> None:
        if uid:
            self._tombstones[(kind, uid)] = None
            if len(self._tombstones) > TOMBSTONES:
                self._tombstones.popitem(last=False)

    def _buried(self, kind: str, uid: str | None) -> bool:
        return bool(uid) and (kind, uid) in self._tombstones

    def _stamp(self, kind: str, name: str) -> None:
        self._tick += 1
        self._seen[(kind, name)] = self._tick

    def prune(self, kind: str, keep: set[str], before: int) -> list[str]:
        """Forget objects of `kind` a complete list no longer has, unless seen after `before`.

        Watches do not report objects deleted while they were reconnecting; a
        periodic relist finds them.
        """
        gone = [
            name
            for (k, name), stamp in self._seen.items()
            if k == kind and name not in keep and stamp <= before
        ]
        for name in gone:
            if kind == "node":
                self.delete_node(name)
            elif kind == "profile":
                self.delete_profile(name)
            elif kind == "policy":
                self.delete_policy(name)
            else:
                self.delete_namespace(name)
        return gone

    # ------------------------------------------------------------ nodes

    @property
    def nodes(self) -> Mapping[str, NodeRecord]:
        return MappingProxyType(self._nodes)

    def upsert_node(self, record: NodeRecord) -> bool:
        """Store the node; True when anything the operator decides from changed."""
        if self._buried("node", record.uid):
            return False
        self._stamp("node", record.name)
        old = self._nodes.get(record.name)
        if old is not None:
            if old.uid == record.uid and not _newer_or_unordered(
                record.resource_version, old.resource_version
            ):
                return False
            if old.same_shape(record):
                self._nodes[record.name] = record
                return False
            self._unindex(old)
        self._nodes[record.name] = record
        self._index(record)
        self._dirty((record.name,))
        return True

    def delete_node(self, name: str, uid: str | None = None) -> bool:
        self._seen.pop(("node", name), None)
        old = self._nodes.pop(name, None)
        self._bury("node", uid or (old.uid if old else None))
        if old is None:
            return False
        self._unindex(old)
        self._dirty((name,))
        return True

    def _regroup(self, name: str) -> None:
        """The node's bucket may have changed: recompute it before the next admission reads it."""
        for groups in self._groups.values():
            groups.dirty.add(name)

    def _index(self, node: NodeRecord) -> None:
        name = node.name
        self._regroup(name)
        self._at_least.clear()
        self._all.add(name)
        for key, value in node.labels.items():
            self._by_label[(key, value)].add(name)
            self._by_key[key].add(name)
        for resource in node.gpus:
            self._by_resource[resource].add(name)
        if node.taints:
            self._tainted.add(name)

    def _unindex(self, node: NodeRecord) -> None:
        name = node.name
        self._regroup(name)
        self._at_least.clear()
        self._all.discard(name)
        for key, value in node.labels.items():
            _discard(self._by_label, (key, value), name)
            _discard(self._by_key, key, name)
        for resource in node.gpus:
            _discard(self._by_resource, resource, name)
        self._tainted.discard(name)

    # Index views for selection.py: never mutate what these return.
    def all_nodes(self) -> set[str]:
        return self._all

    def with_label(self, key: str, value: str) -> set[str] | frozenset[str]:
        return self._by_label.get((key, value), _EMPTY)

    def with_key(self, key: str) -> set[str] | frozenset[str]:
        return self._by_key.get(key, _EMPTY)

    def with_resource(self, resource: str) -> set[str] | frozenset[str]:
        return self._by_resource.get(resource, _EMPTY)

    def with_resource_at_least(self, resource: str, count: int) -> set[str] | frozenset[str]:
        """Nodes with at least `count` allocatable of `resource`.

        Pods ask for a handful of distinct counts (1, 2, 4, 8), and node shapes
        change rarely (heartbeats never change them), so each answer is kept
        until the next index change: an 8-GPU pod no longer costs a Python
        loop over every GPU node.
        """
        if count <= 1:
            return self.with_resource(resource)
        found = self._at_least.get((resource, count))
        if found is None:
            if len(self._at_least) >= 256:  # odd counts come and go; stay bounded
                self._at_least.clear()
            nodes = self._nodes
            found = frozenset(
                n for n in self.with_resource(resource) if nodes[n].gpus.get(resource, 0) >= count
            )
            self._at_least[(resource, count)] = found
        return found

    def tainted(self) -> set[str]:
        return self._tainted

    # ------------------------------------------------------------ profiles

    @property
    def profiles(self) -> Mapping[str, ProfileRecord]:
        """Keyed by node name (a profile is named after its node)."""
        return MappingProxyType(self._profiles)

    def upsert_profile(self, record: ProfileRecord) -> bool:
        if self._buried("profile", record.uid):
            return False
        self._stamp("profile", record.node_name)
        old = self._profiles.get(record.node_name)
        if old is not None and old.uid == record.uid:
            if not _newer_or_unordered(record.resource_version, old.resource_version):
                return False
            if old.resource_version == record.resource_version:
                return False
        self._profiles[record.node_name] = record
        if record.heartbeat is not None:
            self._heartbeats[record.node_name] = record.heartbeat
        else:
            self._heartbeats.pop(record.node_name, None)
        if not _same_devices(old, record):  # a heartbeat alone keeps what was derived
            self._forget_derived(record.node_name)
        self._regroup(record.node_name)  # a heartbeat may appear or go
        self._dirty((record.node_name,))
        return True

    def delete_profile(self, node_name: str, uid: str | None = None) -> bool:
        self._seen.pop(("profile", node_name), None)
        old = self._profiles.pop(node_name, None)
        self._bury("profile", uid or (old.uid if old else None))
        if old is None:
            return False
        self._heartbeats.pop(node_name, None)
        self._forget_derived(node_name)
        self._dirty((node_name,))
        return True

    def _forget_derived(self, node_name: str) -> None:
        self._regroup(node_name)
        self._desired.pop(node_name, None)
        for cache in self._summaries.values():
            cache.pop(node_name, None)
        for ranks in self._ranks.values():
            ranks.pop(node_name, None)

    def is_stale(self, node_name: str, now: float) -> bool:
        """The profile's heartbeat is older than the cluster policy allows (or missing)."""
        profile = self._profiles.get(node_name)
        if profile is None or profile.heartbeat is None:
            return True
        return now - profile.heartbeat > self.cluster_policy().spec.stale_after_seconds

    def desired_labels(self, node_name: str, now: float) -> Mapping[str, str]:
        """The node's maxtune labels under the cluster policy; empty means none at all.

        A node that is not known, has no profile, a profile without GPUs, or a
        stale heartbeat gets none. The labels themselves are cached per profile
        version and policy, so heartbeats and metrics scrapes stay cheap.
        """
        profile = self._profiles.get(node_name)
        if node_name not in self._nodes or profile is None or not profile.has_status:
            return {}
        if self.is_stale(node_name, now):
            return {}
        policy = self.cluster_policy()
        key = policy_key(policy)
        cached = self._desired.get(node_name)
        if cached is None or cached[0] != key:
            # Staleness is checked above against the wall clock; here the
            # heartbeat itself is "now", so only the profile and policy decide.
            status = profile.status
            assert status is not None
            labels = node_labels(status, policy.spec, status.heartbeat_time)
            cached = self._desired[node_name] = (key, MappingProxyType(dict(labels)))
        return cached[1]

    @property
    def heartbeats(self) -> Mapping[str, float]:
        """POSIX heartbeat time of every profile that has a usable status, by node name."""
        return self._heartbeats

    def rank_cache(self, policy: AutotunePolicy) -> Mapping[str, Mapping[str, int]]:
        """The mode tables computed so far under `policy` (hot-path read; may miss nodes)."""
        key = policy_key(policy)
        cache = self._ranks.get(key)
        if cache is None:
            cache = self._ranks[key] = {}
        return cache

    def mode_ranks(self, node_name: str, policy: AutotunePolicy) -> Mapping[str, int]:
        """Per GPU resource, the recommended mode's rank (0 = default) under `policy`."""
        key = policy_key(policy)
        cache = self._ranks.get(key)
        if cache is None:
            cache = self._ranks[key] = {}
        found = cache.get(node_name)
        if found is None:
            found = cache[node_name] = {
                name: strength(s.recommended_mode)
                for name, s in self.summaries(node_name, policy).items()
            }
        return found

    def warm(self, policy: AutotunePolicy, budget: int = 50) -> int:
        """Compute up to `budget` missing mode tables for `policy`; returns how many it did.

        The runtime calls it in small steps between admissions, so that the
        first request after start-up or a policy change finds them ready.
        """
        cache = self._ranks.get(policy_key(policy), {})
        done = 0
        for name in self._profiles:
            if name not in cache:
                self.mode_ranks(name, policy)
                cache = self._ranks[policy_key(policy)]
                done += 1
                if done >= budget:
                    break
        return done

    def node_groups(self, policy: AutotunePolicy, wanted: Wanted) -> Mapping[Bucket, set[str]]:
        """Every node by bucket under `policy`, for a pod whose GPU containers ask for `wanted`.

        A node without a profile heartbeat has ranks None; staleness is not
        applied here (it moves with the clock): see `stale_profiles`. The
        groups are built once per policy and request shape, then only the
        nodes that changed since the last call are moved, so an admission
        touches a handful of groups instead of every candidate node.
        """
        key = (policy_key(policy), wanted)
        groups = self._groups.get(key)
        if groups is None:
            if len(self._groups) >= 64:  # request shapes come and go; stay bounded
                self._groups.clear()
            groups = self._groups[key] = _Groups(dirty=set(self._nodes))
        if groups.dirty:
            for name in groups.dirty:
                old = groups.where.pop(name, None)
                if old is not None:
                    _discard(groups.members, old, name)
                node = self._nodes.get(name)
                if node is None:
                    continue
                ranks: Ranks = None
                if name in self._heartbeats:
                    ranks = ranks_for(self.mode_ranks(name, policy), wanted)
                bucket = (node.labels.get(LABEL_CLASS), node.labels.get(LABEL_MODE), ranks)
                groups.where[name] = bucket
                groups.members.setdefault(bucket, set()).add(name)
            groups.dirty.clear()
        return groups.members

    def stale_profiles(self, oldest: float) -> set[str]:
        """Nodes whose profile heartbeat is older than `oldest` (POSIX time); usually none."""
        heartbeats = self._heartbeats
        if not heartbeats or min(heartbeats.values()) >= oldest:
            return set()
        return {name for name, beat in heartbeats.items() if beat < oldest}

    def summaries(self, node_name: str, policy: AutotunePolicy) -> Mapping[str, ResourceSummary]:
        """Per-resource summaries of the node's profile under `policy` (empty: none known)."""
        cache = self._summaries.get(policy_key(policy))
        if cache is None:
            cache = self._summaries[policy_key(policy)] = {}
        found = cache.get(node_name)
        if found is None:
            profile = self._profiles.get(node_name)
            status = profile.status if profile is not None else None
            if status is None or not status.gpus:
                found = MappingProxyType({})
            else:
                resources, _ = summarize(status.gpus, policy.spec)
                found = MappingProxyType(resources_by_name(resources))
            cache[node_name] = found
        return found

    # ------------------------------------------------------------ policies

    @property
    def policies(self) -> Mapping[str, AutotunePolicy]:
        return MappingProxyType(self._policies)

    def upsert_policy(self, policy: AutotunePolicy) -> bool:
        if self._buried("policy", policy.metadata.uid):
            return False
        self._stamp("policy", policy.metadata.name)
        old = self._policies.get(policy.metadata.name)
        if old is not None and old.metadata.resource_version == policy.metadata.resource_version:
            return False
        self._policies[policy.metadata.name] = policy
        self._policies_changed()
        return True

    def delete_policy(self, name: str, uid: str | None = None) -> bool:
        self._seen.pop(("policy", name), None)
        old = self._policies.pop(name, None)
        self._bury("policy", uid or (old.metadata.uid if old else None))
        if old is None:
            return False
        self._policies_changed()
        return True

    def _policies_changed(self) -> None:
        before = self._cluster_policy
        self._summaries.clear()
        self._ranks.clear()
        self._groups.clear()
        self._desired.clear()
        self._policy_for_ns.clear()
        self._cluster_policy = None
        after = self.cluster_policy()
        if before is None or policy_key(before) != policy_key(after) or before != after:
            self._dirty(None)

    def cluster_policy(self) -> AutotunePolicy:
        """The policy that governs node labels."""
        if self._cluster_policy is None:
            self._cluster_policy = cluster_policy(self._policies.values())
        return self._cluster_policy

    def policy_for(self, namespace: str) -> AutotunePolicy:
        found = self._policy_for_ns.get(namespace)
        if found is None:
            found = policy_for_namespace(self._policies.values(), namespace)
            if len(self._policy_for_ns) > 4096:  # namespaces come and go; stay bounded
                self._policy_for_ns.clear()
            self._policy_for_ns[namespace] = found
        return found

    # ------------------------------------------------------------ namespaces

    def set_namespace(self, name: str, *, opted_in: bool) -> None:
        self._stamp("namespace", name)
        if opted_in:
            self._inject_namespaces.add(name)
        else:
            self._inject_namespaces.discard(name)

    def delete_namespace(self, name: str) -> bool:
        self._seen.pop(("namespace", name), None)
        if name not in self._inject_namespaces:
            return False
        self._inject_namespaces.discard(name)
        return True

    def namespace_opted_in(self, name: str) -> bool:
        return name in self._inject_namespaces


def _same_devices(old: ProfileRecord | None, new: ProfileRecord) -> bool:
    """Same GPUs and measurements: nothing derived from the profile can differ."""
    if old is None or not old.has_status or not new.has_status:
        return False
    return old.devices == new.devices


def _discard(index: dict[K, set[str]], key: K, name: str) -> None:
    members = index.get(key)
    if members is not None:
        members.discard(name)
        if not members:
            del index[key]
