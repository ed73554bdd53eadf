"""What one object, or one watch event, means to FleetState.

The same small functions read a LIST's items and a WATCH's events, so both
paths agree on what an object means. They run where the bytes arrive (an
informer's thread): parsing and validation happen off the loop that answers
admissions, which only applies the finished change.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from maxtune.contract.names import (
    AGENT_LEASE_SELECTOR,
    GROUP,
    POLICY_PLURAL,
    PROFILE_PLURAL,
    VERSION,
)
from maxtune.operator.fleet import FleetState
from maxtune.operator.records import (
    as_dict,
    namespace_opted_in,
    read_lease,
    read_node,
    read_policy,
    read_profile,
)

Kind = Literal["node", "profile", "policy", "namespace", "lease"]
Change = Callable[[FleetState], object]
NODES: Final = "/api/v1/nodes"
NAMESPACES: Final = "/api/v1/namespaces"
PROFILES: Final = f"/apis/{GROUP}/{VERSION}/{PROFILE_PLURAL}"
POLICIES: Final = f"/apis/{GROUP}/{VERSION}/{POLICY_PLURAL}"
LEASES: Final = "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"


@dataclass(frozen=True, slots=True)
class Source:
    """One kind the operator follows: where it is listed and watched, and whether its
    absence (a CRD not installed yet) is a state to wait out rather than an error."""

    kind: Kind
    path: str
    query: Mapping[str, str]
    optional: bool = False
    page_size: int = 500


# A measured 8-GPU profile is ~34 KB of JSON and ~90 KB of Python objects once decoded, so
# a page of 500 of them is tens of MB held at once while it is read: at 5,000 nodes, most of
# what the operator's memory peaks above its steady state (docs/benchmarks/fleet.md). A
# page of 100 holds a fifth of that, for five times the requests.
PROFILE_PAGE_SIZE: Final = 100


def sources(
    lease_namespace: str | None, *, profile_page_size: int = PROFILE_PAGE_SIZE
) -> tuple[Source, ...]:
    """Every kind the operator follows. Agents' Leases live in the release namespace: the
    operator watches its own (`lease_namespace`); "" reads them in every namespace (the CLI);
    None leaves them out."""
    found = [
        Source("node", NODES, {}),
        Source("namespace", NAMESPACES, {}),
        Source("profile", PROFILES, {}, optional=True, page_size=profile_page_size),
        Source("policy", POLICIES, {}, optional=True),
    ]
    if lease_namespace is not None:
        path = (
            LEASES.format(namespace=lease_namespace)
            if lease_namespace
            else "/apis/coordination.k8s.io/v1/leases"
        )
        found.append(Source("lease", path, {"labelSelector": AGENT_LEASE_SELECTOR}))
    return tuple(found)


@dataclass(frozen=True, slots=True)
class Item:
    """One listed object: the name FleetState keeps it under, and how to store it."""

    name: str
    apply: Change


def _name(body: Mapping[str, Any]) -> str | None:
    name = as_dict(body.get("metadata")).get("name")
    return name if isinstance(name, str) and name else None


def item(kind: Kind, body: Mapping[str, Any]) -> Item | None:
    name = _name(body)
    if name is None:
        return None
    if kind == "node":
        node = read_node(body)
        return Item(name, lambda f: f.upsert_node(node)) if node else None
    if kind == "profile":
        profile = read_profile(body)
        return Item(profile.node_name, lambda f: f.upsert_profile(profile)) if profile else None
    if kind == "policy":
        policy = read_policy(body)
        if policy is None:  # invalid: as if absent (the CRD schema keeps this rare)
            return Item(name, lambda f: f.delete_policy(name))
        return Item(name, lambda f: f.upsert_policy(policy))
    if kind == "lease":
        lease = read_lease(body)
        return Item(name, lambda f: f.set_lease(lease.node_name, lease.renewed)) if lease else None
    opted = namespace_opted_in(as_dict(as_dict(body.get("metadata")).get("labels")))
    return Item(name, lambda f: f.set_namespace(name, opted_in=opted))


def event_change(kind: Kind, event_type: str, body: Mapping[str, Any]) -> Change | None:
    """What one ADDED, MODIFIED or DELETED event does to FleetState (None: nothing)."""
    if event_type != "DELETED":
        found = item(kind, body)
        return found.apply if found is not None else None
    name = _name(body)
    if name is None:
        return None
    uid = str(as_dict(body.get("metadata")).get("uid") or "") or None
    if kind == "node":
        return lambda f: f.delete_node(name, uid)
    if kind == "profile":
        profile = read_profile(body)
        node_name = profile.node_name if profile else name
        return lambda f: f.delete_profile(node_name, uid)
    if kind == "policy":
        return lambda f: f.delete_policy(name, uid)
    if kind == "lease":
        return lambda f: f.delete_lease(name)
    return lambda f: f.delete_namespace(name)


def apply_event(fleet: FleetState, kind: Kind, event_type: str, body: Mapping[str, Any]) -> None:
    change = event_change(kind, event_type, body)
    if change is not None:
        change(fleet)
