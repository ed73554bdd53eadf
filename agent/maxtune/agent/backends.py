"""Where the agent's facts come from: real GPUs through NVML, or a named fleet file.

One small protocol, two implementations. `NvmlBackend` reads the node (NVML for
devices, the CUDA driver for SM counts, worker processes for measurements);
when NVML is missing it reports an empty inventory that says why: there is no
GPU, so nothing is capable. `SimulationBackend` is only ever chosen by naming a
fleet file, and it says so in everything it produces. There is no fallback
from one to the other.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Protocol

from maxtune.agent import measure as measuring
from maxtune.agent import smcount
from maxtune.agent.failures import Reason
from maxtune.agent.fleetfile import Fleet, SimulatedGpu
from maxtune.agent.fleetfile import load as load_fleet
from maxtune.agent.inventory import GpuDevice, Inventory, Source
from maxtune.agent.measure import GpuOutcome
from maxtune.agent.nvml import NvmlInventory
from maxtune.cli.version import VERSION
from maxtune.contract.models import (
    CompileMeasurement,
    GemmMeasurement,
    Measurements,
    ModeTiming,
    Software,
)
from maxtune.contract.modes import Mode

REASON_SM_UNREAD = "SmCountUnavailable"


class Backend(Protocol):
    @property
    def source(self) -> Source: ...

    def inventory(self) -> Inventory: ...

    def measure(self, inventory: Inventory, level: str) -> dict[str, GpuOutcome]: ...

    def software(self, inventory: Inventory) -> Software: ...

    def close(self) -> None: ...


def _installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


class NvmlBackend:
    """The real node. SM counts are read once per set of GPU UUIDs (they never change)."""

    source: Source = "nvml"

    def __init__(
        self,
        *,
        nvml: ModuleType | None = None,
        budgets: measuring.Budgets | None = None,
        sizes: Sequence[int] = measuring.DEFAULT_SIZES,
        sm_reader: smcount.SmCountReader | None = None,
    ) -> None:
        self._nvml = NvmlInventory(nvml)
        self._budgets = budgets or measuring.Budgets()
        self._sizes = tuple(sizes)
        self._read_sms = sm_reader or smcount.read
        self._sm_cache: tuple[frozenset[str], smcount.SmCounts] | None = None

    def inventory(self) -> Inventory:
        found = self._nvml.inventory()
        if not found.gpus:
            return found
        uuids = frozenset(g.uuid for g in found.gpus if not g.mig_enabled)
        if not uuids:
            return found
        if self._sm_cache is None or self._sm_cache[0] != uuids or self._sm_cache[1].error:
            self._sm_cache = (uuids, self._read_sms())
        counts = self._sm_cache[1]
        problems = list(found.problems)
        gpus = []
        for gpu in found.gpus:
            if gpu.mig_enabled:
                gpus.append(gpu)
                continue
            sms = counts.counts.get(gpu.uuid)
            if sms is None:
                why = counts.error or "the CUDA driver does not list this GPU (hidden from CUDA?)"
                problems.append((REASON_SM_UNREAD, f"GPU {gpu.index} ({gpu.uuid}): {why}"))
            gpus.append(gpu.with_sm(sms, counts.source))
        return dataclasses.replace(found, gpus=tuple(gpus), problems=tuple(problems))

    def measure(self, inventory: Inventory, level: str) -> dict[str, GpuOutcome]:
        def busy(gpu: GpuDevice) -> tuple[int, ...]:
            try:
                return self._nvml.busy_pids(gpu.uuid)
            except Exception:
                return gpu.busy_pids

        return measuring.measure(
            inventory.gpus, level, sizes=self._sizes, budgets=self._budgets, busy=busy
        )

    def software(self, inventory: Inventory) -> Software:
        return Software(
            agent_version=VERSION,
            driver_version=inventory.driver_version,
            cuda_driver_version=inventory.cuda_driver_version,
            nvml_version=inventory.nvml_version,
            torch_version=_installed("torch"),
            triton_version=_installed("triton"),
        )

    def close(self) -> None:
        self._nvml.close()


class SimulationBackend:
    """One node of a fleet file; measurements are the file's, never a GPU's."""

    source: Source = "simulation"

    def __init__(self, fleet: Fleet | Path | str, node_name: str) -> None:
        self.fleet = fleet if isinstance(fleet, Fleet) else load_fleet(fleet)
        self.node_name = node_name
        self._gpus: tuple[SimulatedGpu, ...] = self.fleet.node(node_name)

    def inventory(self) -> Inventory:
        sw = self.fleet.spec.software
        return Inventory(
            source="simulation",
            gpus=tuple(g.device for g in self._gpus),
            driver_version=sw.driver_version,
            cuda_driver_version=sw.cuda_driver_version,
            nvml_version=sw.nvml_version,
            simulation=self.fleet.file_name,
        )

    def measure(self, inventory: Inventory, level: str) -> dict[str, GpuOutcome]:
        if level == "inventory":
            return {}
        outcomes: dict[str, GpuOutcome] = {}
        for sim in self._gpus:
            gpu = sim.device
            if gpu.mig_enabled:
                continue
            if sim.busy:
                outcomes[gpu.uuid] = GpuOutcome(
                    uuid=gpu.uuid,
                    measurements=None,
                    skipped=(
                        Reason.GPU_BUSY.value,
                        f"GPU {gpu.index} is busy in the simulation; measurement skipped",
                    ),
                )
                continue
            missing = _unsimulated(sim, level)
            if missing is not None:
                outcomes[gpu.uuid] = GpuOutcome(
                    uuid=gpu.uuid,
                    measurements=None,
                    skipped=(Reason.NOT_SIMULATED.value, missing),
                )
                continue
            outcomes[gpu.uuid] = GpuOutcome(
                uuid=gpu.uuid, measurements=_simulated_measurements(sim, level)
            )
        return outcomes

    def software(self, inventory: Inventory) -> Software:
        sw = self.fleet.spec.software
        return Software(
            agent_version=VERSION,
            driver_version=sw.driver_version,
            cuda_driver_version=sw.cuda_driver_version,
            nvml_version=sw.nvml_version,
            torch_version=sw.torch_version,
            triton_version=sw.triton_version,
        )

    def close(self) -> None:
        return None


def _unsimulated(sim: SimulatedGpu, level: str) -> str | None:
    """Why the fleet file cannot stand in for this level's GEMM measurement, if it cannot.

    Without it the GPU would count as never measured and be asked again on every
    wake-up; skipped, it is asked again next round and the profile says why.
    (Missing compile timings already become a NotSimulated compile result.)
    """
    if sim.model.gemm:
        return None
    return (
        f"GPU {sim.device.index}: the fleet file gives no gemm results for "
        f"{sim.model.product}, so level {level} cannot be simulated; add them or run the "
        "agent with --level inventory"
    )


def _simulated_measurements(sim: SimulatedGpu, level: str) -> Measurements:
    gemm = []
    for g in sim.model.gemm:
        if g.fail is not None:
            gemm.append(
                GemmMeasurement(
                    ok=False,
                    reason=g.fail,
                    message=g.message or f"simulated failure: {g.fail}",
                    size=g.size,
                )
            )
            continue
        gemm.append(
            GemmMeasurement(
                ok=True,
                size=g.size,
                best_config=g.best_config,
                configs_tried=g.configs_tried,
                triton_flops=g.triton_tflops * 1e12,
                cublas_flops=g.cublas_tflops * 1e12,
                ratio_to_cublas=g.triton_tflops / g.cublas_tflops,
                autotune_seconds=g.autotune_seconds,
                rel_error=g.rel_error,
            )
        )
    compile_: CompileMeasurement | None = None
    spec = sim.model.compile
    if level == "full" and spec is None:
        compile_ = CompileMeasurement(
            ok=False,
            reason=Reason.NOT_SIMULATED.value,
            message=f"the fleet file gives no compile timings for {sim.model.product}",
            block="(none)",
        )
    elif level == "full" and spec is not None:
        if spec.fail is not None:
            compile_ = CompileMeasurement(
                ok=False,
                reason=spec.fail,
                message=spec.message or f"simulated failure: {spec.fail}",
                block=spec.block,
            )
        else:
            default = spec.modes[Mode.DEFAULT].step_ms
            compile_ = CompileMeasurement(
                ok=True,
                block=spec.block,
                eager_step_seconds=spec.eager_step_ms / 1e3 if spec.eager_step_ms else None,
                modes=[
                    ModeTiming(
                        mode=mode,
                        step_seconds=t.step_ms / 1e3,
                        compile_seconds=t.compile_seconds,
                        gain=default / t.step_ms - 1.0,
                    )
                    for mode, t in spec.modes.items()
                ],
            )
    return Measurements(gemm=gemm, compile=compile_)


def select(*, simulate: Path | str | None, node_name: str | None) -> Backend:
    """The backend the flags ask for: a fleet file only when named, else NVML."""
    if simulate is not None:
        if not node_name:
            raise ValueError("--simulate needs the node to play (--node-name or --node)")
        return SimulationBackend(simulate, node_name)
    return NvmlBackend()
