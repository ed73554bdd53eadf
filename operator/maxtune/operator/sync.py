"""Filling FleetState: from watch events, and from complete lists.

The same small functions take kopf's watch events and the pages of a LIST, so
both paths agree on what an object means. A full list runs once at start-up
(the operator is ready, and the labeller may act, only once every kind has
been listed: acting on half a picture would strip labels from nodes whose
profile simply had not arrived yet) and then periodically, to drop objects
whose deletion a reconnecting watch never reported.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from maxtune.contract.names import GROUP, POLICY_PLURAL, PROFILE_PLURAL, VERSION
from maxtune.operator.fleet import FleetState
from maxtune.operator.kube import NAMESPACES, NODES, Kube, KubeError
from maxtune.operator.records import (
    as_dict,
    namespace_opted_in,
    read_node,
    read_policy,
    read_profile,
)

log = logging.getLogger(__name__)

Kind = Literal["node", "profile", "policy", "namespace"]
KINDS: Final[tuple[Kind, ...]] = ("node", "profile", "policy", "namespace")
PATHS: Final[Mapping[Kind, str]] = {
    "node": NODES,
    "profile": f"/apis/{GROUP}/{VERSION}/{PROFILE_PLURAL}",
    "policy": f"/apis/{GROUP}/{VERSION}/{POLICY_PLURAL}",
    "namespace": NAMESPACES,
}


def _name(body: Mapping[str, Any]) -> str | None:
    name = as_dict(body.get("metadata")).get("name")
    return name if isinstance(name, str) and name else None


@dataclass(frozen=True, slots=True)
class Item:
    """What one object means to FleetState, computed off the event loop for list pages."""

    kind: Kind
    name: str
    apply: Callable[[FleetState], object]


def item(kind: Kind, body: Mapping[str, Any]) -> Item | None:
    name = _name(body)
    if name is None:
        return None
    if kind == "node":
        node = read_node(body)
        return Item(kind, name, lambda f: f.upsert_node(node)) if node else None
    if kind == "profile":
        profile = read_profile(body)
        return (
            Item(kind, profile.node_name, lambda f: f.upsert_profile(profile)) if profile else None
        )
    if kind == "policy":
        policy = read_policy(body)
        if policy is None:
            return Item(kind, name, lambda f: f.delete_policy(name))
        return Item(kind, name, lambda f: f.upsert_policy(policy))
    opted = namespace_opted_in(as_dict(as_dict(body.get("metadata")).get("labels")))
    return Item(kind, name, lambda f: f.set_namespace(name, opted_in=opted))


def event_change(
    kind: Kind, event_type: str | None, body: Mapping[str, Any]
) -> Callable[[FleetState], object] | None:
    """What one watch event (type None: an object of the initial listing) does to FleetState.

    Computed where the event arrives (kopf's thread), applied on the loop that owns FleetState.
    """
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
    return lambda f: f.delete_namespace(name)


def apply_event(
    fleet: FleetState, kind: Kind, event_type: str | None, body: Mapping[str, Any]
) -> None:
    change = event_change(kind, event_type, body)
    if change is not None:
        change(fleet)


class CrdMissing(Exception):
    """The kind's CRD is not installed (its list answered 404)."""


def _fetch(kube: Kube, kind: Kind) -> list[Item]:
    """Every object of `kind`, read page by page (runs in a worker thread)."""
    for attempt in range(3):
        try:
            items: list[Item] = []
            for page in kube.list_pages(PATHS[kind]):
                items.extend(i for i in (item(kind, body) for body in page) if i is not None)
            return items
        except KubeError as exc:
            if exc.status == 404 and kind in ("profile", "policy"):
                raise CrdMissing(kind) from None
            if exc.status == 410 and attempt < 2:  # continue token expired: list again
                continue
            raise
    raise AssertionError("unreachable")


async def relist(kube: Kube, fleet: FleetState, kind: Kind) -> int | None:
    """Bring `kind` in FleetState in line with a complete list; returns how many it has.

    None: the kind's CRD is not installed (it counts as empty).
    """
    before = fleet.tick()
    try:
        items = await asyncio.to_thread(_fetch, kube, kind)
    except CrdMissing:
        items = []
        missing = True
    else:
        missing = False
    for found in items:
        found.apply(fleet)
    gone = fleet.prune(kind, {i.name for i in items}, before)
    if gone:
        log.info("relist of %ss dropped %d missed deletion(s)", kind, len(gone))
    return None if missing else len(items)


@dataclass(slots=True)
class Primed:
    missing: set[Kind]  # kinds whose CRD is not installed
    started: dict[Kind, float]  # monotonic time each kind's successful list began


async def prime(
    kube: Kube, fleet: FleetState, *, retry_max: float = 30.0, attempts: int | None = None
) -> Primed:
    """List every kind once, retrying with backoff (forever unless `attempts` is given)."""
    result = Primed(set(), {})
    delay = 0.5
    for kind in KINDS:
        tried = 0
        while True:
            try:
                result.started[kind] = time.monotonic()
                count = await relist(kube, fleet, kind)
                break
            except KubeError as exc:
                tried += 1
                if attempts is not None and tried >= attempts:
                    raise
                log.warning("listing %ss failed (%s); retrying in %.1fs", kind, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, retry_max)
        if count is None:
            log.warning("the CRD for %ss is not installed: none of them yet", kind)
            result.missing.add(kind)
        else:
            log.info("listed %d %s(s)", count, kind)
    return result


async def relist_forever(
    kube: Kube,
    fleet: FleetState,
    interval: float,
    *,
    missing: set[Kind] | None = None,
    on_crd_installed: Callable[[Kind], None] | None = None,
) -> None:
    """Relist every `interval`; call `on_crd_installed` when a kind `missing` at start appears."""
    missing = set(missing or ())
    while True:
        await asyncio.sleep(interval)
        for kind in KINDS:
            try:
                count = await relist(kube, fleet, kind)
            except KubeError as exc:
                log.warning("periodic relist of %ss failed: %s", kind, exc)
                continue
            if count is not None and kind in missing:
                missing.discard(kind)
                if on_crd_installed is not None:
                    on_crd_installed(kind)
