"""MIG under the device plugin's strategies, and MIG slices measured on themselves.

MIG mode cannot be changed on the GPU lent for tests, so these run on the named simulation
(examples/fleets/mig-strategies.yaml) and on the NVML stand-in; the worker side of a
measured slice (CUDA_VISIBLE_DEVICES=MIG-<uuid>) is in test_measure.py.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from maxtune.agent import migstrategy
from maxtune.agent.backends import SimulationBackend
from maxtune.agent.daemon import Agent
from maxtune.agent.inventory import GpuDevice, Inventory, MigDevice
from maxtune.agent.measure import GpuOutcome
from maxtune.agent.profile import MeasurementState, build_status, local_policy_spec
from maxtune.agent.targets import restrict, targets
from maxtune.agent.timing import device_mismatch
from maxtune.contract import assess, names
from maxtune.contract.models import PolicySpec, ProfileStatus
from maxtune.contract.modes import Mode

ROOT = Path(__file__).resolve().parents[2]
FLEET = ROOT / "examples" / "fleets" / "mig-strategies.yaml"
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def profile(node: str, strategy: str = "mixed") -> ProfileStatus:
    backend = SimulationBackend(FLEET, node)
    inventory = backend.inventory()
    state = MeasurementState()
    for uuid, outcome in backend.measure(inventory, "full").items():
        if outcome.measurements is not None:
            state.by_gpu[uuid] = outcome.measurements
    return build_status(
        inventory=inventory,
        software=backend.software(inventory),
        level="full",
        spec=local_policy_spec(),
        state=state,
        node=node,
        previous=None,
        now=NOW,
        mig_strategy=backend.mig_strategy() or migstrategy.parse(strategy),
        devices=backend.targets(inventory),
    )


def resources(status: ProfileStatus) -> dict[str, tuple[int, int | None, bool, str]]:
    return {
        r.name: (r.count, r.sm_count, r.capable, r.recommended_mode.value) for r in status.resources
    }


def cond(status: ProfileStatus, kind: str) -> tuple[str, str]:
    c = next(c for c in status.conditions if c.type == kind)
    return c.status, c.reason


def test_single_strategy_small_slices_are_what_nvidia_com_gpu_gets() -> None:
    status = profile("mig-single-1g")
    assert status.mig_strategy == "single"
    assert resources(status) == {"nvidia.com/gpu": (14, 16, False, "default")}
    (r,) = status.resources
    assert r.gpu_class == "nvidia-h100-80gb-hbm3-mig-1g.10gb-16sm" and r.mig_profile == "1g.10gb"
    labels = assess.node_labels(status, PolicySpec(), NOW)
    assert labels[names.LABEL_CAPABLE] == "false" and labels[names.LABEL_SM_COUNT] == "16"
    # Slices under the gate are not measured: nothing to measure, and nothing pending.
    assert cond(status, "GemmMeasured") == ("False", "NoMeasurableDevice")
    assert cond(status, "Ready") == ("True", "ProfileComplete")


def test_single_strategy_7g_slices_are_measured_and_advised_on() -> None:
    status = profile("mig-single-7g")
    assert resources(status) == {"nvidia.com/gpu": (2, 132, True, "max-autotune")}
    (r,) = status.resources
    assert r.mode is Mode.MAX_AUTOTUNE and r.gain_low is not None and r.gain_low > 0.03
    assert r.break_even_steps is not None and r.break_even_steps > 0
    assert "pays back after" in r.advice
    labels = assess.node_labels(status, PolicySpec(), NOW)
    assert labels[names.LABEL_MODE] == "max-autotune"
    assert labels[names.LABEL_CLASS] == "nvidia-h100-80gb-hbm3-mig-7g.80gb-132sm"
    assert cond(status, "CompileMeasured") == ("True", "Measured")
    assert "SIMULATED" in next(c for c in status.conditions if c.type == "CompileMeasured").message


def test_single_strategy_with_two_profiles_schedules_nothing_and_says_why() -> None:
    status = profile("mig-single-invalid")
    assert status.resources == []
    assert not status.summary.capable
    assert cond(status, "Inventoried") == ("False", "MigStrategyInvalid")
    message = next(c for c in status.conditions if c.type == "Inventoried").message
    assert "one slice profile" in message and "1g.10gb, 3g.40gb" in message
    assert assess.node_labels(status, PolicySpec(), NOW)[names.LABEL_CAPABLE] == "false"


def test_mixed_strategy_gives_slices_their_own_resource() -> None:
    status = profile("mig-mixed-7g")
    assert status.mig_strategy == "mixed"
    got = resources(status)
    assert got["nvidia.com/mig-7g.80gb"] == (1, 132, True, "max-autotune")
    assert got["nvidia.com/gpu"][:3] == (1, 132, True)  # the whole GPU: no training timings
    assert got["nvidia.com/gpu"][3] == "default"


def test_the_flag_decides_for_a_node_whose_file_names_no_strategy() -> None:
    status = profile("mig-mixed-7g", strategy="single")  # a MIG GPU beside a whole one
    assert status.mig_strategy == "single" and status.resources == []
    assert cond(status, "Inventoried") == ("False", "MigStrategyInvalid")


def test_none_strategy_a_mig_gpu_is_an_unusable_nvidia_com_gpu() -> None:
    status = profile("mig-none")
    assert resources(status) == {"nvidia.com/gpu": (1, None, False, "default")}


def _gpu(index: int, *slices: tuple[str, int], mig: bool = True) -> GpuDevice:
    return GpuDevice(
        index=index,
        uuid=f"GPU-{index}",
        product="NVIDIA H100 80GB HBM3",
        memory_mib=81559,
        compute_capability=(9, 0),
        sm_count=None if mig else 132,
        mig_enabled=mig,
        mig=tuple(
            MigDevice(
                profile=p,
                uuid=f"MIG-{index}-{j}",
                gpu_instance_id=j,
                compute_instance_id=0,
                sm_count=sm,
            )
            for j, (p, sm) in enumerate(slices)
        ),
    )


@pytest.mark.parametrize(
    ("gpus", "problem"),
    [
        ((_gpu(0, ("1g.10gb", 16)), _gpu(1, ("1g.10gb", 16))), None),
        ((_gpu(0, ("1g.10gb", 16)), _gpu(1, mig=False)), "not (the device plugin refuses"),
        ((_gpu(0, ("1g.10gb", 16)), _gpu(1)), "without any slice"),
        ((_gpu(0, ("1g.10gb", 16), ("2g.20gb", 32)),), "one slice profile"),
        ((_gpu(0, mig=False),), None),  # no GPU in MIG mode: scheduled as under none
    ],
)
def test_single_strategy_validity_follows_the_device_plugin(
    gpus: tuple[GpuDevice, ...], problem: str | None
) -> None:
    got = migstrategy.layout(Inventory(source="nvml", gpus=gpus), "single").problem
    assert (got is None) if problem is None else (got is not None and problem in got)


def test_strategy_values_are_checked() -> None:
    assert migstrategy.parse(" Single ") == "single"
    with pytest.raises(ValueError, match="not one of none, single, mixed"):
        migstrategy.parse("auto")


def test_only_slices_that_pass_the_gate_are_measured() -> None:
    inventory = Inventory(
        source="nvml",
        gpus=(
            _gpu(0, ("7g.80gb", 132)),
            _gpu(1, ("3g.40gb", 60), ("1g.10gb", 16)),
            _gpu(2, mig=False),
        ),
    )
    found = targets(inventory, "2.11")
    assert [(t.uuid, t.parent_uuid, t.sm_count) for t in found] == [
        ("MIG-0-0", "GPU-0", 132),
        ("GPU-2", None, 132),
    ]
    assert found[0].label == "GPU 0 MIG 7g.80gb (GI 0)"
    # torch 2.3's gate was 80 SMs: a 7g slice of an A100 (98) passes both, 60 SMs neither.
    cut = restrict(inventory, {"MIG-0-0"})
    assert [g.index for g in cut.gpus] == [0] and len(cut.gpus[0].mig) == 1


def test_the_worker_accepts_a_slice_by_its_uuid_or_its_parent_s_with_the_slice_s_sms() -> None:
    slice_uuid, parent = "MIG-aaaa-bb", "GPU-cccc-dd"
    ok = {"expect_uuid": slice_uuid, "expect_parent": parent, "expect_sms": 132}
    assert device_mismatch(seen_uuid="GPU-aaaa-bb", seen_sms=132, **ok) is None
    assert device_mismatch(seen_uuid="GPU-cccc-dd", seen_sms=132, **ok) is None
    wrong_sms = device_mismatch(seen_uuid="GPU-cccc-dd", seen_sms=16, **ok)
    assert wrong_sms is not None and "16 SMs" in wrong_sms
    other = device_mismatch(seen_uuid="GPU-eeee", seen_sms=132, **ok)
    assert other is not None and "CUDA shows GPU-eeee" in other


def test_the_agent_measures_slices_once_and_keeps_them() -> None:
    class Counting(SimulationBackend):
        calls: list[int]

        def measure(self, inventory: Inventory, level: str) -> dict[str, GpuOutcome]:
            self.calls.append(sum(len(g.mig) for g in inventory.gpus))
            return super().measure(inventory, level)

    backend = Counting(FLEET, "mig-single-7g")
    backend.calls = []
    agent = Agent(node="mig-single-7g", backend=backend, sink=None, level="full")
    agent.tick(block=True)
    agent.tick(block=True)
    assert backend.calls == [2]  # both 7g slices once; the second round had nothing missing
    status = agent.latest
    assert status is not None and status.mig_strategy == "single"
    assert [m.measurements is not None for g in status.gpus for m in g.mig_instances] == [
        True,
        True,
    ]
    back = MeasurementState.from_status(status)
    assert set(back.by_gpu) == {m.uuid for g in status.gpus for m in g.mig_instances}


def test_probe_takes_the_strategy_from_the_environment_like_gfd() -> None:
    def probe(*extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "maxtune.cli.main",
                "probe",
                "--simulate",
                str(FLEET),
                "--node",
                "mig-mixed-7g",
                "--level",
                "full",
                "--json",
                *extra,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env={**os.environ, **(env or {})},
        )

    done = probe(env={"MIG_STRATEGY": "single"})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["migStrategy"] == "single"
    bad = probe("--mig-strategy", "auto")
    assert bad.returncode == 2 and "not one of none, single, mixed" in bad.stderr


def test_a_measured_slice_s_results_survive_an_agent_restart() -> None:
    status = profile("mig-single-7g")
    state = MeasurementState.from_status(ProfileStatus.model_validate(status.wire()))
    slice_uuids = {m.uuid for g in status.gpus for m in g.mig_instances}
    assert slice_uuids <= set(state.by_gpu)
    again = dataclasses.replace(state)
    assert again.complete_for(
        targets(SimulationBackend(FLEET, "mig-single-7g").inventory(), "2.11"), "full"
    )
