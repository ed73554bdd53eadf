"""What the NVIDIA device plugin schedules on a node, by its MIG strategy.

The k8s-device-plugin and GPU Feature Discovery share one setting, MIG_STRATEGY
(`--mig-strategy`: none, single, mixed), and so does the agent (the chart sets the
same value for all three). What each means, as the plugin's device map and GFD's
labeller implement it (NVIDIA/k8s-device-plugin, internal/rm/device_map.go and
internal/lm/mig-strategy.go):

- none: MIG is ignored; every GPU, MIG mode or not, is one `nvidia.com/gpu` (a GPU
  in MIG mode gives a pod no CUDA device it can use, so it is never capable).
- mixed: GPUs without MIG are `nvidia.com/gpu`; each MIG slice is
  `nvidia.com/mig-<profile>`.
- single: each MIG slice is an `nvidia.com/gpu` (GFD labels the node
  `nvidia.com/mig.strategy=single`, `gpu.product=<product>-MIG-<profile>`, `gpu.count`
  = slices, `gpu.multiprocessors` = the slice's SMs). It needs every GPU on the node in
  MIG mode with at least one slice and every slice of one profile; a node with no GPU in
  MIG mode is scheduled as under none. Any other layout is invalid: the plugin refuses
  to start and GFD labels the product `...-MIG-INVALID` with count 0, so nothing on the
  node is schedulable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

from maxtune.agent.inventory import Inventory
from maxtune.contract.models import MigStrategy
from maxtune.contract.names import RESOURCE_GPU, mig_resource

STRATEGIES: tuple[MigStrategy, ...] = get_args(MigStrategy)
ENV = "MIG_STRATEGY"  # the variable GPU Feature Discovery and the device plugin read
DEFAULT: MigStrategy = "mixed"
REASON_INVALID = "MigStrategyInvalid"


@dataclass(frozen=True, slots=True)
class Layout:
    """Per GPU (inventory order): what the GPU itself is scheduled as, and each slice."""

    gpus: tuple[tuple[str | None, tuple[str | None, ...]], ...]
    problem: str | None = None  # why the plugin would advertise nothing (invalid single)


def _single_problem(inventory: Inventory) -> str | None:
    mig = [g for g in inventory.gpus if g.mig_enabled]
    whole = [g for g in inventory.gpus if not g.mig_enabled]
    if whole:
        return (
            f"MIG strategy single needs every GPU in MIG mode; GPU(s) "
            f"{', '.join(str(g.index) for g in whole)} are not (the device plugin refuses "
            "this layout: nothing on the node is schedulable)"
        )
    empty = [g for g in mig if not g.mig]
    if empty:
        return (
            f"MIG strategy single: GPU(s) {', '.join(str(g.index) for g in empty)} are in "
            "MIG mode without any slice (the device plugin refuses this layout)"
        )
    profiles = sorted({m.profile for g in mig for m in g.mig})
    if len(profiles) > 1:
        return (
            f"MIG strategy single needs one slice profile on the node; found "
            f"{', '.join(profiles)} (the device plugin refuses this layout; use mixed)"
        )
    return None


def layout(inventory: Inventory, strategy: MigStrategy) -> Layout:
    """The resource name of every GPU and slice under `strategy` (None: not advertised)."""
    gpus = inventory.gpus
    if strategy == "none" or (strategy == "single" and not any(g.mig_enabled for g in gpus)):
        return Layout(tuple((RESOURCE_GPU, (None,) * len(g.mig)) for g in gpus))
    if strategy == "single":
        problem = _single_problem(inventory)
        if problem is not None:
            return Layout(tuple((None, (None,) * len(g.mig)) for g in gpus), problem)
        return Layout(tuple((None, (RESOURCE_GPU,) * len(g.mig)) for g in gpus))
    return Layout(
        tuple(
            (None, tuple(mig_resource(m.profile) for m in g.mig))
            if g.mig_enabled
            else (RESOURCE_GPU, ())
            for g in gpus
        )
    )


def parse(value: str) -> MigStrategy:
    """A flag's or the environment's value; a clear error for anything else."""
    text = value.strip().lower()
    for strategy in STRATEGIES:
        if text == strategy:
            return strategy
    raise ValueError(f"MIG strategy {value!r} is not one of {', '.join(STRATEGIES)}")
