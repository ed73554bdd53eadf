"""The NVML backend's handling of what NVML answers (through a pynvml stand-in at its seam)."""

from __future__ import annotations

import sys

import pytest

from maxtune.agent.backends import NvmlBackend
from maxtune.agent.nvml import NvmlInventory, mig_memory_gb, mig_profile_name
from maxtune.agent.profile import MeasurementState, build_status, local_policy_spec
from maxtune.agent.smcount import SmCounts
from maxtune.contract.models import PolicySpec, TorchRule
from tests.agent.fakenvml import (
    FakeGpu,
    FakeMig,
    NVMLError_DriverNotLoaded,
    NVMLError_LibraryNotFound,
    make_nvml,
)

H100_BYTES = 85520809984  # 81559 MiB, as NVML reports an H100 80GB HBM3
U0 = "GPU-00000000-0000-0000-0000-000000000000"
U1 = "GPU-11111111-1111-1111-1111-111111111111"
U2 = "GPU-22222222-2222-2222-2222-222222222222"


def test_mig_profile_names_follow_the_device_plugin() -> None:
    # H100 80GB slices (memory as NVML reports it) -> the names the device plugin advertises.
    assert mig_memory_gb(H100_BYTES, 9984) == 10
    assert mig_memory_gb(H100_BYTES, 19968) == 20
    assert mig_memory_gb(H100_BYTES, 40192) == 40
    assert mig_memory_gb(H100_BYTES, 80896) == 80
    # A100 40GB: 1g.5gb
    assert mig_memory_gb(42949672960, 4864) == 5
    assert mig_profile_name(1, 1, 10) == "1g.10gb"
    assert mig_profile_name(2, 1, 20) == "1c.2g.20gb"
    assert mig_profile_name(1, 1, 10, "me") == "1g.10gb+me"


def test_inventory_reads_gpus_mig_slices_and_driver() -> None:
    nvml = make_nvml(
        [
            FakeGpu(
                U0,
                mig_mode=1,
                mig={
                    0: FakeMig("MIG-a", 3, 3, 40192, 60, gi_id=1),
                    2: FakeMig("MIG-b", 1, 1, 9984, 16, gi_id=9),  # slot 1 empty
                },
            ),
            FakeGpu(U1, name="NVIDIA L4", memory_bytes=24152899584, cc=(8, 9), mig_mode=None),
        ]
    )
    inv = NvmlInventory(nvml).inventory()
    assert inv.source == "nvml"
    assert inv.complete, inv.problems
    assert (inv.driver_version, inv.cuda_driver_version) == ("580.159.04", "13.0")
    mig_gpu, l4 = inv.gpus
    assert mig_gpu.mig_enabled and not l4.mig_enabled
    assert [(m.profile, m.sm_count, m.gpu_instance_id) for m in mig_gpu.mig] == [
        ("3g.40gb", 60, 1),
        ("1g.10gb", 16, 9),
    ]
    assert l4.compute_capability == (8, 9) and l4.memory_mib == 24152899584 // 2**20
    # NVML never gives whole-GPU SM counts: the inventory leaves them unread.
    assert l4.sm_count is None


@pytest.mark.parametrize("error", [NVMLError_LibraryNotFound, NVMLError_DriverNotLoaded])
def test_no_nvml_means_no_gpu_and_nothing_capable(error: type[Exception]) -> None:
    inv = NvmlInventory(make_nvml([], init_error=error)).inventory()
    assert inv.source == "none" and not inv.gpus
    assert inv.problems[0][0] == "NVMLUnavailable"
    status = build_status(
        inventory=inv,
        software=NvmlBackend(nvml=make_nvml([], init_error=error)).software(inv),
        level="full",
        spec=local_policy_spec(),
        state=MeasurementState(),
        node="n",
        previous=None,
        now=_now(),
    )
    assert status.summary.gpus == 0 and not status.summary.capable
    inventoried = {c.type: c for c in status.conditions}["Inventoried"]
    assert inventoried.status == "False" and inventoried.reason == "NVMLUnavailable"
    assert "no GPU" in inventoried.message


def test_pynvml_not_installed_is_said_plainly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml -> ImportError
    inv = NvmlInventory().inventory()
    assert inv.source == "none"
    assert inv.problems[0][0] == "NVMLUnavailable"
    assert "not installed" in inv.problems[0][1]


def test_a_lost_gpu_is_left_out_and_named() -> None:
    nvml = make_nvml([FakeGpu(U0), FakeGpu(U1, lost=True), FakeGpu(U2)])
    inv = NvmlInventory(nvml).inventory()
    assert [g.uuid for g in inv.gpus] == [U0, U2]
    assert inv.problems == (("DeviceLost", "GPU 1: NVMLError_GpuIsLost: GPU is lost; left out"),)


def _reader(counts: dict[str, int], error: str | None = None) -> object:
    calls: list[int] = []

    def read() -> SmCounts:
        calls.append(1)
        return SmCounts(dict(counts), "cuda-driver" if counts else None, error)

    read.calls = calls  # type: ignore[attr-defined]
    return read


def test_sm_counts_are_matched_by_uuid_not_by_order() -> None:
    nvml = make_nvml([FakeGpu(U0), FakeGpu(U1, name="NVIDIA L4", cc=(8, 9), mig_mode=None)])
    # CUDA lists the L4 first (fastest-first ordering differs from NVML's).
    reader = _reader({U1: 58, U0: 132})
    backend = NvmlBackend(nvml=nvml, sm_reader=reader)  # type: ignore[arg-type]
    inv = backend.inventory()
    assert {g.uuid: g.sm_count for g in inv.gpus} == {U0: 132, U1: 58}
    assert all(g.sm_source == "cuda-driver" for g in inv.gpus)
    backend.inventory()
    assert len(reader.calls) == 1  # type: ignore[attr-defined] - same GPUs: read once


def test_unreadable_sm_count_is_never_capable() -> None:
    nvml = make_nvml([FakeGpu(U0), FakeGpu(U1)])
    backend = NvmlBackend(nvml=nvml, sm_reader=_reader({U0: 132}))  # type: ignore[arg-type]
    inv = backend.inventory()
    assert [g.sm_count for g in inv.gpus] == [132, None]
    assert inv.problems[0][0] == "SmCountUnavailable"
    status = build_status(
        inventory=inv,
        software=backend.software(inv),
        level="inventory",
        spec=PolicySpec(torch=TorchRule(version="2.11")),
        state=MeasurementState(),
        node="n",
        previous=None,
        now=_now(),
    )
    by_uuid = {g.uuid: g for g in status.gpus}
    assert by_uuid[U0].verdict.capable
    assert not by_uuid[U1].verdict.capable and "not measured" in by_uuid[U1].verdict.rule
    assert not status.summary.capable
    inventoried = {c.type: c for c in status.conditions}["Inventoried"]
    assert inventoried.status == "False" and inventoried.reason == "SmCountUnavailable"


def test_sm_reader_failure_is_retried_next_round() -> None:
    nvml = make_nvml([FakeGpu(U0)])
    reader = _reader({}, error="reading SM counts took longer than 60s")
    backend = NvmlBackend(nvml=nvml, sm_reader=reader)  # type: ignore[arg-type]
    assert backend.inventory().problems[0][1].endswith("took longer than 60s")
    backend.inventory()
    assert len(reader.calls) == 2  # type: ignore[attr-defined]


def test_busy_pids_are_read_from_nvml() -> None:
    nvml = make_nvml([FakeGpu(U0, pids=(4242,))])
    inv = NvmlInventory(nvml)
    assert inv.inventory().gpus[0].busy_pids == (4242,)
    assert inv.busy_pids(U0) == (4242,)
    inv.close()
    assert nvml.state["shutdown"] == 1


def _now():  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    return datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def test_a_7g_slice_is_a_measurement_target_with_its_own_busy_processes() -> None:
    # An H100 in MIG mode with one 7g.80gb slice (132 SMs) that another process uses, and
    # an H100 whose 3g slice is below the gate.
    nvml = make_nvml(
        [
            FakeGpu(
                U0, mig_mode=1, mig={0: FakeMig("MIG-7g", 7, 7, 80896, 132, gi_id=0, pids=(77,))}
            ),
            FakeGpu(U1, mig_mode=1, mig={0: FakeMig("MIG-3g", 3, 3, 40192, 60, gi_id=1)}),
        ]
    )
    backend = NvmlBackend(nvml=nvml, sm_reader=_reader({}))  # type: ignore[arg-type]
    inventory = backend.inventory()
    (slice_,) = backend.targets(inventory)
    assert (slice_.uuid, slice_.parent_uuid, slice_.sm_count) == ("MIG-7g", U0, 132)
    assert slice_.busy_pids == (77,)
    assert NvmlInventory(nvml).busy_pids("MIG-7g") == (77,)
    # Busy: the slice is skipped, not failed, and no worker is started for it.
    outcome = backend.measure(inventory, "full")["MIG-7g"]
    assert outcome.measurements is None and outcome.skipped is not None
    assert outcome.skipped[0] == "GPUBusy" and "MIG 7g.80gb" in outcome.skipped[1]
