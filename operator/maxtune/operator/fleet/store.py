"""The records: what the informers last saw of each object, and when each agent was last alive.

Nothing here derives anything; FleetState decides what a change means for the
indexes and the cached views. Records are replaced only by newer ones: a write
answered before the informer's event for the same change, or a list taken
before a watch event, never rolls a record back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from maxtune.contract.models import AutotunePolicy
from maxtune.operator.records import NodeRecord, ProfileRecord, resource_version_number


def newer_or_unordered(incoming: str, current: str) -> bool:
    """False only when both versions are numbers and `incoming` is older.

    A node patch answers with the patched object before the watch delivers the
    same change; a watch event still in flight from before the patch must not
    roll the record back (it would cause a second, needless write).
    """
    a, b = resource_version_number(incoming), resource_version_number(current)
    return a is None or b is None or a >= b


@dataclass(frozen=True, slots=True)
class Change:
    """What an upsert did: `stored` the record replaced the old one; `shaped` something the
    operator decides from changed (labels, taints, GPUs; devices or measurements)."""

    stored: bool
    shaped: bool


NOTHING = Change(False, False)


class Store:
    def __init__(self) -> None:
        self.nodes: dict[str, NodeRecord] = {}
        self.profiles: dict[str, ProfileRecord] = {}  # by node name
        self.policies: dict[str, AutotunePolicy] = {}
        self.inject_namespaces: set[str] = set()
        self.namespaces: set[str] = set()
        # Liveness per node, POSIX seconds: the newer of the profile's heartbeatTime and
        # the agent's Lease renewTime (agents of older versions heartbeat in the profile).
        self.profile_beats: dict[str, float] = {}
        self.lease_beats: dict[str, float] = {}
        self.alive: dict[str, float] = {}
        # min(alive.values()), kept between changes: every admission asks whether any agent
        # is stale, and scanning 2,000 beats for it was an eighth of an admission's CPU.
        self._oldest: float | None = None
        self.alive_version = 0  # moves with every change of `alive`

    # ------------------------------------------------------------ nodes

    def put_node(self, record: NodeRecord) -> tuple[Change, NodeRecord | None]:
        old = self.nodes.get(record.name)
        if old is not None:
            if old.uid == record.uid and not newer_or_unordered(
                record.resource_version, old.resource_version
            ):
                return NOTHING, old
            if old.same_shape(record):
                self.nodes[record.name] = record
                return Change(True, False), old
        self.nodes[record.name] = record
        return Change(True, True), old

    def pop_node(self, name: str, uid: str | None) -> NodeRecord | None:
        old = self.nodes.get(name)
        if old is None or (uid and old.uid and uid != old.uid):
            return None  # a newer object of the same name is not deleted by an older event
        return self.nodes.pop(name)

    # ------------------------------------------------------------ profiles

    def put_profile(self, record: ProfileRecord) -> tuple[Change, ProfileRecord | None]:
        old = self.profiles.get(record.node_name)
        if old is not None and old.uid == record.uid:
            if not newer_or_unordered(record.resource_version, old.resource_version):
                return NOTHING, old
            if old.resource_version == record.resource_version:
                return NOTHING, old
        self.profiles[record.node_name] = record
        if record.heartbeat is not None:
            self.profile_beats[record.node_name] = record.heartbeat
        else:
            self.profile_beats.pop(record.node_name, None)
        self._refresh_alive(record.node_name)
        same = old is not None and old.has_status and record.has_status
        return Change(True, not (same and old is not None and old.devices == record.devices)), old

    def pop_profile(self, node_name: str, uid: str | None) -> ProfileRecord | None:
        old = self.profiles.get(node_name)
        if old is None or (uid and old.uid and uid != old.uid):
            return None
        self.profile_beats.pop(node_name, None)
        self._refresh_alive(node_name)
        return self.profiles.pop(node_name)

    # ------------------------------------------------------------ agent leases

    def put_lease(self, node_name: str, renewed: float | None) -> bool:
        """True when the node's liveness changed."""
        if renewed is None:
            return self.pop_lease(node_name)
        if self.lease_beats.get(node_name) == renewed:
            return False
        self.lease_beats[node_name] = renewed
        return self._refresh_alive(node_name)

    def pop_lease(self, node_name: str) -> bool:
        if self.lease_beats.pop(node_name, None) is None:
            return False
        return self._refresh_alive(node_name)

    def _refresh_alive(self, name: str) -> bool:
        beats = [t for t in (self.profile_beats.get(name), self.lease_beats.get(name)) if t]
        before = self.alive.get(name)
        if beats:
            self.alive[name] = max(beats)
        else:
            self.alive.pop(name, None)
        after = self.alive.get(name)
        if after == before:
            return False
        self.alive_version += 1
        oldest = self._oldest
        if oldest is not None:
            if after is not None and after < oldest:
                self._oldest = after
            elif before is not None and before <= oldest:
                self._oldest = None  # the oldest moved on or went: found again when asked
        return True

    def oldest_alive(self) -> float | None:
        """The earliest last sign of life of any agent (POSIX seconds); None without any.

        Agents renew in a steady order, so the oldest is usually the next to renew and the
        scan runs about once per renewal, not once per admission.
        """
        if self._oldest is None and self.alive:
            self._oldest = min(self.alive.values())
        return self._oldest

    # ------------------------------------------------------------ policies and namespaces

    def put_policy(self, policy: AutotunePolicy) -> bool:
        old = self.policies.get(policy.metadata.name)
        if old is not None and old.metadata.resource_version == policy.metadata.resource_version:
            return False
        self.policies[policy.metadata.name] = policy
        return True

    def pop_policy(self, name: str, uid: str | None) -> bool:
        old = self.policies.get(name)
        if old is None or (uid and old.metadata.uid and uid != old.metadata.uid):
            return False
        del self.policies[name]
        return True

    def put_namespace(self, name: str, *, opted_in: bool) -> None:
        self.namespaces.add(name)
        if opted_in:
            self.inject_namespaces.add(name)
        else:
            self.inject_namespaces.discard(name)

    def pop_namespace(self, name: str) -> None:
        self.namespaces.discard(name)
        self.inject_namespaces.discard(name)

    def names(self, kind: str) -> Mapping[str, object] | set[str]:
        """The names of every stored object of `kind` (for a relist's prune)."""
        found: dict[str, Mapping[str, object] | set[str]] = {
            "node": self.nodes,
            "profile": self.profiles,
            "policy": self.policies,
            "namespace": self.namespaces,
            "lease": set(self.lease_beats),
        }
        return found[kind]
