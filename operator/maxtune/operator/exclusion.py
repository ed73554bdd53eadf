"""Why no node remains for a pod: the first rule that rejects each node, counted.

`selection.candidates` answers *which* nodes a pod may land on, with set algebra
over the fleet's indexes; when the answer is empty, a user needs to know what to
change. This module re-checks every node with the same one-node rules
(`selection.requirement_matches`, `term_matches`, `tolerates`) in the order
kube-scheduler's default filter plugins run (NodeName, TaintToleration,
NodeAffinity with the nodeSelector first, then resource fit), keeps the first
rule that rejects each node, as the scheduler's FailedScheduling message does,
and groups nodes by that rule. A node it does not reject is one `candidates`
returns (a test keeps the two equal).

Separate from the decision on purpose: the webhook never pays for it; the offline
preview, and the decision's "no node" reason if it wants one, call `explain`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from maxtune.operator.fleet import FleetState
from maxtune.operator.records import NodeRecord, Taint
from maxtune.operator.selection import (
    NODE_NAME_FIELD,
    Placement,
    Requirement,
    Term,
    field_matches,
    requirement_matches,
    term_matches,
    tolerates,
)

Rule = Literal["nodeName", "taint", "nodeSelector", "nodeAffinity", "resource"]
# The scheduler's filter order (and so the order groups are reported in).
RULES: Final[tuple[Rule, ...]] = ("nodeName", "taint", "nodeSelector", "nodeAffinity", "resource")
NAMES_SHOWN: Final = 3  # node names listed per reason; the rest are counted


@dataclass(frozen=True, slots=True)
class Rejection:
    """The first rule that keeps one node from the pod, and what in it did."""

    rule: Rule
    subject: str  # "gpu=a100", "dedicated=infer:NoSchedule", "nvidia.com/gpu", ...
    offered: int | None = None  # rule "resource": what the node offers


@dataclass(frozen=True, slots=True)
class Group:
    """Nodes rejected for the same reason."""

    rule: Rule
    subject: str
    nodes: tuple[str, ...]
    wanted: int | None = None  # rule "resource": what the pod needs
    offered: tuple[int, ...] = ()  # rule "resource": the distinct counts those nodes offer

    @property
    def text(self) -> str:
        count = f"{len(self.nodes)} node(s) ({_names(self.nodes)})"
        if self.rule == "nodeName":
            return f"spec.nodeName {self.subject} is none of the {len(self.nodes)} node(s)"
        if self.rule == "taint":
            return f"taint {self.subject} not tolerated on {count}"
        if self.rule == "nodeSelector":
            return f"nodeSelector {self.subject} excludes {count}"
        if self.rule == "nodeAffinity":
            return f"required node affinity {self.subject} excludes {count}"
        most = max(self.offered, default=0)
        offer = "none" if most == 0 else f"at most {most}"
        return f"{self.subject}: {self.wanted} wanted, {offer} offered on {count}"

    def wire(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "rule": self.rule,
            "subject": self.subject,
            "nodes": len(self.nodes),
            "examples": list(self.nodes[:NAMES_SHOWN]),
        }
        if self.rule == "resource":
            body["wanted"] = self.wanted
            body["offered"] = list(self.offered)
        return body


@dataclass(frozen=True, slots=True)
class Profiles:
    """The remaining nodes' profiles as the decision sees them at one time."""

    current: int
    stale: int  # the agent's last heartbeat is older than the policy's staleAfterSeconds
    missing: int  # no GPUNodeProfile at all


@dataclass(frozen=True, slots=True)
class Explanation:
    """Every node of the fleet accounted for: rejected (by group) or remaining."""

    nodes: int
    groups: tuple[Group, ...]
    remaining: tuple[str, ...] = ()
    profiles: Profiles | None = None

    @property
    def text(self) -> str:
        if not self.nodes:
            return "the fleet has no nodes"
        if not self.remaining:
            return f"none of {self.nodes} node(s) remains: " + "; ".join(
                g.text for g in self.groups
            )
        text = f"{len(self.remaining)} of {self.nodes} node(s) remain"
        p = self.profiles
        if p is None:
            return text
        if p.current:
            return f"{text}, {p.current} with a current profile"
        return (
            f"{text}, none with a current profile ({p.stale} stale, {p.missing} without one): "
            "only default holds there"
        )

    def wire(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "nodes": self.nodes,
            "remaining": len(self.remaining),
            "excluded": [g.wire() for g in self.groups],
            "text": self.text,
        }
        if self.profiles is not None and self.remaining:
            body["profiles"] = {
                "current": self.profiles.current,
                "stale": self.profiles.stale,
                "missing": self.profiles.missing,
            }
        return body


def _names(nodes: tuple[str, ...]) -> str:
    shown = ", ".join(nodes[:NAMES_SHOWN])
    more = len(nodes) - NAMES_SHOWN
    return shown + (f" and {more} more" if more > 0 else "")


def _taint(taint: Taint) -> str:
    key = f"{taint.key}={taint.value}" if taint.value else taint.key
    return f"{key}:{taint.effect}"


def _selector(key: str, value: str) -> str:
    # selection.read_placement marks values that are not strings with a leading NUL.
    if key == "\0":
        return "(not a map: matches nothing)"
    if value.startswith("\0"):
        return f"{key}={value[1:]} (not a string: matches nothing)"
    return f"{key}={value}"


def _requirement(req: Requirement) -> str:
    values = ", ".join(req.values)
    if req.operator in ("Exists", "DoesNotExist"):
        return f"{req.key} {req.operator}"
    return f"{req.key} {req.operator} [{values}]"


def _term(term: Term, node: NodeRecord) -> str:
    """The term's first requirement the node fails (its whole text when it is empty)."""
    if term.empty:
        return "{} (an empty term matches nothing)"
    for req in term.expressions:
        if not requirement_matches(req, node.labels):
            return _requirement(req)
    for req in term.fields:
        if not field_matches(req, node.name):
            shown = _requirement(req)
            return shown if req.key == NODE_NAME_FIELD else f"{shown} (only {NODE_NAME_FIELD})"
    return "?"  # not reached: the caller asks only about terms the node fails


def reject(node: NodeRecord, placement: Placement, needs: Mapping[str, int]) -> Rejection | None:
    """The first filter rule that rejects `node` for the pod; None when it may land there.

    A pod with spec.nodeName bypasses the scheduler: only the name and the resources count
    (as in `selection.candidates`).
    """
    if placement.node_name is not None:
        if node.name != placement.node_name:
            return Rejection("nodeName", placement.node_name)
    else:
        for taint in node.taints:
            if not any(tolerates(t, taint) for t in placement.tolerations):
                return Rejection("taint", _taint(taint))
        for key, value in placement.node_selector:
            if node.labels.get(key) != value:
                return Rejection("nodeSelector", _selector(key, value))
        if placement.terms is not None:
            if not placement.terms:
                return Rejection("nodeAffinity", "that cannot be read (matches nothing)")
            if not any(term_matches(t, node) for t in placement.terms):
                return Rejection(
                    "nodeAffinity", " or ".join(_term(t, node) for t in placement.terms)
                )
    for resource, count in sorted(needs.items()):
        have = node.gpus.get(resource, 0)
        if have < count:
            return Rejection("resource", resource, have)
    return None


def profiles(
    fleet: FleetState, names: Iterable[str], *, now: float, stale_after_seconds: float
) -> Profiles:
    """How many of `names` have a current profile, a stale one, or none (as `decide` judges)."""
    beats, known = fleet.heartbeats, fleet.profiles
    current = stale = missing = 0
    for name in names:
        if name not in known:
            missing += 1
        elif (beat := beats.get(name)) is None or now - beat > stale_after_seconds:
            stale += 1
        else:
            current += 1
    return Profiles(current, stale, missing)


def explain(
    fleet: FleetState,
    placement: Placement,
    needs: Mapping[str, int],
    *,
    now: float | None = None,
    stale_after_seconds: float | None = None,
) -> Explanation:
    """Every node's first rejection, grouped by rule and subject, in the scheduler's order.

    With `now` and `stale_after_seconds`, the remaining nodes' profiles are counted too.
    """
    rejected: dict[tuple[Rule, str], list[tuple[str, int | None]]] = {}
    remaining: list[str] = []
    nodes = fleet.nodes
    if placement.node_name is not None and placement.node_name in nodes:
        # The scheduler is bypassed: only the named node matters, and only its resources.
        names = [placement.node_name]
    else:
        names = sorted(nodes)
    for name in names:
        why = reject(nodes[name], placement, needs)
        if why is None:
            remaining.append(name)
        else:
            rejected.setdefault((why.rule, why.subject), []).append((name, why.offered))
    order = {rule: i for i, rule in enumerate(RULES)}
    groups = [
        Group(
            rule=rule,
            subject=subject,
            nodes=tuple(n for n, _ in members),
            wanted=needs.get(subject) if rule == "resource" else None,
            offered=tuple(sorted({o for _, o in members if o is not None})),
        )
        for (rule, subject), members in rejected.items()
    ]
    groups.sort(key=lambda g: (order[g.rule], -len(g.nodes), g.subject))
    state = None
    if now is not None and stale_after_seconds is not None:
        state = profiles(fleet, remaining, now=now, stale_after_seconds=stale_after_seconds)
    return Explanation(len(nodes), tuple(groups), tuple(remaining), state)
