"""Fake GPU nodes for a simulated fleet: what kwok serves, what the device plugin would advertise.

The fleet file (`maxtune agent --simulate`, maxtune/agent/fleetfile.py) says which GPUs each node
has; the agent reads it for its node. The nodes themselves are made here so both agree: capacity
as the NVIDIA device plugin advertises it (`nvidia.com/gpu` for whole GPUs, `nvidia.com/mig-<p>`
per MIG profile, mixed strategy), the presence labels GPU Feature Discovery would set (so the
agent DaemonSet's affinity selects them), and a `demo.maxtune.io/fleet` label that marks them as
ours to delete. That label is outside the `maxtune.io/` prefix: the operator and the uninstall
cleanup own every label under it, and must not touch this one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from maxtune.agent.fleetfile import Fleet, SimulatedGpu, load
from maxtune.contract.names import GROUP, PROFILE_PLURAL, RESOURCE_GPU, VERSION, mig_resource
from maxtune_dev.localplane import kwok_node_model, wait_for
from maxtune_dev.localrun import kapi

FLEET_LABEL = "demo.maxtune.io/fleet"
GPU_PRESENT = "nvidia.com/gpu.present"


class FleetNodeError(RuntimeError):
    """The fleet's nodes could not be made (a name is taken by a node that is not ours)."""


@dataclass(frozen=True, slots=True)
class FakeNode:
    name: str
    capacity: dict[str, int]
    labels: dict[str, str]
    gpus: tuple[SimulatedGpu, ...]

    @property
    def has_gpus(self) -> bool:
        return bool(self.gpus)


def gpu_capacity(gpus: Iterable[SimulatedGpu]) -> dict[str, int]:
    """What the device plugin advertises: whole GPUs, and each MIG slice by its profile."""
    counts: Counter[str] = Counter()
    for gpu in gpus:
        if gpu.device.mig_enabled:
            for instance in gpu.device.mig:
                counts[mig_resource(instance.profile)] += 1
        else:
            counts[RESOURCE_GPU] += 1
    return dict(sorted(counts.items()))


def fake_nodes(fleet: Fleet, *, cpu_nodes: int = 1) -> list[FakeNode]:
    """One node per fleet node, plus GPU-less nodes for the operator and the hook Jobs."""
    mark = {FLEET_LABEL: fleet.spec.name}
    found = []
    for name, gpus in sorted(fleet.nodes.items()):
        labels = {**mark, GPU_PRESENT: "true", "nvidia.com/gpu.count": str(len(gpus))}
        if gpus:  # GFD's product label: spaces become dashes (one product per node: the first)
            labels["nvidia.com/gpu.product"] = gpus[0].device.product.replace(" ", "-")
        found.append(FakeNode(name, gpu_capacity(gpus), labels, gpus))
    found += [FakeNode(f"cpu-{i}", {}, dict(mark), ()) for i in range(cpu_nodes)]
    return found


def load_fleet(path: Path) -> Fleet:
    return load(path)


def _owned_by(node: Any, fleet_name: str) -> bool:
    return bool((node.metadata.labels or {}).get(FLEET_LABEL) == fleet_name)


def create_node(api: ApiClient, node: FakeNode, fleet_name: str) -> None:
    """Create the node; a leftover of an earlier run of this fleet is replaced, others refused."""
    core = kapi("CoreV1Api", api)
    try:
        existing = core.read_node(node.name)
    except ApiException as exc:
        if exc.status != 404:
            raise
    else:
        if not _owned_by(existing, fleet_name):
            raise FleetNodeError(
                f"node {node.name} already exists and is not a fake node of fleet "
                f"{fleet_name!r}: the demo will not touch it (use another cluster)"
            )
        delete_nodes(api, [node.name])
    core.create_node(kwok_node_model(node.name, capacity=node.capacity, labels=node.labels))


def wait_ready(api: ApiClient, names: Sequence[str], timeout_s: float = 90.0) -> None:
    """Until kwok has made every node Ready and the node controller lifted its not-ready taint."""
    core = kapi("CoreV1Api", api)

    def all_ready() -> bool:
        listed = {n.metadata.name: n for n in core.list_node().items}
        return all(n in listed and _ready(listed[n]) for n in names)

    wait_for(
        all_ready,
        timeout_s=timeout_s,
        interval_s=0.5,
        what=f"{len(names)} fake nodes Ready (is kwok managing nodes with "
        "kwok.x-k8s.io/node=fake in this cluster?)",
    )


def _ready(node: Any) -> bool:
    conditions = (node.status.conditions or []) if node.status else []
    ready = any(c.type == "Ready" and c.status == "True" for c in conditions)
    tainted = any(t.key == "node.kubernetes.io/not-ready" for t in (node.spec.taints or []))
    return ready and not tainted


def delete_nodes(api: ApiClient, names: Iterable[str]) -> None:
    core = kapi("CoreV1Api", api)
    for name in names:
        try:
            core.delete_node(name)
        except ApiException as exc:
            if exc.status != 404:
                raise


def delete_profiles(api: ApiClient, names: Iterable[str]) -> None:
    """The fleet's GPUNodeProfiles (the CRDs outlive a helm uninstall, and so would they)."""
    custom = kapi("CustomObjectsApi", api)
    for name in names:
        try:
            custom.delete_cluster_custom_object(GROUP, VERSION, PROFILE_PLURAL, name)
        except ApiException as exc:
            if exc.status != 404:
                raise
