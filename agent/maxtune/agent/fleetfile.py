"""The simulation fleet file: nodes, their GPUs and MIG slices, and measurement results.

A fleet file stands in for hardware on machines without GPUs (the demo, the
fleet tests and benchmarks). It is only ever used when named explicitly
(`--simulate FILE`), and everything built from it says `source: simulation`.

    name: demo
    gpuModels:
      h100:
        product: NVIDIA H100 80GB HBM3
        memoryMib: 81559
        computeCapability: "9.0"
        smCount: 132
        gemm:
          - {size: 4096, tritonTflops: 720, cublasTflops: 726, autotuneSeconds: 1.8}
        training:                   # the training reference: the advice rests on it
          modes:
            default: {stepMs: 1.10, compileSeconds: 6.0, warmCompileSeconds: 2.0}
            max-autotune: {stepMs: 0.98, compileSeconds: 21.0, spread: 0.01}
        compile:                    # the inference MLP, reported
          eagerStepMs: 1.70
          modes:
            default: {stepMs: 1.62, compileSeconds: 3.8}
            max-autotune: {stepMs: 1.55, compileSeconds: 9.1}
        compileCache:               # the agent's proof of each sharing group's cache
          - {group: ml, coldSeconds: 11.3, warmSeconds: 1.1}
          - {group: vision, fail: AuthRefused, message: "invalid username-password pair"}
    nodes:
      - name: gpu-a
        gpus:
          - {model: h100, count: 8}
      - name: "h100-{i:03d}"        # 100 nodes h100-000 .. h100-099
        replicas: 100
        gpus: [{model: h100}]
      - name: gpu-mig
        gpus:
          - model: h100
            mig:
              - {profile: 3g.40gb, smCount: 60, count: 2}
      - name: gpu-mig-single       # the device plugin's single strategy on this node
        migStrategy: single
        gpus:
          - model: h100
            count: 2
            mig:                   # a 7g slice passes the gate: measured on itself, so
              - profile: 7g.80gb     # it takes gemm, compile and training like a model
                smCount: 132

Bad files fail with one message that names the file, the place and the fix;
unknown keys are errors (a typo must not silently drop a GPU).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from string import Formatter
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from maxtune.agent.inventory import GpuDevice, MigDevice
from maxtune.contract.models import MigStrategy
from maxtune.contract.modes import Mode

_NODE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
# The format of {i} in a replicated node's name: fill, width up to 2 digits, an integer type.
_INDEX_FORMAT = re.compile(r"^0?[0-9]?[0-9]?[dxXob]?$")
_MIG_PROFILE = re.compile(r"^([0-9]+c\.)?[0-9]+g\.[0-9]+gb(\+[a-z.]+)?$")
_FAILURE_REASONS = (
    "TritonCompileFailed",
    "OutOfMemory",
    "Timeout",
    "DeviceLost",
    "GPUBusy",
    "WrongResult",
    "CudaError",
)


class FleetError(ValueError):
    """A fleet file that cannot be used; the message says where and why."""


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class SimGemm(_Model):
    size: Annotated[int, Field(ge=16, le=65536)]
    triton_tflops: Annotated[float, Field(ge=0)] = 0.0
    cublas_tflops: Annotated[float, Field(ge=0)] = 0.0
    autotune_seconds: Annotated[float, Field(ge=0)] = 0.0
    best_config: str = "128x256x64 g8 s3 w8 persistent"
    configs_tried: Annotated[int, Field(ge=0)] = 8
    rel_error: Annotated[float, Field(ge=0)] = 1.7e-3
    fail: Literal[_FAILURE_REASONS] | None = None  # type: ignore[valid-type]
    message: str | None = None

    @model_validator(mode="after")
    def _measured_or_failed(self) -> SimGemm:
        if self.fail is None and (self.triton_tflops <= 0 or self.cublas_tflops <= 0):
            raise ValueError(
                "a simulated GEMM needs tritonTflops and cublasTflops > 0, or `fail: <reason>`"
            )
        return self


class SimModeTiming(_Model):
    step_ms: Annotated[float, Field(gt=0)]
    compile_seconds: Annotated[float, Field(ge=0)] = 0.0
    warm_compile_seconds: Annotated[float, Field(ge=0)] | None = None
    # Rounds scatter within +-spread of stepMs (seeded, the same on every run), unless
    # roundStepMs lists them: rounds x processes values, process after process.
    spread: Annotated[float, Field(ge=0, le=0.5)] = 0.005
    round_step_ms: list[Annotated[float, Field(gt=0)]] | None = None


class SimCompile(_Model):
    """A reference block's simulated timings; the same interval arithmetic as a real one."""

    block: str | None = None
    eager_step_ms: Annotated[float, Field(gt=0)] | None = None
    rounds: Annotated[int, Field(ge=1, le=32)] = 10
    processes: Annotated[int, Field(ge=1, le=2)] = 2
    calls_per_round: Annotated[int, Field(ge=1)] = 20
    modes: dict[Mode, SimModeTiming] = Field(default_factory=dict)
    fail: Literal[_FAILURE_REASONS] | None = None  # type: ignore[valid-type]
    message: str | None = None

    @model_validator(mode="after")
    def _has_default(self) -> SimCompile:
        if self.fail is None and Mode.DEFAULT not in self.modes:
            raise ValueError(
                "simulated compile timings need the `default` mode (gains are "
                "relative to it), or `fail: <reason>`"
            )
        for mode, timing in self.modes.items():
            given = timing.round_step_ms
            if given is not None and len(given) != self.rounds * self.processes:
                raise ValueError(
                    f"{mode.value}: roundStepMs has {len(given)} values, rounds x processes "
                    f"is {self.rounds * self.processes}"
                )
        return self


_CACHE_REASONS = (
    "NoRedisPackage",
    "BadUrl",
    "Unreachable",
    "AuthRefused",
    "CompileFailed",
    "Timeout",
    "WarmMiss",
)


class SimCacheProof(_Model):
    """The agent's compile-cache proof as a simulated node of this model publishes it:
    the seconds a cold and a warm compile took, or why the proof failed."""

    group: Annotated[str, Field(min_length=1, max_length=63)]
    mode: Mode = Mode.MAX_AUTOTUNE_NO_CUDAGRAPHS
    cold_seconds: Annotated[float, Field(ge=0)] = 0.0
    warm_seconds: Annotated[float, Field(ge=0)] = 0.0
    fail: Literal[_CACHE_REASONS] | None = None  # type: ignore[valid-type]
    message: str | None = None


class SimGpuModel(_Model):
    product: Annotated[str, Field(min_length=1, max_length=96)]
    memory_mib: Annotated[int, Field(ge=1)]
    compute_capability: Annotated[str, Field(pattern=r"^[0-9]+\.[0-9]+$")]
    sm_count: Annotated[int, Field(ge=1, le=100_000)] | None = None
    gemm: list[SimGemm] = Field(default_factory=list)
    compile: SimCompile | None = None
    training: SimCompile | None = None
    # What a node of this model publishes as its compile-cache proof (one per group).
    compile_cache: list[SimCacheProof] = Field(default_factory=list)


class SimMig(_Model):
    """MIG slices of one profile; a slice that passes the gate is measured on itself, so
    the file may give its results like a GPU model's (gemm, compile, training)."""

    profile: str
    sm_count: Annotated[int, Field(ge=1, le=100_000)]
    count: Annotated[int, Field(ge=1, le=8)] = 1
    memory_mib: Annotated[int, Field(ge=1)] | None = None
    gemm: list[SimGemm] = Field(default_factory=list)
    compile: SimCompile | None = None
    training: SimCompile | None = None
    busy: bool = False

    @model_validator(mode="after")
    def _profile_shape(self) -> SimMig:
        if not _MIG_PROFILE.match(self.profile):
            raise ValueError(
                f"MIG profile {self.profile!r} is not of the form 1g.10gb, 1c.2g.20gb or 1g.10gb+me"
            )
        return self


class SimGpu(_Model):
    model: str
    count: Annotated[int, Field(ge=1, le=64)] = 1
    sm_count: Annotated[int, Field(ge=1, le=100_000)] | None = None  # overrides the model's
    mig: list[SimMig] = Field(default_factory=list)
    busy: bool = False  # another process holds the GPU: measurements are skipped (GPUBusy)


class SimNode(_Model):
    name: Annotated[str, Field(min_length=1, max_length=253)]
    replicas: Annotated[int, Field(ge=1, le=100_000)] = 1
    gpus: list[SimGpu] = Field(default_factory=list)
    # The device plugin's MIG strategy on this node (what the chart's MIG_STRATEGY says on
    # a real one); absent: the agent's own setting.
    mig_strategy: MigStrategy | None = None

    @model_validator(mode="after")
    def _pattern(self) -> SimNode:
        if self.replicas > 1 and "{i" not in self.name:
            raise ValueError(
                f"node {self.name!r} has replicas: {self.replicas} but no {{i}} in its name "
                '(for example name: "h100-{i:03d}")'
            )
        return self


class SimSoftware(_Model):
    driver_version: str = "580.159.04"
    cuda_driver_version: str = "13.0"
    nvml_version: str = "13.580.159.04"
    torch_version: str = "2.11.0"
    triton_version: str = "3.6.0"


class FleetSpec(_Model):
    name: Annotated[str, Field(min_length=1, max_length=63)]
    software: SimSoftware = Field(default_factory=SimSoftware)
    gpu_models: dict[str, SimGpuModel]
    nodes: list[SimNode]

    @model_validator(mode="after")
    def _references(self) -> FleetSpec:
        for n, node in enumerate(self.nodes):
            for g, gpu in enumerate(node.gpus):
                if gpu.model not in self.gpu_models:
                    known = ", ".join(sorted(self.gpu_models)) or "none defined"
                    raise ValueError(
                        f"nodes[{n}] ({node.name}) gpus[{g}]: unknown GPU model {gpu.model!r} "
                        f"(gpuModels: {known})"
                    )
        return self


@dataclass(frozen=True, slots=True)
class SimulatedGpu:
    device: GpuDevice
    model: SimGpuModel
    busy: bool
    mig: tuple[SimMig, ...] = ()  # the spec of each of device.mig, in the same order


@dataclass(frozen=True)
class Fleet:
    """A parsed fleet file: node name -> its simulated GPUs."""

    path: Path
    spec: FleetSpec
    nodes: dict[str, tuple[SimulatedGpu, ...]]
    strategies: dict[str, MigStrategy] = field(default_factory=dict)

    @property
    def file_name(self) -> str:
        return self.path.name

    def node(self, name: str) -> tuple[SimulatedGpu, ...]:
        try:
            return self.nodes[name]
        except KeyError:
            sample = ", ".join(sorted(self.nodes)[:8])
            more = f" and {len(self.nodes) - 8} more" if len(self.nodes) > 8 else ""
            raise FleetError(
                f"{self.path}: no node named {name!r} in this fleet (it has {sample}{more})"
            ) from None


def _check_pattern(pattern: str, where: str) -> None:
    """Only `{i}` fields with a short integer format (`{i:03d}`, `{i:x}`) are expanded.

    str.format would otherwise index, look up attributes, or pad to any width a file asks
    for (`{i:0999999999}` allocates gigabytes): a typo must give a message, not a crash.
    """
    try:
        fields = [(name, spec, conv) for _, name, spec, conv in Formatter().parse(pattern)]
    except ValueError as exc:
        raise FleetError(f"{where}: name pattern {pattern!r} cannot be expanded: {exc}") from None
    for name, spec, conversion in fields:
        if name is None:
            continue
        if name != "i" or conversion is not None or not _INDEX_FORMAT.match(spec or ""):
            raise FleetError(
                f"{where}: name pattern {pattern!r}: only {{i}} with an integer format such as "
                "{i:03d} or {i:x} can be expanded"
            )


def _expand_name(pattern: str, i: int, where: str) -> str:
    _check_pattern(pattern, where)
    try:
        name = pattern.format(i=i)
    except (KeyError, IndexError, ValueError) as exc:
        raise FleetError(f"{where}: name pattern {pattern!r} cannot be expanded: {exc}") from None
    if not _NODE_NAME.match(name):
        raise FleetError(
            f"{where}: {name!r} is not a valid node name (lower case letters, digits, '-' and '.')"
        )
    return name


def _stable_uuid(prefix: str, *parts: str) -> str:
    return f"{prefix}-{uuid.uuid5(uuid.NAMESPACE_URL, '/'.join(parts))}"


def _node_gpus(spec: FleetSpec, node: SimNode, name: str) -> tuple[SimulatedGpu, ...]:
    gpus: list[SimulatedGpu] = []
    for entry in node.gpus:
        model = spec.gpu_models[entry.model]
        major, minor = (int(x) for x in model.compute_capability.split("."))
        for _ in range(entry.count):
            index = len(gpus)
            mig: list[MigDevice] = []
            specs: list[SimMig] = []
            for slice_ in entry.mig:
                for _ in range(slice_.count):
                    specs.append(slice_)
                    mig.append(
                        MigDevice(
                            profile=slice_.profile,
                            uuid=_stable_uuid("MIG", spec.name, name, str(index), str(len(mig))),
                            gpu_instance_id=len(mig) + 1,
                            compute_instance_id=0,
                            sm_count=slice_.sm_count,
                            memory_mib=slice_.memory_mib,
                            busy_pids=(1,) if slice_.busy else (),
                        )
                    )
            sm = entry.sm_count if entry.sm_count is not None else model.sm_count
            device = GpuDevice(
                index=index,
                uuid=_stable_uuid("GPU", spec.name, name, str(index)),
                product=model.product,
                memory_mib=model.memory_mib,
                compute_capability=(major, minor),
                sm_count=sm,
                sm_source="simulation" if sm is not None else None,
                mig_enabled=bool(mig),
                mig=tuple(mig),
                pci_bus_id=f"00000000:{index + 1:02x}:00.0",
            )
            gpus.append(SimulatedGpu(device, model, entry.busy, tuple(specs)))
    return tuple(gpus)


def _format_errors(path: Path, exc: ValidationError) -> str:
    lines = []
    for error in exc.errors()[:10]:
        where = "".join(
            f"[{part}]" if isinstance(part, int) else f".{part}" for part in error["loc"]
        ).lstrip(".")
        message = str(error["msg"]).removeprefix("Value error, ")
        lines.append(f"  {where or '(top level)'}: {message}")
    more = len(exc.errors()) - 10
    if more > 0:
        lines.append(f"  ... and {more} more")
    return f"{path}: not a valid fleet file:\n" + "\n".join(lines)


def load(path: Path | str) -> Fleet:
    """Parse and check a fleet file; raise FleetError with a readable message."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise FleetError(f"{path}: fleet file not found") from None
    except OSError as exc:
        raise FleetError(f"{path}: cannot read the fleet file: {exc.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise FleetError(f"{path}: not valid YAML{where}: {problem}") from None
    if not isinstance(raw, dict):
        raise FleetError(f"{path}: a fleet file is a mapping with `name`, `gpuModels` and `nodes`")
    try:
        spec = FleetSpec.model_validate(raw)
    except ValidationError as exc:
        raise FleetError(_format_errors(path, exc)) from None
    nodes: dict[str, tuple[SimulatedGpu, ...]] = {}
    strategies: dict[str, MigStrategy] = {}
    for n, node in enumerate(spec.nodes):
        for i in range(node.replicas):
            where = f"{path}: nodes[{n}]"
            name = (
                _expand_name(node.name, i, where)
                if node.replicas > 1 or "{" in node.name
                else node.name
            )
            if not _NODE_NAME.match(name):
                raise FleetError(f"{where}: {name!r} is not a valid node name")
            if name in nodes:
                raise FleetError(f"{where}: node {name!r} is listed twice")
            nodes[name] = _node_gpus(spec, node, name)
            if node.mig_strategy is not None:
                strategies[name] = node.mig_strategy
    return Fleet(path=path, spec=spec, nodes=nodes, strategies=strategies)
