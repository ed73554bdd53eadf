"""The webhook's rule: which torch.compile settings a pod gets, and where it may land.

Pure: a pod (a JSON object), its namespace and a FleetState in, a Decision out.
The admission server and `maxtune mutate` both call `decide`, so the offline
preview is the webhook.

A pod's settings must hold on every node it can land on. With steering
`require` the webhook picks the strongest mode some candidate nodes offer and
narrows placement to them through their `maxtune.io/` labels (so the scheduler
enforces it); with `none` it keeps placement and picks the mode valid on every
candidate. A node without a current profile offers nothing known, so only
`default` holds there.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any, Final, Literal

from maxtune.contract.models import AutotunePolicy
from maxtune.contract.modes import INDUCTOR_ENV, Mode, strength, weakest
from maxtune.contract.names import (
    INJECT_POD_OFF,
    INJECT_POD_ON,
    LABEL_CLASS,
    LABEL_INJECT,
    LABEL_MODE,
)
from maxtune.contract.policy import recipe
from maxtune.operator.fleet import Bucket, FleetState, Ranks
from maxtune.operator.gpurequests import ContainerKind, GpuContainer, gpu_containers, pod_needs
from maxtune.operator.records import as_dict, as_list
from maxtune.operator.selection import candidates, read_placement

PROTECTED_NAMESPACES: Final = frozenset({"kube-system"})


@dataclass(frozen=True, slots=True)
class ContainerPlan:
    kind: ContainerKind
    index: int
    name: str
    mode: Mode | None
    add_env: tuple[tuple[str, str], ...]  # only variables the container does not set itself
    untouched: str | None = None  # why no variable is added at all (envFrom, malformed env)


@dataclass(frozen=True, slots=True)
class Decision:
    mode: Mode | None  # None: nothing known about the nodes, nothing set
    reason: str
    policy: str
    version: str
    steered: bool = False
    classes: tuple[str, ...] = ()
    expressions: tuple[Mapping[str, Any], ...] = ()  # ANDed into every nodeSelectorTerm
    containers: tuple[ContainerPlan, ...] = ()
    user_set: tuple[str, ...] = ()  # TORCHINDUCTOR_* the user set to other values than ours

    def annotation(self) -> str:
        """The compact JSON written to maxtune.io/decision; equal inputs give equal text."""
        body: dict[str, Any] = {
            "mode": self.mode.value if self.mode is not None else None,
            "reason": self.reason,
            "policy": self.policy,
            "steered": self.steered,
            "classes": list(self.classes),
            "containers": {
                c.name: c.mode.value if c.mode is not None else None for c in self.containers
            },
            "version": self.version,
        }
        untouched = {c.name: c.untouched for c in self.containers if c.untouched}
        if untouched:
            body["untouched"] = untouched
        if self.user_set:
            body["userSet"] = list(self.user_set)
        return json.dumps(body, separators=(",", ":"), sort_keys=True)


@dataclass(frozen=True, slots=True)
class Skip:
    """The pod is not maxtune's to change: no patch, no annotation."""

    reason: str
    result: Literal["skipped", "unchanged"] = "skipped"


def opt_in(
    pod: Mapping[str, Any], namespace: str, fleet: FleetState, own_namespace: str | None
) -> Skip | None:
    """None when the pod is opted in; else why it is left alone."""
    if namespace in PROTECTED_NAMESPACES or (own_namespace and namespace == own_namespace):
        return Skip(f"namespace {namespace} is never mutated")
    label = as_dict(as_dict(pod.get("metadata")).get("labels")).get(LABEL_INJECT)
    if label == INJECT_POD_OFF:
        return Skip("pod opted out")
    if label == INJECT_POD_ON or fleet.namespace_opted_in(namespace):
        return None
    return Skip("not opted in")


def decide(
    pod: Mapping[str, Any],
    *,
    namespace: str,
    fleet: FleetState,
    own_namespace: str | None,
    now: float,
    version: str,
) -> Decision | Skip:
    skip = opt_in(pod, namespace, fleet, own_namespace)
    if skip is not None:
        return skip
    spec = as_dict(pod.get("spec"))
    containers = gpu_containers(spec)
    if not containers:
        return Skip("no container requests a GPU", result="unchanged")
    policy = fleet.policy_for(namespace)
    placement = read_placement(spec)
    names = candidates(fleet, placement, pod_needs(containers))
    plan = functools.partial(_plan, spec, containers, policy, version=version)
    if not names:
        wanted = ", ".join(sorted({r for c in containers for r in c.requests}))
        return plan((), reason=f"no node the pod may land on offers {wanted}")
    buckets = _buckets(names, containers, fleet, policy, now)
    if all(ranks is None for _, _, ranks in buckets):
        return plan((), reason="no node the pod may land on has a current profile")
    if placement.node_name is not None:
        return plan(buckets, reason="spec.nodeName fixes the node: that node's settings")
    if policy.spec.steering == "none":
        reason = "steering none: the mode that holds on every node the pod may land on"
    else:
        steer = _steer(buckets)
        if isinstance(steer, Steer):
            return plan(
                steer.targets,
                reason="placement narrowed to the GPU classes where the strongest mode holds",
                steered=True,
                classes=steer.classes,
                expressions=steer.expressions,
            )
        reason = steer
    if any(ranks is None for _, _, ranks in buckets):
        reason += "; some of them have no current profile, where only default holds"
    classes = tuple(sorted({cls for cls, _, _ in buckets if cls}))
    return plan(buckets, reason=reason, classes=classes)


# ---------------------------------------------------------------- modes per node

# Modes as ranks (weakest = 0), so that the per-node work is integer comparisons.
_MODES: Final = tuple(Mode)
_RANK: Final = {mode: i for i, mode in enumerate(_MODES)}
assert all(_RANK[m] == strength(m) for m in _MODES)


def _buckets(
    names: AbstractSet[str],
    containers: Sequence[GpuContainer],
    fleet: FleetState,
    policy: AutotunePolicy,
    now: float,
) -> set[Bucket]:
    """The candidates, reduced to the few kinds of node that matter for the decision.

    FleetState keeps every node's bucket, grouped, up to date as nodes and
    profiles change; here each group only needs to be tested for overlap with
    the candidates, so an admission costs a handful of set operations at 2,000
    nodes. A stale profile counts as unknown (ranks None), as it always did.
    """
    wanted = tuple(tuple(c.requests) for c in containers)
    groups = fleet.node_groups(policy, wanted)
    stale = fleet.stale_profiles(now - policy.spec.stale_after_seconds)
    found: set[Bucket] = set()
    for bucket, members in groups.items():
        if members.isdisjoint(names):
            continue
        if bucket[2] is None or not stale:
            found.add(bucket)
            continue
        hit = members & names
        fresh = hit - stale
        if fresh:
            found.add(bucket)
        if len(fresh) < len(hit):
            found.add((bucket[0], bucket[1], None))
    return found


def _pod_rank(ranks: Ranks) -> int | None:
    return min(ranks) if ranks is not None else None


@dataclass(frozen=True, slots=True)
class Steer:
    targets: list[Bucket]
    expressions: tuple[Mapping[str, Any], ...]
    classes: tuple[str, ...]


def _pure_classes(pool: Iterable[Bucket], target: int) -> tuple[str, ...]:
    """Classes (by node label) offering `target` whose every node in `pool` holds it."""
    offered: set[str] = set()
    broken: set[str | None] = set()
    for cls, _, ranks in pool:
        rank = _pod_rank(ranks)
        if cls and rank == target:
            offered.add(cls)
        if rank is None or rank < target:
            broken.add(cls)
    return tuple(sorted(offered - broken))


def _steer(buckets: set[Bucket]) -> Steer | str:
    """The strongest non-default mode that node labels can confine the pod to, or why none.

    By class first; where a class mixes nodes that hold the mode with nodes
    that do not (a namespace policy stricter than the cluster's, a node whose
    measurement differs), by class and recommended-mode label together.
    """
    offered = {r for r in (_pod_rank(ranks) for _, _, ranks in buckets) if r is not None}
    for target in sorted(offered, reverse=True):
        if target == 0:
            break
        good = _pure_classes(buckets, target)
        if good:
            return Steer([b for b in buckets if b[0] in good], (_in(LABEL_CLASS, good),), good)
        mode = _MODES[target].value
        labelled = [b for b in buckets if b[1] == mode]
        good = _pure_classes(labelled, target)
        if good:
            targets = [b for b in labelled if b[0] in good]
            return Steer(targets, (_in(LABEL_CLASS, good), _in(LABEL_MODE, (mode,))), good)
    if max(offered) == 0:
        return "default is the strongest mode on the nodes the pod may land on"
    return (
        "no maxtune.io/ node labels confine the pod to where a stronger mode holds (yet): "
        "the mode that holds on every node it may land on"
    )


def _in(key: str, values: Sequence[str]) -> Mapping[str, Any]:
    return {"key": key, "operator": "In", "values": list(values)}


# ---------------------------------------------------------------- per container


def _env_names(container: Mapping[str, Any]) -> dict[str, str | None]:
    """Names the container sets explicitly, with their literal value (None: valueFrom)."""
    found: dict[str, str | None] = {}
    for item in as_list(container.get("env")):
        entry = as_dict(item)
        name = entry.get("name")
        if isinstance(name, str):
            value = entry.get("value")
            found[name] = value if isinstance(value, str) and "valueFrom" not in entry else None
    return found


def _plan(
    spec: Mapping[str, Any],
    containers: Sequence[GpuContainer],
    policy: AutotunePolicy,
    buckets: Iterable[Bucket],
    *,
    version: str,
    reason: str,
    steered: bool = False,
    classes: tuple[str, ...] = (),
    expressions: tuple[Mapping[str, Any], ...] = (),
) -> Decision:
    """Per GPU container: the weakest mode over the buckets' nodes, and the variables to add."""
    plans: list[ContainerPlan] = []
    user_set: set[str] = set()
    rank_sets = [ranks for _, _, ranks in buckets]
    for i, c in enumerate(containers):
        c_mode: Mode | None = None
        if rank_sets:
            # Unknown nodes count as default: the only settings known to hold there.
            c_mode = _MODES[min(r[i] if r is not None else 0 for r in rank_sets)]
        raw = as_dict(as_list(spec.get(c.kind))[c.index])
        own = _env_names(raw)
        wanted = recipe(policy.spec, c_mode) if c_mode is not None else {}
        user_set |= {
            name
            for name, value in own.items()
            if (name in INDUCTOR_ENV or name in wanted) and wanted.get(name) != value
        }
        untouched = None
        if as_list(raw.get("envFrom")):
            untouched = "envFrom: variables from ConfigMaps/Secrets cannot be seen at admission"
        elif raw.get("env") is not None and not isinstance(raw.get("env"), list):
            untouched = "env is not a list"
        add = () if untouched else tuple((k, v) for k, v in wanted.items() if k not in own)
        plans.append(ContainerPlan(c.kind, c.index, c.name, c_mode, add, untouched))
    known = [p.mode for p in plans if p.mode is not None]
    return Decision(
        mode=weakest(known) if known else None,
        reason=reason,
        policy=policy.metadata.name,
        version=version,
        steered=steered,
        classes=classes,
        expressions=expressions,
        containers=tuple(plans),
        user_set=tuple(sorted(user_set)),
    )
