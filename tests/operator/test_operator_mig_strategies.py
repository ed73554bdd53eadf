"""The webhook on MIG nodes under the device plugin's `single` strategy (slices sold as
`nvidia.com/gpu`), from profiles the agent's simulation publishes (examples/fleets/
mig-strategies.yaml): a measured 7g slice class, and 1g slices under the gate. MIG mode cannot
be changed on the GPU available here, so MIG is covered by the named simulation."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from maxtune.agent import migstrategy
from maxtune.agent.backends import SimulationBackend
from maxtune.agent.profile import MeasurementState, build_status, local_policy_spec
from maxtune.contract.assess import node_labels
from maxtune.contract.models import AutotunePolicy, GPUNodeProfile
from maxtune.operator.decision import Decision, decide
from maxtune.operator.fleet import FleetState
from maxtune.operator.records import read_node, read_profile
from maxtune_dev import testkit

FLEET = Path(__file__).resolve().parents[2] / "examples" / "fleets" / "mig-strategies.yaml"
SLICE_7G = "nvidia-h100-80gb-hbm3-mig-7g.80gb-132sm"


def _add(state: FleetState, node: str, rv: int) -> None:
    backend = SimulationBackend(FLEET, node)
    inventory = backend.inventory()
    measured = MeasurementState()
    for uuid, outcome in backend.measure(inventory, "full").items():
        if outcome.measurements is not None:
            measured.by_gpu[uuid] = outcome.measurements
    status = build_status(
        inventory=inventory,
        software=backend.software(inventory),
        level="full",
        spec=local_policy_spec(),
        state=measured,
        node=node,
        previous=None,
        now=datetime.now(UTC),
        mig_strategy=backend.mig_strategy() or migstrategy.parse("mixed"),
        devices=backend.targets(inventory),
    )
    gpus = {r.name: str(r.count) for r in status.resources}
    labels = dict(node_labels(status, state.cluster_policy().spec, datetime.now(UTC)))
    record = read_node(testkit.node(node, gpus, labels=labels, rv=str(rv)))
    assert record is not None
    state.upsert_node(record)
    body = GPUNodeProfile.model_validate(
        {"metadata": {"name": node}, "spec": {"nodeName": node}, "status": status.wire()}
    ).wire()
    body["metadata"].update(uid=f"puid-{node}", resourceVersion=str(rv))
    profile = read_profile(body)
    assert profile is not None
    state.upsert_profile(profile)


def fleet() -> FleetState:
    state = FleetState()
    _add(state, "mig-single-1g", 2)  # 14 x 1g.10gb (16 SMs) as nvidia.com/gpu
    _add(state, "mig-single-7g", 3)  # 2 x 7g.80gb (132 SMs), measured on the slice itself
    return state


def decide_for(state: FleetState, pod: dict[str, Any]) -> Decision:
    got = decide(
        pod,
        namespace="team",
        fleet=state,
        own_namespace="maxtune-system",
        now=time.time(),
        version="t",
    )
    assert isinstance(got, Decision), got
    return got


def test_single_strategy_slices_are_what_nvidia_com_gpu_means_on_each_node() -> None:
    state = fleet()
    assert state.nodes["mig-single-7g"].labels["maxtune.io/gpu-class"] == SLICE_7G
    assert state.nodes["mig-single-7g"].labels["maxtune.io/recommended-mode"] == "max-autotune"
    assert state.nodes["mig-single-1g"].labels["maxtune.io/max-autotune-capable"] == "false"
    # Either node may take the pod: the 1g slices fail the gate, so default holds everywhere.
    decision = decide_for(state, testkit.pod())
    assert decision.mode is not None and decision.mode.value == "default"
    assert not decision.steered
    # Pinned to the 7g node, the slice's own measured advice applies.
    pinned = testkit.pod(spec={"nodeSelector": {"kubernetes.io/hostname": "mig-single-7g"}})
    decision = decide_for(state, pinned)
    assert decision.mode is not None and decision.mode.value == "max-autotune"


def test_asking_narrows_to_the_measured_7g_slices_only_with_enough_capacity() -> None:
    state = fleet()
    asking = testkit.pod(annotations={"maxtune.io/steering": "require"})
    decision = decide_for(state, asking)
    assert not decision.steered and "hold 12% of the candidate GPUs, < 50%" in decision.reason
    state.upsert_policy(
        AutotunePolicy.model_validate(
            {
                "metadata": {"name": "default", "resourceVersion": "5"},
                "spec": {"minCapacityShare": 0.1},
            }
        )
    )
    decision = decide_for(state, asking)
    assert decision.steered and decision.classes == (SLICE_7G,)
    assert decision.mode is not None and decision.mode.value == "max-autotune"
