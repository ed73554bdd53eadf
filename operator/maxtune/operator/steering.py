"""When a pod asks to be steered: which GPU classes to confine it to, judged by measured speed.

Narrowing placement serves the pod's speed, never mode strength for its own sake (design.md,
decision 0008). Every node measures the same training reference block, so step times compare
across classes. A pod may be confined to a set of classes where a stronger mode holds only if

- every class in the set runs the reference, in that mode, within `speedTolerance` of the
  fastest candidate class (each class judged with its own recommended settings), and
- the set holds at least `minCapacityShare` of the GPUs the pod could have used (allocatable
  of the resources it asks for, over every candidate node, nodes without a profile included).

Otherwise the pod is not narrowed. Only nodes with a current profile can be targets; only
`maxtune.io/` labels express the targets, so nodes added later to a class qualify without a
new decision. The figures (per class: mode, step time, share of the candidate GPUs) go into
the decision annotation.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any, Final

from maxtune.contract.models import AutotunePolicy
from maxtune.contract.modes import Mode
from maxtune.contract.names import LABEL_CLASS, LABEL_MODE
from maxtune.operator.fleet import Bucket, FleetState
from maxtune.operator.gpurequests import GpuContainer

MODES: Final = tuple(Mode)  # by rank: weakest first
MAX_CLASSES_SHOWN: Final = 12


@dataclass(frozen=True, slots=True)
class ClassFigures:
    """One candidate GPU class, over the pool's nodes of it that have a current profile."""

    name: str
    rank: int  # the strongest pod-level mode rank that holds on every one of those nodes
    steps: Mapping[int, float]  # mode rank -> median step seconds of the reference there
    gpus: int  # candidate GPUs of the class (the resources the pod asks for)

    def step(self, rank: int | None = None) -> float | None:
        return self.steps.get(self.rank if rank is None else rank)


@dataclass(frozen=True, slots=True)
class Steer:
    rank: int
    classes: tuple[str, ...]
    expressions: tuple[Mapping[str, Any], ...]
    targets: tuple[Bucket, ...]


@dataclass(frozen=True, slots=True)
class Judgement:
    """What the steering looked at, and what it chose (None: no narrowing, and why)."""

    chosen: Steer | None
    reason: str
    table: Mapping[str, ClassFigures]
    fastest: float | None
    total_gpus: int

    def figures(self, tolerance: float, min_share: float) -> dict[str, Any]:
        """The numbers for the decision annotation, compact: per class [mode, step ms, share]."""
        shown = sorted(self.table.values(), key=lambda f: (-f.gpus, f.name))[:MAX_CLASSES_SHOWN]
        total = max(1, self.total_gpus)
        return {
            "classes": {
                f.name: [
                    MODES[f.rank].value,
                    round(step * 1e3, 3) if (step := f.step()) is not None else None,
                    round(f.gpus / total, 3),
                ]
                for f in shown
            },
            "fastestMs": round(self.fastest * 1e3, 3) if self.fastest is not None else None,
            "speedTolerance": tolerance,
            "minCapacityShare": min_share,
        }


@dataclass(frozen=True, slots=True)
class Ask:
    """The pod, as steering sees it: what it asks for, under which policy, in which fleet."""

    fleet: FleetState
    policy: AutotunePolicy
    containers: Sequence[GpuContainer]
    steered: Sequence[int]  # the containers that did not choose their own settings
    needs: Mapping[str, int]  # the pod's GPU resources and counts

    def step(self, node: str, rank: int) -> float | None:
        """The pod's reference step on `node` in mode `rank`: its slowest steered container's."""
        speeds = self.fleet.speeds(node, self.policy)
        worst = 0.0
        for index in self.steered:
            for resource in self.containers[index].requests:
                step = speeds.get(resource, {}).get(rank)
                if step is None:
                    return None
                worst = max(worst, step)
        return worst if self.steered else None

    def gpus(self, node: str) -> int:
        record = self.fleet.nodes.get(node)
        return sum(record.gpus.get(r, 0) for r in self.needs) if record is not None else 0

    def rank(self, ranks: tuple[int, ...]) -> int:
        """The pod's mode rank on nodes with these per-container ranks: its weakest container's."""
        return min(ranks[i] for i in self.steered)


def class_table(
    ask: Ask, pool: Iterable[tuple[Bucket, AbstractSet[str]]]
) -> dict[str, ClassFigures]:
    """Per class label: the mode that holds on all of its nodes in `pool`, and median steps."""
    ranks: dict[str, int] = {}
    nodes: dict[str, list[str]] = {}
    for (cls, _, bucket_ranks), members in pool:
        if cls is None or bucket_ranks is None:
            continue
        rank = ask.rank(bucket_ranks)
        ranks[cls] = min(rank, ranks.get(cls, rank))
        nodes.setdefault(cls, []).extend(members)
    table: dict[str, ClassFigures] = {}
    for cls, names in nodes.items():
        steps: dict[int, float] = {}
        for rank in range(ranks[cls] + 1):
            found = [s for n in names if (s := ask.step(n, rank)) is not None]
            if found:
                steps[rank] = statistics.median(found)
        table[cls] = ClassFigures(cls, ranks[cls], steps, sum(ask.gpus(n) for n in names))
    return table


def _in(key: str, values: Sequence[str]) -> Mapping[str, Any]:
    return {"key": key, "operator": "In", "values": list(values)}


def judge(
    ask: Ask, groups: Mapping[Bucket, AbstractSet[str]], candidates: AbstractSet[str]
) -> Judgement:
    """The strongest mode whose classes pass the speed and capacity guards, if any."""
    spec = ask.policy.spec
    total = sum(ask.gpus(n) for n in candidates)
    everything = list(groups.items())
    table = class_table(ask, everything)
    own = [s for f in table.values() if (s := f.step()) is not None]
    fastest = min(own) if own else None
    offered = sorted({ask.rank(b[2]) for b in groups if b[2] is not None}, reverse=True)
    refusals: list[str] = []
    for rank in offered:
        if rank == 0:
            break
        mode = MODES[rank].value
        labelled = [(b, m) for b, m in everything if b[1] == mode]
        for pool, extra in ((everything, ()), (labelled, (_in(LABEL_MODE, (mode,)),))):
            figures = table if not extra else class_table(ask, pool)
            holding = [f for f in figures.values() if f.rank >= rank]
            if not holding:
                continue
            fast = [
                f
                for f in holding
                if (step := f.step(rank)) is not None
                and fastest is not None
                and step <= fastest * (1 + spec.speed_tolerance)
            ]
            if not fast:
                refusals.append(
                    f"{mode}: its classes are slower than the fastest candidate class "
                    f"beyond {spec.speed_tolerance:.0%}"
                )
                break
            share = sum(f.gpus for f in fast) / max(1, total)
            if share < spec.min_capacity_share:
                refusals.append(
                    f"{mode}: its fast classes hold {share:.0%} of the candidate GPUs, "
                    f"< {spec.min_capacity_share:.0%}"
                )
                continue
            names = tuple(sorted(f.name for f in fast))
            targets = tuple(
                b for b, _ in pool if b[0] in names and b[2] is not None and ask.rank(b[2]) >= rank
            )
            reason = (
                f"steered by measured speed to {len(names)} class(es) where {mode} holds "
                f"({share:.0%} of the candidate GPUs, within {spec.speed_tolerance:.0%} of "
                "the fastest class)"
            )
            steer = Steer(rank, names, (_in(LABEL_CLASS, names), *extra), targets)
            return Judgement(steer, reason, table, fastest, total)
    if not offered or max(offered) == 0:
        why = "default is the strongest mode on the nodes the pod may land on"
    elif refusals:
        why = "not narrowed: " + "; ".join(dict.fromkeys(refusals))
    else:
        why = (
            "not narrowed: no maxtune.io/ node labels confine the pod to where a stronger "
            "mode holds (yet)"
        )
    return Judgement(None, why, table, fastest, total)
