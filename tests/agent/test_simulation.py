"""Simulated nodes end to end (backend -> profile): 8 GPUs, mixed GPUs, MIG on some GPUs only."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from maxtune.agent.backends import SimulationBackend, select
from maxtune.agent.profile import MeasurementState, build_status, local_policy_spec
from maxtune.contract.assess import gpu_capable
from maxtune.contract.models import PolicySpec, ProfileStatus, TorchRule
from maxtune.contract.modes import Mode

DEMO = Path(__file__).resolve().parents[2] / "examples" / "fleets" / "demo.yaml"
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def profile(node: str, level: str = "full", spec: PolicySpec | None = None) -> ProfileStatus:
    backend = SimulationBackend(DEMO, node)
    inventory = backend.inventory()
    state = MeasurementState()
    for uuid, outcome in backend.measure(inventory, level).items():
        if outcome.measurements is not None:
            state.by_gpu[uuid] = outcome.measurements
        if outcome.skipped is not None:
            state.skipped[uuid] = outcome.skipped
    return build_status(
        inventory=inventory,
        software=backend.software(inventory),
        level=level,
        spec=spec or local_policy_spec(),
        state=state,
        node=node,
        previous=None,
        now=NOW,
        mig_strategy=backend.mig_strategy() or "mixed",
        devices=backend.targets(inventory),
    )


def conditions(status: ProfileStatus) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in status.conditions}


def test_eight_gpu_node_lists_every_gpu_with_its_own_measurements() -> None:
    status = profile("gpu-h100-0")
    assert status.source == "simulation" and status.simulation == "demo.yaml"
    assert len(status.gpus) == 8
    assert sorted(g.index for g in status.gpus) == list(range(8))
    assert len({g.uuid for g in status.gpus}) == 8
    for gpu in status.gpus:
        assert gpu.sm_count == 132 and gpu.resource == "nvidia.com/gpu"
        assert gpu.measurements is not None
        assert [m.size for m in gpu.measurements.gemm] == [4096, 8192]
        assert all(m.ok for m in gpu.measurements.gemm)
        assert gpu.measurements.compile is not None and gpu.measurements.compile.ok
    (resource,) = status.resources
    assert (resource.name, resource.count, resource.capable) == ("nvidia.com/gpu", 8, True)
    # Capable but measured slower than default: the advice stays default.
    assert resource.recommended_mode is Mode.DEFAULT
    assert status.summary.capable and status.summary.sm_count == 132
    assert conditions(status) == {
        "Inventoried": ("True", "Simulated"),
        "GemmMeasured": ("True", "Measured"),
        "CompileMeasured": ("True", "Measured"),
        "Ready": ("True", "ProfileComplete"),
    }
    inventoried = next(c for c in status.conditions if c.type == "Inventoried")
    assert "SIMULATED" in inventoried.message and "demo.yaml" in inventoried.message


def test_heterogeneous_node_keeps_each_gpu_s_own_sm_count_and_verdict() -> None:
    status = profile("gpu-mixed-0")
    by_product = {(g.product, g.sm_count, g.verdict.capable) for g in status.gpus}
    assert by_product == {("NVIDIA H100 80GB HBM3", 132, True), ("NVIDIA L4", 58, False)}
    classes = {g.gpu_class for g in status.gpus}
    assert classes == {"nvidia-h100-80gb-hbm3-132sm", "nvidia-l4-58sm"}
    (resource,) = status.resources
    # A pod asking for nvidia.com/gpu here may get either kind: not capable, a mixed class.
    assert resource.count == 4 and not resource.capable
    assert resource.sm_count == 58 and resource.gpu_class.startswith("mixed-")


def test_mig_on_some_gpus_only() -> None:
    status = profile("gpu-mig-0")
    mig_gpu = next(g for g in status.gpus if g.mig_enabled)
    whole = [g for g in status.gpus if not g.mig_enabled]
    assert mig_gpu.index == 0 and mig_gpu.resource is None and mig_gpu.measurements is None
    assert [(m.profile, m.sm_count, m.verdict.capable) for m in mig_gpu.mig_instances] == [
        ("3g.40gb", 60, False),
        ("3g.40gb", 60, False),
        ("1g.10gb", 16, False),
    ]
    assert len(whole) == 3 and all(g.verdict.capable and g.measurements for g in whole)
    resources = {r.name: (r.count, r.sm_count, r.capable) for r in status.resources}
    assert resources == {
        "nvidia.com/gpu": (3, 132, True),
        "nvidia.com/mig-1g.10gb": (1, 16, False),
        "nvidia.com/mig-3g.40gb": (2, 60, False),
    }


def test_every_gpu_in_mig_mode_measures_its_7g_slices_on_themselves() -> None:
    status = profile("gpu-mig-all-0")
    assert all(g.mig_enabled and g.measurements is None for g in status.gpus)
    slices = [m for g in status.gpus for m in g.mig_instances]
    assert len(slices) == 2
    for s in slices:
        assert s.measurements is not None and s.measurements.training is not None
        assert s.measurements.training.ok and s.measurements.training.processes == 2
    assert conditions(status)["GemmMeasured"] == ("True", "Measured")
    assert "MIG 7g.80gb" in next(c for c in status.conditions if c.type == "GemmMeasured").message
    assert conditions(status)["CompileMeasured"] == ("True", "Measured")
    # Mixed strategy: node labels describe whole GPUs, and there are none.
    assert not status.summary.capable
    (resource,) = status.resources
    assert (resource.name, resource.capable, resource.mig_profile) == (
        "nvidia.com/mig-7g.80gb",
        True,
        "7g.80gb",
    )
    assert resource.recommended_mode is Mode.DEFAULT  # the H100 training gains stay under 3%
    assert resource.gain_low is not None and "lower bound" in resource.advice


def test_failed_triton_check_is_never_capable() -> None:
    status = profile("gpu-bad-triton-0")
    assert all(g.verdict.capable for g in status.gpus)  # the gate alone would pass
    assert not any(gpu_capable(g, "2.11") for g in status.gpus)
    assert not status.summary.capable
    assert conditions(status)["GemmMeasured"] == ("False", "TritonCompileFailed")


def test_busy_gpu_is_skipped_not_failed() -> None:
    status = profile("gpu-busy-0")
    busy = status.gpus[1]
    assert busy.measurements is None  # nothing recorded: not a failure, and retried later
    assert busy.verdict.capable and status.summary.capable
    assert conditions(status)["GemmMeasured"] == ("False", "GPUBusy")
    assert conditions(status)["Ready"] == ("False", "MeasurementPending")


def test_levels_decide_what_is_measured() -> None:
    inventory_only = profile("gpu-h100-0", level="inventory")
    assert all(g.measurements is None for g in inventory_only.gpus)
    assert conditions(inventory_only)["GemmMeasured"] == ("False", "NotRequested")
    assert conditions(inventory_only)["Ready"] == ("True", "ProfileComplete")
    gemm = profile("gpu-h100-0", level="gemm")
    assert all(g.measurements and g.measurements.compile is None for g in gemm.gpus)
    assert conditions(gemm)["CompileMeasured"] == ("False", "NotRequested")


def test_the_policy_torch_rule_decides_the_verdict() -> None:
    # 68 SMs pass the 2.4+ gate and fail the 2.0-2.3 one (80).
    new = profile("gpu-rtx3080-0", spec=PolicySpec(torch=TorchRule(version="2.11")))
    old = profile("gpu-rtx3080-0", spec=PolicySpec(torch=TorchRule(version="2.3")))
    assert all(g.verdict.capable for g in new.gpus)
    assert not any(g.verdict.capable for g in old.gpus)
    assert {g.verdict.torch_version for g in old.gpus} == {"2.3"}


def test_simulation_needs_a_node_and_is_never_a_fallback() -> None:
    with pytest.raises(ValueError, match="--simulate needs the node"):
        select(simulate=DEMO, node_name=None)
    assert select(simulate=None, node_name="x").source == "nvml"
