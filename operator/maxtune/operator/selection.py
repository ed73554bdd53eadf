"""Which nodes a pod may land on: nodeSelector, required node affinity, tolerations.

Admission runs before scheduling, so the webhook must predict the scheduler's
hard filters for the pod (the ones that decide *where*, not *whether there is
room*): NodeAffinity (nodeSelector and required node affinity, with the exact
semantics of k8s.io/component-helpers nodeaffinity) and TaintToleration for
NoSchedule/NoExecute taints. `node_matches` states those rules plainly for one
node; `candidates` computes the same set for the whole fleet with set algebra
over FleetState's indexes. A property test keeps the two equal.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any, Final

from maxtune.operator.fleet import FleetState
from maxtune.operator.records import NodeRecord, Taint, as_dict, as_list

NODE_NAME_FIELD: Final = "metadata.name"
REQUIRED: Final = "requiredDuringSchedulingIgnoredDuringExecution"


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    operator: str
    values: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Term:
    """A nodeSelectorTerm: its expressions and fields are ANDed; an empty term matches nothing."""

    expressions: tuple[Requirement, ...]
    fields: tuple[Requirement, ...]

    @property
    def empty(self) -> bool:
        return not self.expressions and not self.fields


@dataclass(frozen=True, slots=True)
class Toleration:
    key: str
    operator: str
    value: str
    effect: str


@dataclass(frozen=True, slots=True)
class Placement:
    node_name: str | None
    node_selector: tuple[tuple[str, str], ...]
    terms: tuple[Term, ...] | None  # None: no required node affinity
    tolerations: tuple[Toleration, ...]


def _requirements(raw: object) -> tuple[Requirement, ...]:
    found = []
    for item in as_list(raw):
        req = as_dict(item)
        values = tuple(str(v) for v in as_list(req.get("values")))
        found.append(Requirement(str(req.get("key") or ""), str(req.get("operator") or ""), values))
    return tuple(found)


def read_placement(spec: Mapping[str, Any]) -> Placement:
    """The pod's hard placement constraints; malformed parts read as "matches nothing"."""
    node_name = spec.get("nodeName")
    raw_selector = spec.get("nodeSelector")
    selector = tuple(
        sorted(
            (str(k), v if isinstance(v, str) else f"\0{v!r}")
            for k, v in as_dict(raw_selector).items()
        )
    )
    if raw_selector is not None and not isinstance(raw_selector, Mapping):
        selector = (("\0", "\0"),)  # not a map: the API server will refuse it; match nothing
    terms = _required_terms(spec)
    tolerations = tuple(
        Toleration(
            str(t.get("key") or ""),
            str(t.get("operator") or ""),
            str(t.get("value") or ""),
            str(t.get("effect") or ""),
        )
        for t in map(as_dict, as_list(spec.get("tolerations")))
    )
    return Placement(
        node_name=node_name if isinstance(node_name, str) and node_name else None,
        node_selector=selector,
        terms=terms,
        tolerations=tolerations,
    )


def _required_terms(spec: Mapping[str, Any]) -> tuple[Term, ...] | None:
    """None without required node affinity; a malformed one matches nothing (never rewritten)."""
    affinity = spec.get("affinity")
    if affinity is None:
        return None
    if not isinstance(affinity, Mapping):
        return ()
    node_affinity = affinity.get("nodeAffinity")
    if node_affinity is None:
        return None
    if not isinstance(node_affinity, Mapping):
        return ()
    required = node_affinity.get(REQUIRED)
    if required is None:
        return None
    if not isinstance(required, Mapping):
        return ()
    return tuple(
        Term(
            _requirements(as_dict(term).get("matchExpressions")),
            _requirements(as_dict(term).get("matchFields")),
        )
        for term in as_list(required.get("nodeSelectorTerms"))
    )


# ---------------------------------------------------------------- one node, plainly


def _int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def requirement_matches(req: Requirement, labels: Mapping[str, str]) -> bool:
    """labels.Selector semantics for one requirement (NotIn and DoesNotExist match absence)."""
    present = req.key in labels
    if req.operator == "In":
        return present and labels[req.key] in req.values
    if req.operator == "NotIn":
        return not present or labels[req.key] not in req.values
    if req.operator == "Exists":
        return present
    if req.operator == "DoesNotExist":
        return not present
    if req.operator in ("Gt", "Lt"):
        if not present or len(req.values) != 1:
            return False
        have, bound = _int(labels[req.key]), _int(req.values[0])
        if have is None or bound is None:
            return False
        return have > bound if req.operator == "Gt" else have < bound
    return False


def field_matches(req: Requirement, node_name: str) -> bool:
    if req.key != NODE_NAME_FIELD or req.operator not in ("In", "NotIn"):
        return False
    return requirement_matches(req, {NODE_NAME_FIELD: node_name})


def term_matches(term: Term, node: NodeRecord) -> bool:
    if term.empty:
        return False
    return all(requirement_matches(r, node.labels) for r in term.expressions) and all(
        field_matches(r, node.name) for r in term.fields
    )


def tolerates(toleration: Toleration, taint: Taint) -> bool:
    """v1.Toleration.ToleratesTaint."""
    if toleration.effect and toleration.effect != taint.effect:
        return False
    if toleration.key and toleration.key != taint.key:
        return False
    if toleration.operator in ("", "Equal"):
        return toleration.value == taint.value
    return toleration.operator == "Exists"


def tolerates_all(tolerations: Iterable[Toleration], taints: Iterable[Taint]) -> bool:
    tols = tuple(tolerations)
    return all(any(tolerates(t, taint) for t in tols) for taint in taints)


def node_matches(node: NodeRecord, placement: Placement) -> bool:
    """The scheduler's NodeAffinity and TaintToleration filters for one node."""
    if placement.node_name is not None:
        return node.name == placement.node_name
    if any(node.labels.get(k) != v for k, v in placement.node_selector):
        return False
    if placement.terms is not None and not any(term_matches(t, node) for t in placement.terms):
        return False
    return tolerates_all(placement.tolerations, node.taints)


# ---------------------------------------------------------------- the fleet, by index


def _requirement_set(fleet: FleetState, req: Requirement) -> set[str]:
    if req.operator == "In":
        found: set[str] = set()
        for value in req.values:
            found |= fleet.with_label(req.key, value)
        return found
    if req.operator == "NotIn":
        return fleet.all_nodes() - _requirement_set(fleet, Requirement(req.key, "In", req.values))
    if req.operator == "Exists":
        return set(fleet.with_key(req.key))
    if req.operator == "DoesNotExist":
        return fleet.all_nodes() - fleet.with_key(req.key)
    if req.operator in ("Gt", "Lt"):
        nodes = fleet.nodes
        return {n for n in fleet.with_key(req.key) if requirement_matches(req, nodes[n].labels)}
    return set()


def _field_set(fleet: FleetState, req: Requirement) -> set[str]:
    if req.key != NODE_NAME_FIELD or req.operator not in ("In", "NotIn"):
        return set()
    named = fleet.all_nodes() & set(req.values)
    return named if req.operator == "In" else fleet.all_nodes() - named


def _term_set(fleet: FleetState, term: Term) -> set[str]:
    if term.empty:
        return set()
    found: set[str] | None = None
    for req in term.expressions:
        part = _requirement_set(fleet, req)
        found = part if found is None else found & part
        if not found:
            return set()
    for req in term.fields:
        part = _field_set(fleet, req)
        found = part if found is None else found & part
        if not found:
            return set()
    return found if found is not None else set()


def candidates(
    fleet: FleetState, placement: Placement, needs: Mapping[str, int]
) -> AbstractSet[str]:
    """Names of the nodes with enough allocatable of every resource in `needs` that the pod
    may land on. Callers never mutate the set: it is shared by every pod of the same shape
    until a node's labels, taints or GPUs change."""
    if placement.node_name is not None:
        node = fleet.nodes.get(placement.node_name)
        if node is None or any(node.gpus.get(r, 0) < n for r, n in needs.items()):
            return frozenset()
        return frozenset((node.name,))
    question = (placement, tuple(sorted(needs.items())))
    return fleet.remembered(question, lambda: frozenset(_search(fleet, placement, needs)))


def _search(fleet: FleetState, placement: Placement, needs: Mapping[str, int]) -> set[str]:
    nodes = fleet.nodes
    sets = [fleet.with_resource_at_least(r, n) for r, n in needs.items()]
    sets += [fleet.with_label(k, v) for k, v in placement.node_selector]
    if not sets:
        chosen = set(fleet.all_nodes())
    else:
        sets.sort(key=len)
        chosen = set(sets[0])
        for other in sets[1:]:
            chosen &= other
    if chosen and placement.terms is not None:
        allowed: set[str] = set()
        for term in placement.terms:
            allowed |= _term_set(fleet, term)
        chosen &= allowed
    if chosen:
        for name in chosen & fleet.tainted():
            if not tolerates_all(placement.tolerations, nodes[name].taints):
                chosen.discard(name)
    return chosen
