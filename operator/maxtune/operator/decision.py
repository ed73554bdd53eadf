"""The webhook's rule: which torch.compile settings a pod gets, and where it may land.

Pure: a pod (a JSON object), its namespace and a FleetState in, a Decision out.
The admission server and `maxtune mutate` both call `decide`, so the offline
preview is the webhook.

A pod's settings must hold on every node it can land on. By default (steering
`none`, the built-in policy) the webhook keeps placement and picks, per container,
the mode valid on every candidate node. Only when a policy or the pod itself asks
(`steering: require`, or the pod annotation `maxtune.io/steering: require`) may it
narrow placement, and then only by measured speed and with a capacity guard
(steering.py, decision 0008). A node without a current profile offers nothing
known, so only `default` holds there. A container that sets a TORCHINDUCTOR_*
variable itself has made its own choice: it gets no variable and is never steered.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, Literal

from maxtune.contract.models import AutotunePolicy
from maxtune.contract.modes import INDUCTOR_ENV, Mode, strength, weakest
from maxtune.contract.names import (
    ANNOTATION_DECISION,
    ANNOTATION_STEERING,
    INJECT_POD_OFF,
    INJECT_POD_ON,
    LABEL_INJECT,
)
from maxtune.contract.policy import recipe
from maxtune.operator.cachedir import PASSWORD_VAR, CacheEntry
from maxtune.operator.fleet import Bucket, FleetState, Overlap
from maxtune.operator.gpurequests import ContainerKind, GpuContainer, gpu_containers, pod_needs
from maxtune.operator.records import as_dict, as_list
from maxtune.operator.selection import candidates, read_placement
from maxtune.operator.steering import Ask, judge
from maxtune.operator.wirejson import dumps

PROTECTED_NAMESPACES: Final = frozenset({"kube-system"})


@dataclass(frozen=True, slots=True)
class ContainerPlan:
    kind: ContainerKind
    index: int
    name: str
    mode: Mode | None
    add_env: tuple[Mapping[str, Any], ...]  # EnvVars the container does not set itself
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
    steering: str = "none"  # require or none: what was asked
    asked_by: str = "policy"  # pod (its annotation) or policy
    figures: Mapping[str, Any] | None = None  # the speeds and shares steering judged by
    cache: Mapping[str, Any] | None = None  # the compile cache handed out, or why not

    def annotation(self) -> str:
        """The compact JSON written to maxtune.io/decision; equal inputs give equal text."""
        body: dict[str, Any] = {
            "mode": self.mode.value if self.mode is not None else None,
            "reason": self.reason,
            "policy": self.policy,
            "steering": self.steering if self.asked_by == "policy" else f"{self.steering} (pod)",
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
        if self.figures is not None:
            body["speeds"] = dict(self.figures)
        if self.cache is not None:
            body["compileCache"] = dict(self.cache)
        return dumps(body, sort_keys=True).decode()


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


def steering_of(pod: Mapping[str, Any], policy: AutotunePolicy) -> tuple[str, str]:
    """(steering, who asked): the pod's own annotation wins over its policy."""
    asked = as_dict(as_dict(pod.get("metadata")).get("annotations")).get(ANNOTATION_STEERING)
    if asked in ("require", "none"):
        return str(asked), "pod"
    return policy.spec.steering, "policy"


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
    annotations = as_dict(as_dict(pod.get("metadata")).get("annotations"))
    if ANNOTATION_DECISION in annotations:
        # Decided before (a reinvocation, or a manifest copied from a decided pod): its
        # variables and placement are ours already; deciding again would read our own
        # variables as the user's and our own node affinity as the pod's.
        return Skip("already decided (maxtune.io/decision present)", result="unchanged")
    spec = as_dict(pod.get("spec"))
    containers = gpu_containers(spec)
    if not containers:
        return Skip("no container requests a GPU", result="unchanged")
    policy = fleet.policy_for(namespace)
    steering, asked_by = steering_of(pod, policy)
    placement = read_placement(spec)
    needs = pod_needs(containers)
    names = candidates(fleet, placement, needs)
    plan = functools.partial(
        _plan,
        spec,
        containers,
        policy,
        version=version,
        steering=steering,
        asked_by=asked_by,
        cache=fleet.cache_for(namespace),
    )
    if not names:
        wanted = ", ".join(sorted({r for c in containers for r in c.requests}))
        return plan((), reason=f"no node the pod may land on offers {wanted}")
    buckets, groups = _buckets(names, containers, fleet, policy, now)
    if all(ranks is None for _, _, ranks in buckets):
        return plan((), reason="no node the pod may land on has a current profile")
    if placement.node_name is not None:
        return plan(buckets, reason="spec.nodeName fixes the node: that node's settings")
    steered = [i for i, c in enumerate(containers) if not _user_chose(spec, c)]
    if steering == "none":
        reason = "steering none: the mode that holds on every node the pod may land on"
    elif not steered:
        reason = "every GPU container sets TORCHINDUCTOR_* itself: not steered"
    else:
        ask = Ask(fleet, policy, containers, steered, needs)
        judgement = judge(ask, groups, names)
        figures = judgement.figures(policy.spec.speed_tolerance, policy.spec.min_capacity_share)
        if judgement.chosen is not None:
            return plan(
                judgement.chosen.targets,
                reason=judgement.reason,
                steered=True,
                classes=judgement.chosen.classes,
                expressions=judgement.chosen.expressions,
                figures=figures,
            )
        reason = judgement.reason
        if any(ranks is None for _, _, ranks in buckets):
            reason += "; some of them have no current profile, where only default holds"
        classes = tuple(sorted({cls for cls, _, _ in buckets if cls}))
        return plan(buckets, reason=reason, classes=classes, figures=figures)
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
) -> Overlap:
    """The candidates, reduced to the few kinds of node that matter for the decision.

    FleetState keeps every node's bucket, grouped, up to date as nodes and
    profiles change; here each group only needs to be tested for overlap with
    the candidates, so an admission costs a handful of set operations at 2,000
    nodes, and none for the next pod of the same shape while no node changes
    bucket. A stale profile counts as unknown (ranks None), as it always did.
    Also returns each bucket's candidate members, for steering (which counts GPUs).
    """
    wanted = tuple(tuple(c.requests) for c in containers)
    stale = fleet.stale_profiles(now - policy.spec.stale_after_seconds)
    if isinstance(names, frozenset):
        question = (names, stale)
        return fleet.overlap(
            policy, wanted, question, lambda groups: _overlap(groups, names, stale)
        )
    return _overlap(fleet.node_groups(policy, wanted), names, stale)


def _overlap(
    groups: Mapping[Bucket, AbstractSet[str]], names: AbstractSet[str], stale: AbstractSet[str]
) -> Overlap:
    found: set[Bucket] = set()
    members_of: dict[Bucket, AbstractSet[str]] = {}
    for bucket, members in groups.items():
        if members.isdisjoint(names):
            continue
        hit = frozenset(members if members <= names else members & names)
        if bucket[2] is None or not stale:
            _join(found, members_of, bucket, hit)
            continue
        fresh = hit - stale
        if fresh:
            _join(found, members_of, bucket, fresh)
        if len(fresh) < len(hit):
            _join(found, members_of, (bucket[0], bucket[1], None), hit - fresh)
    return frozenset(found), MappingProxyType(members_of)


def _join(
    found: set[Bucket],
    members_of: dict[Bucket, AbstractSet[str]],
    bucket: Bucket,
    names: AbstractSet[str],
) -> None:
    """A stale node joins the unknown bucket of its labels, which may exist already."""
    found.add(bucket)
    before = members_of.get(bucket)
    members_of[bucket] = names if before is None else before | names


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


USER_CHOSE: Final = "sets TORCHINDUCTOR_* itself: its own choice (no variable added, not steered)"


def _user_chose(spec: Mapping[str, Any], container: GpuContainer) -> bool:
    """The container sets a TORCHINDUCTOR_* variable itself (value or valueFrom)."""
    raw = as_dict(as_list(spec.get(container.kind))[container.index])
    return any(name.startswith("TORCHINDUCTOR_") for name in _env_names(raw))


def _plan(
    spec: Mapping[str, Any],
    containers: Sequence[GpuContainer],
    policy: AutotunePolicy,
    buckets: Iterable[Bucket],
    *,
    version: str,
    reason: str,
    steering: str,
    asked_by: str,
    steered: bool = False,
    classes: tuple[str, ...] = (),
    expressions: tuple[Mapping[str, Any], ...] = (),
    figures: Mapping[str, Any] | None = None,
    cache: CacheEntry | None = None,
) -> Decision:
    """Per GPU container: the weakest mode over the buckets' nodes, and the variables to add."""
    plans: list[ContainerPlan] = []
    user_set: set[str] = set()
    buckets = list(buckets)
    rank_sets = [ranks for _, _, ranks in buckets]
    handed, cache_note = _cache_rule(cache, policy, buckets)
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
        if any(name.startswith("TORCHINDUCTOR_") for name in own):
            untouched = USER_CHOSE
            c_mode = None
        elif as_list(raw.get("envFrom")):
            untouched = "envFrom: variables from ConfigMaps/Secrets cannot be seen at admission"
        elif raw.get("env") is not None and not isinstance(raw.get("env"), list):
            untouched = "env is not a list"
        add: tuple[Mapping[str, Any], ...] = ()
        if not untouched:
            add = tuple({"name": k, "value": v} for k, v in wanted.items() if k not in own)
            if handed is not None and c_mode is not None and PASSWORD_VAR not in own:
                add += handed.env()
        plans.append(ContainerPlan(c.kind, c.index, c.name, c_mode, add, untouched))
    known = [p.mode for p in plans if p.mode is not None]
    if handed is not None:
        given = any(any(e.get("name") == PASSWORD_VAR for e in p.add_env) for p in plans)
        cache_note = (
            {"group": handed.group, "readOnly": handed.read_only}
            if given
            else {"off": "no GPU container takes settings from maxtune"}
        )
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
        steering=steering,
        asked_by=asked_by,
        figures=figures,
        cache=cache_note,
    )


def _cache_rule(
    cache: CacheEntry | None, policy: AutotunePolicy, buckets: Sequence[Bucket]
) -> tuple[CacheEntry | None, Mapping[str, Any] | None]:
    """The cache to hand out (the namespace's, where the policy allows it), and the note for
    the decision: silent where the namespace has none."""
    if cache is None:
        return None, None
    rule = policy.spec.compile_cache
    if not rule.enabled:
        return None, {"off": f"policy {policy.metadata.name} turns the compile cache off"}
    if rule.classes:
        classes = {cls for cls, _, _ in buckets}
        outside = sorted(str(c) for c in classes - set(rule.classes))
        if outside or not classes:
            return None, {"off": f"not for every candidate class: {', '.join(outside) or '-'}"}
    return cache, None
