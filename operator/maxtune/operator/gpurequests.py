"""What a pod asks of the GPUs: per container, whole GPUs or MIG slices, and how many.

Only containers that request a GPU resource get settings. Init containers
count (a GPU init step compiles too); ephemeral containers never do (they are
added through a subresource and never carry resources). The pod-level need is
what the scheduler's resource fit uses: the larger of the regular containers
plus sidecars summed and the biggest single init container.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from maxtune.contract.names import is_gpu_resource
from maxtune.operator.quantity import parse_count
from maxtune.operator.records import as_dict, as_list

ContainerKind = Literal["containers", "initContainers"]
KINDS: Final[tuple[ContainerKind, ...]] = ("initContainers", "containers")


@dataclass(frozen=True, slots=True)
class GpuContainer:
    kind: ContainerKind
    index: int
    name: str
    requests: Mapping[str, int]  # GPU resource -> count (unparseable quantities count as 1)
    sidecar: bool  # an init container with restartPolicy Always runs beside the others


def container_gpu_requests(container: Mapping[str, Any]) -> dict[str, int]:
    resources = as_dict(container.get("resources"))
    limits, requests = as_dict(resources.get("limits")), as_dict(resources.get("requests"))
    found: dict[str, int] = {}
    for name in {*limits, *requests}:
        if not isinstance(name, str) or not is_gpu_resource(name):
            continue
        counts = [parse_count(q) for q in (limits.get(name), requests.get(name)) if q is not None]
        # A quantity the API server will reject still names the resource: read it as one.
        count = max((c if c is not None else 1) for c in counts) if counts else 0
        if count > 0:
            found[name] = count
    return found


def gpu_containers(spec: Mapping[str, Any]) -> list[GpuContainer]:
    found = []
    for kind in KINDS:
        for index, raw in enumerate(as_list(spec.get(kind))):
            container = as_dict(raw)
            requests = container_gpu_requests(container)
            if not requests:
                continue
            name = container.get("name")
            found.append(
                GpuContainer(
                    kind=kind,
                    index=index,
                    name=name if isinstance(name, str) and name else f"{kind}[{index}]",
                    requests=requests,
                    sidecar=kind == "initContainers" and container.get("restartPolicy") == "Always",
                )
            )
    return found


def pod_needs(containers: list[GpuContainer]) -> dict[str, int]:
    """Per resource: max(sum over regular containers and sidecars, max over plain init ones)."""
    running: dict[str, int] = {}
    init_peak: dict[str, int] = {}
    for c in containers:
        for resource, count in c.requests.items():
            if c.kind == "containers" or c.sidecar:
                running[resource] = running.get(resource, 0) + count
            else:
                init_peak[resource] = max(init_peak.get(resource, 0), count)
    return {r: max(running.get(r, 0), init_peak.get(r, 0)) for r in {*running, *init_peak}}
