"""`maxtune status`'s compile-cache table: per GPU class and sharing group, does it work.

From the agents' proofs in current profiles (`status.compileCache`: each agent compiled its
reference block twice through each group's cache, decision 0030): on how many of the class's
nodes the second, fresh process was served by the cache, and what that saved a pod's start
(medians over those nodes: cold compile, warm compile, cold - warm). Where it failed, the
reasons and how many nodes gave each, so "AuthRefused on 3 nodes" points at the agent Secret
and "Unreachable" at the NetworkPolicy or the server. Stale profiles are left out, as in the
speed table.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from maxtune.contract.models import CompileCacheProof
from maxtune.operator.fleet import FleetState


@dataclass(frozen=True, slots=True)
class ClassCache:
    """One GPU class's view of one group's cache."""

    gpu_class: str
    group: str
    nodes: int  # nodes of the class that proved this group
    working: int  # of them, where the warm compile hit
    mode: str
    cold_seconds: float | None  # medians over the working nodes
    warm_seconds: float | None
    saved_seconds: float | None
    problems: dict[str, int] = field(default_factory=dict)  # reason -> nodes

    @property
    def works(self) -> str:
        if self.working == self.nodes:
            return "yes"
        return "no" if self.working == 0 else "partly"

    def wire(self) -> dict[str, Any]:
        return {
            "gpuClass": self.gpu_class,
            "group": self.group,
            "nodes": self.nodes,
            "working": self.working,
            "works": self.works,
            "mode": self.mode,
            "coldSeconds": self.cold_seconds,
            "warmSeconds": self.warm_seconds,
            "savedSecondsPerStart": self.saved_seconds,
            "problems": self.problems,
        }


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def _problems(items: list[CompileCacheProof]) -> dict[str, int]:
    return dict(sorted(Counter(p.reason or "Unknown" for p in items if not p.works).items()))


def class_caches(fleet: FleetState, now: float) -> list[ClassCache]:
    """Per (GPU class, group) among the nodes with a current profile."""
    proofs: dict[tuple[str, str], list[CompileCacheProof]] = {}
    for name, record in sorted(fleet.profiles.items()):
        status = record.status
        if status is None or fleet.is_stale(name, now):
            continue
        for proof in status.compile_cache:
            key = (proof.gpu_class or "unknown", proof.group)
            proofs.setdefault(key, []).append(proof)
    found = []
    for (gpu_class, group), items in sorted(proofs.items()):
        good = [p for p in items if p.works]
        modes = Counter(p.mode for p in items)
        found.append(
            ClassCache(
                gpu_class=gpu_class,
                group=group,
                nodes=len(items),
                working=len(good),
                mode=modes.most_common(1)[0][0] if len(modes) == 1 else "mixed",
                cold_seconds=_median([p.cold_seconds for p in good]),
                warm_seconds=_median([p.warm_seconds for p in good]),
                saved_seconds=_median([p.saved_seconds for p in good]),
                problems=_problems(items),
            )
        )
    return found


HEADER = ("GPU CLASS", "CACHE GROUP", "WORKS", "NODES", "COLD", "WARM", "SAVES/START", "PROBLEMS")
RIGHT = {"NODES", "COLD", "WARM", "SAVES/START"}
LEGEND = (
    "Compile cache, from each agent's proof: its reference block compiled in a fresh process, "
    "then again in another served only by the group's cache; WORKS yes when the second hit "
    "(torch's counters) on every node; times are medians over the nodes where it did."
)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"


def table(rows: list[ClassCache]) -> str:
    cells = [
        (
            r.gpu_class,
            r.group,
            r.works,
            f"{r.working}/{r.nodes}",
            _seconds(r.cold_seconds),
            _seconds(r.warm_seconds),
            _seconds(r.saved_seconds),
            ", ".join(f"{reason} on {n}" for reason, n in r.problems.items()) or "-",
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in (HEADER, *cells)) for i in range(len(HEADER))]
    right = [h in RIGHT for h in HEADER]

    def line(row: tuple[str, ...]) -> str:
        return "  ".join(
            v.rjust(w) if r else v.ljust(w) for v, w, r in zip(row, widths, right, strict=True)
        ).rstrip()

    return "\n".join([line(HEADER), *(line(c) for c in cells), "", LEGEND])
