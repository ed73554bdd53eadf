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
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Protocol

from maxtune.agent import measure as measuring
from maxtune.agent import smcount
from maxtune.agent.failures import Reason
from maxtune.agent.fleetfile import Fleet, SimCompile, SimGemm, SimulatedGpu
from maxtune.agent.fleetfile import load as load_fleet
from maxtune.agent.inventory import Inventory, Source
from maxtune.agent.measure import GpuOutcome
from maxtune.agent.nvml import NvmlInventory
from maxtune.agent.targets import Target, targets
from maxtune.cli.version import VERSION
from maxtune.contract import gate
from maxtune.contract.gpuclass import gpu_class
from maxtune.contract.models import (
    CompileCacheProof,
    CompileMeasurement,
    GemmMeasurement,
    Measurements,
    MigStrategy,
    Software,
    Workload,
)
from maxtune.contract.rounds import BlockRounds, ModeRounds, compile_measurement, spread_rounds

REASON_SM_UNREAD = "SmCountUnavailable"
# Simulated proof failures that happen before the cache answered.
_UNREACHED = ("NoRedisPackage", "BadUrl", "Unreachable", "AuthRefused")


class Backend(Protocol):
    @property
    def source(self) -> Source: ...

    def inventory(self) -> Inventory: ...

    def targets(self, inventory: Inventory) -> list[Target]: ...

    def measure(self, inventory: Inventory, level: str) -> dict[str, GpuOutcome]: ...

    def mig_strategy(self) -> MigStrategy | None: ...

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

    def targets(self, inventory: Inventory) -> list[Target]:
        """Whole GPUs and the MIG slices that pass the installed torch's gate."""
        return targets(inventory, gate.default_torch_version())

    def measure(self, inventory: Inventory, level: str) -> dict[str, GpuOutcome]:
        def busy(target: Target) -> tuple[int, ...]:
            try:
                return self._nvml.busy_pids(target.uuid)
            except Exception:
                return target.busy_pids

        return measuring.measure(
            self.targets(inventory), level, sizes=self._sizes, budgets=self._budgets, busy=busy
        )

    def mig_strategy(self) -> MigStrategy | None:
        return None  # the agent's flag (the chart's MIG_STRATEGY) says

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

    def targets(self, inventory: Inventory) -> list[Target]:
        return targets(inventory, self.fleet.spec.software.torch_version)

    def mig_strategy(self) -> MigStrategy | None:
        return self.fleet.strategies.get(self.node_name)

    def _simulated(self) -> dict[str, _SimDevice]:
        found: dict[str, _SimDevice] = {}
        for sim in self._gpus:
            gpu = sim.device
            model = sim.model
            found[gpu.uuid] = _SimDevice(
                f"GPU {gpu.index}",
                model.product,
                model.gemm,
                model.compile,
                model.training,
                sim.busy,
            )
            for dev, spec in zip(gpu.mig, sim.mig, strict=True):
                if dev.uuid is not None:
                    found[dev.uuid] = _SimDevice(
                        f"GPU {gpu.index} MIG {spec.profile}",
                        f"{model.product} MIG {spec.profile}",
                        spec.gemm,
                        spec.compile,
                        spec.training,
                        spec.busy,
                    )
        return found

    def measure(self, inventory: Inventory, level: str) -> dict[str, GpuOutcome]:
        if level == "inventory":
            return {}
        simulated = self._simulated()
        outcomes: dict[str, GpuOutcome] = {}
        for target in self.targets(inventory):
            sim = simulated[target.uuid]
            if sim.busy:
                outcomes[target.uuid] = GpuOutcome(
                    uuid=target.uuid,
                    measurements=None,
                    skipped=(
                        Reason.GPU_BUSY.value,
                        f"{target.label} is busy in the simulation; measurement skipped",
                    ),
                )
                continue
            if not sim.gemm:
                # Without results the device would count as never measured and be asked
                # again on every wake-up; skipped, it is asked again next round and the
                # profile says why.
                outcomes[target.uuid] = GpuOutcome(
                    uuid=target.uuid,
                    measurements=None,
                    skipped=(
                        Reason.NOT_SIMULATED.value,
                        f"{target.label}: the fleet file gives no gemm results for "
                        f"{sim.product}, so level {level} cannot be simulated; add them or "
                        "run the agent with --level inventory",
                    ),
                )
                continue
            outcomes[target.uuid] = GpuOutcome(
                uuid=target.uuid, measurements=_simulated_measurements(sim, level)
            )
        return outcomes

    def simulated_cache_groups(self) -> list[str]:
        """The groups the fleet file gives this node proofs for (its first GPU's model)."""
        return [c.group for c in self._gpus[0].model.compile_cache] if self._gpus else []

    def cache_proofs(self, inventory: Inventory) -> list[CompileCacheProof]:
        """The fleet file's compile-cache proofs for this node (its first GPU's model): no
        Redis is contacted and no compile runs; `simulation` in the status says so."""
        if not self._gpus:
            return []
        first = self._gpus[0]
        cls = gpu_class(first.device.product, first.device.sm_count)
        now = datetime.now(UTC).replace(microsecond=0)
        proofs = []
        for sim in first.model.compile_cache:
            ok = sim.fail is None
            proofs.append(
                CompileCacheProof(
                    group=sim.group,
                    gpu_class=cls,
                    mode=sim.mode.value,
                    reachable=sim.fail not in _UNREACHED,
                    hit=ok,
                    cold_seconds=sim.cold_seconds if ok else None,
                    warm_seconds=sim.warm_seconds if ok else None,
                    saved_seconds=round(sim.cold_seconds - sim.warm_seconds, 3) if ok else None,
                    measured_time=now,
                    reason=sim.fail,
                    error=None if ok else (sim.message or f"simulated failure: {sim.fail}"),
                )
            )
        return proofs

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


@dataclass(frozen=True, slots=True)
class _SimDevice:
    """A simulated device's results: a GPU model's, or a MIG slice's own."""

    label: str
    product: str
    gemm: list[SimGemm]
    compile: SimCompile | None
    training: SimCompile | None
    busy: bool


SIMULATED_BLOCKS = {
    "training": "transformer block train step (simulated)",
    "inference": "mlp gelu(x@w1)@w2 bf16 4096x4096x16384 (simulated)",
}


def simulated_block(
    spec: SimCompile | None, workload: Workload, product: str
) -> CompileMeasurement:
    """A fleet file's timings as a measurement, through the real interval arithmetic."""
    block = SIMULATED_BLOCKS[workload]
    if spec is None:
        return CompileMeasurement(
            ok=False,
            reason=Reason.NOT_SIMULATED.value,
            message=f"the fleet file gives no {workload} timings for {product}",
            block=block,
            workload=workload,
        )
    if spec.fail is not None:
        return CompileMeasurement(
            ok=False,
            reason=spec.fail,
            message=spec.message or f"simulated failure: {spec.fail}",
            block=spec.block or block,
            workload=workload,
        )
    modes = []
    for seed, (mode, t) in enumerate(spec.modes.items()):
        if t.round_step_ms is not None:
            flat = [ms / 1e3 for ms in t.round_step_ms]
            rounds = tuple(
                tuple(flat[p * spec.rounds : (p + 1) * spec.rounds]) for p in range(spec.processes)
            )
        else:
            rounds = spread_rounds(
                t.step_ms / 1e3,
                t.spread,
                processes=spec.processes,
                rounds=spec.rounds,
                seed=seed + (100 if workload == "training" else 0),
            )
        modes.append(
            ModeRounds(
                mode=mode,
                compile_seconds=t.compile_seconds,
                warm_compile_seconds=t.warm_compile_seconds if spec.processes > 1 else None,
                rounds=rounds,
            )
        )
    eager = ((spec.eager_step_ms / 1e3,) * spec.rounds,) if spec.eager_step_ms is not None else ()
    return compile_measurement(
        BlockRounds(
            block=spec.block or block,
            workload=workload,
            calls_per_round=spec.calls_per_round,
            modes=tuple(modes),
            eager_rounds=eager,
        )
    )


def _simulated_measurements(sim: _SimDevice, level: str) -> Measurements:
    gemm = []
    for g in sim.gemm:
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
    if level != "full":
        return Measurements(gemm=gemm)
    return Measurements(
        gemm=gemm,
        compile=simulated_block(sim.compile, "inference", sim.product),
        training=simulated_block(sim.training, "training", sim.product),
    )


def select(*, simulate: Path | str | None, node_name: str | None) -> Backend:
    """The backend the flags ask for: a fleet file only when named, else NVML."""
    if simulate is not None:
        if not node_name:
            raise ValueError("--simulate needs the node to play (--node-name or --node)")
        return SimulationBackend(simulate, node_name)
    return NvmlBackend()
