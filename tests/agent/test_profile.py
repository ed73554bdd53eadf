"""Fingerprint, conditions and kept measurements: the pure rules of the profile."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

from maxtune.agent.backends import SimulationBackend
from maxtune.agent.inventory import GpuDevice, Inventory, MigDevice, cuda_version_text, uuid_text
from maxtune.agent.profile import (
    MeasurementState,
    build_status,
    fingerprint,
    keep_transition_times,
    local_policy_spec,
)
from maxtune.contract.models import Condition, Measurements, Software
from maxtune.contract.precision import published

DEMO = Path(__file__).resolve().parents[2] / "examples" / "fleets" / "demo.yaml"
T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
SW = Software(
    agent_version="0.1.0",
    driver_version="580.159.04",
    cuda_driver_version="13.0",
    torch_version="2.11.0",
    triton_version="3.6.0",
)


def gpu(uuid: str = "GPU-a", **changes: object) -> GpuDevice:
    base = GpuDevice(
        index=0,
        uuid=uuid,
        product="NVIDIA H100 80GB HBM3",
        memory_mib=81559,
        compute_capability=(9, 0),
        sm_count=132,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def inv(*gpus: GpuDevice) -> Inventory:
    return Inventory(source="nvml", gpus=gpus, driver_version="580.159.04")


def test_fingerprint_moves_with_hardware_driver_torch_triton_level() -> None:
    base = fingerprint(inv(gpu()), SW, "full")
    assert base == fingerprint(inv(gpu()), SW, "full")
    changed = {
        "gpu swapped": fingerprint(inv(gpu("GPU-b")), SW, "full"),
        "sm count": fingerprint(inv(gpu(sm_count=114)), SW, "full"),
        "mig layout": fingerprint(
            inv(gpu(mig_enabled=True, mig=(MigDevice("1g.10gb", "M", 1, 0, 16),))), SW, "full"
        ),
        "driver": fingerprint(
            inv(gpu()), SW.model_copy(update={"driver_version": "590.1"}), "full"
        ),
        "torch": fingerprint(inv(gpu()), SW.model_copy(update={"torch_version": "2.12.0"}), "full"),
        "triton": fingerprint(
            inv(gpu()), SW.model_copy(update={"triton_version": "3.7.0"}), "full"
        ),
        "level": fingerprint(inv(gpu()), SW, "gemm"),
    }
    assert len(set(changed.values()) | {base}) == len(changed) + 1
    # Busy processes and the PCI slot are not what a measurement depends on.
    assert fingerprint(inv(gpu(busy_pids=(1, 2))), SW, "full") == base


def test_transition_time_moves_only_when_status_changes() -> None:
    old = [
        Condition(type="Ready", status="True", reason="A", last_transition_time=T0),
        Condition(type="GemmMeasured", status="False", reason="Pending", last_transition_time=T0),
    ]
    later = T0 + timedelta(minutes=5)
    fresh = [
        Condition(type="Ready", status="True", reason="B", message="x", last_transition_time=later),
        Condition(
            type="GemmMeasured", status="True", reason="Measured", last_transition_time=later
        ),
    ]
    kept = {c.type: c for c in keep_transition_times(fresh, old)}
    assert kept["Ready"].last_transition_time == T0 and kept["Ready"].reason == "B"
    assert kept["GemmMeasured"].last_transition_time == later


def test_published_measurements_come_back_as_state() -> None:
    backend = SimulationBackend(DEMO, "gpu-h100-0")
    inventory = backend.inventory()
    state = MeasurementState(fingerprint="x", measured_time=T0)
    for uuid, outcome in backend.measure(inventory, "full").items():
        assert outcome.measurements is not None
        state.by_gpu[uuid] = outcome.measurements
    status = build_status(
        inventory=inventory,
        software=backend.software(inventory),
        level="full",
        spec=local_policy_spec(),
        state=state,
        node="gpu-h100-0",
        previous=None,
        now=T0,
    )
    back = MeasurementState.from_status(status)
    assert back.fingerprint == status.fingerprint
    # They come back as they were published: every measured number to six significant digits.
    as_published = {
        uuid: Measurements.model_validate(published(m.wire())) for uuid, m in state.by_gpu.items()
    }
    assert back.by_gpu == as_published and back.by_gpu != state.by_gpu
    assert back.measured_time == T0
    assert back.complete_for(inventory.gpus, "full")
    assert not MeasurementState().complete_for(inventory.gpus, "gemm")
    assert MeasurementState().complete_for(inventory.gpus, "inventory")


def test_uuid_and_cuda_version_text() -> None:
    raw = bytes.fromhex("7971b8fc331c7dc7be3eedaf9e7a9451")  # read from an H100 (cuDeviceGetUuid)
    assert uuid_text(raw) == "GPU-7971b8fc-331c-7dc7-be3e-edaf9e7a9451"  # nvmlDeviceGetUUID
    assert cuda_version_text(13000) == "13.0" and cuda_version_text(12080) == "12.8"
