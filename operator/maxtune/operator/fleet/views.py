"""What the operator derives from the records, per policy, cached until the records change.

Summaries and mode tables come from `maxtune.contract.assess` (the same code the
agent runs); computing them means validating a profile's packed status, so each
is kept per (policy, resourceVersion) and per node until that node's devices or
measurements change. A heartbeat alone keeps everything. Buckets group alike
nodes for the webhook (decision 0005); they move incrementally as nodes change.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from types import MappingProxyType

from maxtune.contract.assess import node_labels, resources_by_name, summarize
from maxtune.contract.models import AutotunePolicy, ResourceSummary
from maxtune.contract.modes import strength
from maxtune.contract.names import LABEL_CLASS, LABEL_MODE
from maxtune.contract.policy import cluster_policy, policy_for_namespace
from maxtune.operator.fleet.store import Store

PolicyKey = tuple[str, str | None]
# The GPU resources each GPU container of a pod asks for, in container order.
Wanted = tuple[tuple[str, ...], ...]
Ranks = tuple[int, ...] | None  # one mode rank per GPU container; None: nothing known
# Nodes that look alike to the webhook: (gpu-class label, recommended-mode label, ranks).
Bucket = tuple[str | None, str | None, Ranks]
# The buckets that hold some of a pod's candidate nodes, and those candidates by bucket.
Overlap = tuple[frozenset[Bucket], Mapping[Bucket, AbstractSet[str]]]
# An overlap is asked for a pod's candidate nodes and the stale ones, and computed from groups.
OverlapQuestion = tuple[frozenset[str], frozenset[str]]
OverlapAnswer = Callable[[Mapping[Bucket, set[str]]], Overlap]
OVERLAPS_KEPT = 32  # answers kept at a time, every group's together


def policy_key(policy: AutotunePolicy) -> PolicyKey:
    return (policy.metadata.name, policy.metadata.resource_version)


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
    # Overlaps with candidate sets already asked about; cleared when a node changes bucket.
    overlaps: dict[OverlapQuestion, Overlap] = field(default_factory=dict)


class Views:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._summaries: dict[PolicyKey, dict[str, Mapping[str, ResourceSummary]]] = {}
        self._ranks: dict[PolicyKey, dict[str, Mapping[str, int]]] = {}
        self._speeds: dict[PolicyKey, dict[str, Mapping[str, Mapping[int, float]]]] = {}
        self._desired: dict[str, tuple[PolicyKey, Mapping[str, str]]] = {}
        self._groups: dict[tuple[PolicyKey, Wanted], _Groups] = {}
        self._policy_for_ns: dict[str, AutotunePolicy] = {}
        self._cluster_policy: AutotunePolicy | None = None

    # ------------------------------------------------------------ invalidation

    def node_moved(self, name: str) -> None:
        """The node's bucket may have changed: recompute it before the next admission reads it."""
        for groups in self._groups.values():
            groups.dirty.add(name)

    def devices_changed(self, name: str) -> None:
        """The node's GPUs or measurements changed: everything derived from them goes."""
        self.node_moved(name)
        self._desired.pop(name, None)
        for cache in self._summaries.values():
            cache.pop(name, None)
        for ranks in self._ranks.values():
            ranks.pop(name, None)
        for speeds in self._speeds.values():
            speeds.pop(name, None)

    def policies_changed(self) -> bool:
        """Drop every per-policy view; True when the cluster policy itself changed."""
        before = self._cluster_policy
        self._summaries.clear()
        self._ranks.clear()
        self._speeds.clear()
        self._groups.clear()
        self._desired.clear()
        self._policy_for_ns.clear()
        self._cluster_policy = None
        after = self.cluster_policy()
        return before is None or policy_key(before) != policy_key(after) or before != after

    # ------------------------------------------------------------ policies

    def cluster_policy(self) -> AutotunePolicy:
        """The policy that governs node labels."""
        if self._cluster_policy is None:
            self._cluster_policy = cluster_policy(self._store.policies.values())
        return self._cluster_policy

    def policy_for(self, namespace: str) -> AutotunePolicy:
        found = self._policy_for_ns.get(namespace)
        if found is None:
            found = policy_for_namespace(self._store.policies.values(), namespace)
            if len(self._policy_for_ns) > 4096:  # namespaces come and go; stay bounded
                self._policy_for_ns.clear()
            self._policy_for_ns[namespace] = found
        return found

    # ------------------------------------------------------------ per node

    def desired_labels(self, name: str) -> Mapping[str, str]:
        """The node's labels under the cluster policy, as of its own profile (no staleness)."""
        policy = self.cluster_policy()
        cached = self._desired.get(name)
        if cached is None or cached[0] != policy_key(policy):
            self._derive(name, policy)
            cached = self._desired[name]
        return cached[1]

    def summaries(self, name: str, policy: AutotunePolicy) -> Mapping[str, ResourceSummary]:
        """Per-resource summaries of the node's profile under `policy` (empty: none known)."""
        found = self._summaries.setdefault(policy_key(policy), {}).get(name)
        if found is None:
            found = self._derive(name, policy)
        return found

    def _derive(self, name: str, policy: AutotunePolicy) -> Mapping[str, ResourceSummary]:
        """Unpack the profile's status once and derive all of it under `policy`.

        Unpacking and validating the status is most of the cost (a measured 8-GPU status
        is ~25 KB of JSON): the summaries (the webhook's) and, under the cluster policy, the
        desired labels (the labeller's) come from the same unpacking, not one each.
        """
        key = policy_key(policy)
        profile = self._store.profiles.get(name)
        status = profile.status if profile is not None else None
        found: Mapping[str, ResourceSummary] = MappingProxyType({})
        if status is not None and status.gpus:
            resources, _ = summarize(status.gpus, policy.spec)
            found = MappingProxyType(resources_by_name(resources))
        self._summaries.setdefault(key, {})[name] = found
        if key == policy_key(self.cluster_policy()):
            # Staleness is the caller's (it moves with the clock); here the heartbeat itself
            # is "now", so only the profile and the policy decide.
            labels = node_labels(status, policy.spec, status.heartbeat_time) if status else {}
            self._desired[name] = (key, MappingProxyType(dict(labels)))
        return found

    def rank_cache(self, policy: AutotunePolicy) -> Mapping[str, Mapping[str, int]]:
        """The mode tables computed so far under `policy` (hot-path read; may miss nodes)."""
        return self._ranks.setdefault(policy_key(policy), {})

    def mode_ranks(self, name: str, policy: AutotunePolicy) -> Mapping[str, int]:
        """Per GPU resource, the recommended mode's rank (0 = default) under `policy`."""
        cache = self._ranks.setdefault(policy_key(policy), {})
        found = cache.get(name)
        if found is None:
            found = cache[name] = {
                resource: strength(s.recommended_mode)
                for resource, s in self.summaries(name, policy).items()
            }
        return found

    def speeds(self, name: str, policy: AutotunePolicy) -> Mapping[str, Mapping[int, float]]:
        """Per GPU resource, the training reference's step seconds by mode rank (0 = default)
        as measured on the node: every node measures the same block, so steps compare across
        classes. Empty for a resource whose modes were not measured."""
        cache = self._speeds.setdefault(policy_key(policy), {})
        found = cache.get(name)
        if found is None:
            table: dict[str, Mapping[int, float]] = {}
            for resource, summary in self.summaries(name, policy).items():
                if not summary.modes:
                    continue
                default = summary.modes[0].step_seconds
                steps = {0: default}
                for advice in summary.modes:
                    if advice.gain > -1:
                        steps[strength(advice.mode)] = default / (1 + advice.gain)
                table[resource] = MappingProxyType(steps)
            found = cache[name] = MappingProxyType(table)
        return found

    def warm(self, policy: AutotunePolicy, budget: int = 50) -> int:
        """Compute up to `budget` missing mode tables for `policy`; returns how many it did."""
        cache = self._ranks.setdefault(policy_key(policy), {})
        done = 0
        for name in self._store.profiles:
            if name not in cache:
                self.mode_ranks(name, policy)
                done += 1
                if done >= budget:
                    break
        return done

    def node_groups(self, policy: AutotunePolicy, wanted: Wanted) -> Mapping[Bucket, set[str]]:
        """Every node by bucket under `policy`, for a pod whose GPU containers ask for `wanted`.

        A node without a live agent has ranks None; staleness is not applied here (it moves
        with the clock: see FleetState.stale_profiles). The groups are built once per policy
        and request shape, then only the nodes that changed since the last call move, so an
        admission touches a handful of groups instead of every candidate node.
        """
        return self._current(policy, wanted).members

    def overlap(
        self,
        policy: AutotunePolicy,
        wanted: Wanted,
        question: OverlapQuestion,
        answer: OverlapAnswer,
    ) -> Overlap:
        """`answer(groups)` for (candidates, stale nodes), kept until a node next changes bucket.

        The candidate set of a pod shape is itself kept (FleetState.remembered), so the
        pods of one job meet the same set and skip the set algebra over thousands of
        names; a heartbeat that leaves a node in its bucket keeps the answer.
        """
        groups = self._current(policy, wanted)
        found = groups.overlaps.get(question)
        if found is None:
            # Each answer can hold two sets of every node's name (1 MB at 5,000 nodes): few
            # are kept, over all groups together; pod shapes come and go.
            if sum(len(g.overlaps) for g in self._groups.values()) >= OVERLAPS_KEPT:
                for kept in self._groups.values():
                    kept.overlaps.clear()
            found = groups.overlaps[question] = answer(groups.members)
        return found

    def _current(self, policy: AutotunePolicy, wanted: Wanted) -> _Groups:
        key = (policy_key(policy), wanted)
        groups = self._groups.get(key)
        if groups is None:
            if len(self._groups) >= 64:  # request shapes come and go; stay bounded
                self._groups.clear()
            groups = self._groups[key] = _Groups(dirty=set(self._store.nodes))
        if groups.dirty:
            nodes, alive = self._store.nodes, self._store.alive
            moved = False
            for name in groups.dirty:
                old = groups.where.pop(name, None)
                node = nodes.get(name)
                if node is None:
                    if old is not None:
                        _leave(groups, old, name)
                        moved = True
                    continue
                ranks: Ranks = None
                if name in alive and name in self._store.profiles:
                    ranks = ranks_for(self.mode_ranks(name, policy), wanted)
                bucket = (node.labels.get(LABEL_CLASS), node.labels.get(LABEL_MODE), ranks)
                groups.where[name] = bucket
                if bucket != old:
                    if old is not None:
                        _leave(groups, old, name)
                    groups.members.setdefault(bucket, set()).add(name)
                    moved = True
            groups.dirty.clear()
            if moved:
                groups.overlaps.clear()
        return groups


def _leave(groups: _Groups, bucket: Bucket, name: str) -> None:
    members = groups.members.get(bucket)
    if members is not None:
        members.discard(name)
        if not members:
            del groups.members[bucket]
