"""Typed models of the custom resources: the one source of truth.

The CRD manifests in crds/ and in the chart are generated from these classes
(`maxtune crds --write`), and a test fails when they drift. The agent writes
`GPUNodeProfile.status` with them; the operator and the CLI read it with them.
Field names are snake_case in Python and camelCase on the wire.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from maxtune.contract.modes import Mode
from maxtune.contract.precision import published


class ApiModel(BaseModel):
    """camelCase on the wire; unknown fields ignored so newer writers don't break older readers."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", use_enum_values=False
    )

    def wire(self) -> dict[str, Any]:
        """The JSON-ready form the API server stores."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


NonNegInt = Annotated[int, Field(ge=0)]
MAX_ROUNDS = 64  # per mode and measurement, all processes together
SmCount = Annotated[int, Field(ge=1, le=100_000, description="Streaming multiprocessors")]
Seconds = Annotated[float, Field(ge=0)]
TorchMinor = Annotated[
    str,
    Field(
        pattern=r"^[0-9]+\.[0-9]+$",
        description="torch MAJOR.MINOR whose is_big_gpu rule applies, e.g. 2.11",
    ),
]
EnvName = Annotated[str, Field(pattern=r"^[A-Z_][A-Z0-9_]*$", max_length=128)]
Reason = Annotated[str, Field(pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$", max_length=64)]


# ---------------------------------------------------------------- GPUNodeProfile


class Condition(ApiModel):
    """Kubernetes-style condition; types: Inventoried, GemmMeasured, CompileMeasured, Ready."""

    type: Annotated[str, Field(max_length=64)]
    status: Literal["True", "False", "Unknown"]
    reason: Reason
    message: Annotated[str, Field(max_length=4096)] = ""
    last_transition_time: datetime


class GateVerdict(ApiModel):
    """is_big_gpu's answer for this device under `torch_version`, and the rule that gave it."""

    capable: bool
    rule: str
    torch_version: TorchMinor


class GemmMeasurement(ApiModel):
    """The project's reference Triton GEMM, autotuned on the node, against cuBLAS (same run)."""

    ok: bool
    reason: Reason | None = None
    message: str | None = None
    size: Annotated[int, Field(ge=1)]
    dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"
    best_config: str | None = None
    configs_tried: NonNegInt = 0
    triton_flops: Annotated[float, Field(ge=0, description="FLOP/s of the tuned Triton GEMM")] = 0.0
    cublas_flops: Annotated[float, Field(ge=0, description="FLOP/s of cuBLAS, same run")] = 0.0
    ratio_to_cublas: Annotated[float, Field(ge=0)] = 0.0
    autotune_seconds: Seconds = 0.0
    rel_error: Annotated[float, Field(ge=0)] | None = None


class ModeTiming(ApiModel):
    """Step and compile time of a reference block under one torch.compile mode.

    Step times come from interleaved rounds (every mode timed in each round, so drift
    hits all alike); `gain` is the median of the per-round paired gains over default and
    [`gainLow`, `gainHigh`] its confidence interval, widened over every timing process
    (docs/decisions/0012-stable-gains.md).
    """

    mode: Mode
    step_seconds: Annotated[float, Field(gt=0)] = Field(
        description="Median step time over every round of every timing process"
    )
    compile_seconds: Seconds = Field(
        description="Cold compile: fresh Inductor and Triton caches, first call"
    )
    warm_compile_seconds: Seconds | None = Field(
        default=None,
        description="Compile in a later process on the caches the cold compile filled",
    )
    gain: float = Field(
        description="Median over rounds of default step / this step - 1 (positive = faster)"
    )
    gain_low: float | None = Field(
        default=None, description="Lower bound of the gain's interval (absent: not measured)"
    )
    gain_high: float | None = Field(default=None, description="Upper bound of the interval")
    round_step_seconds: list[Annotated[float, Field(gt=0)]] = Field(
        default_factory=list,
        max_length=MAX_ROUNDS,
        description="Median step time of each round, process after process, in timing order",
    )


Workload = Literal["inference", "training"]


class CompileMeasurement(ApiModel):
    """torch.compile default against max-autotune (with and without CUDA graphs), measured."""

    ok: bool
    reason: Reason | None = None
    message: str | None = None
    block: str = Field(description="The reference block and its shapes")
    workload: Workload = Field(
        default="inference",
        description="inference: forward under no_grad; training: forward, backward and "
        "optimizer step",
    )
    eager_step_seconds: Annotated[float, Field(ge=0)] | None = None
    processes: NonNegInt = Field(
        default=0, description="Processes whose rounds were timed (the first compiled cold)"
    )
    rounds: NonNegInt = Field(default=0, description="Interleaved timing rounds per process")
    calls_per_round: NonNegInt = Field(
        default=0, description="Timed calls per mode and round (their median is the round's)"
    )
    confidence: Annotated[float, Field(ge=0, le=1)] | None = Field(
        default=None, description="Smallest nominal coverage of the modes' gain intervals"
    )
    modes: list[ModeTiming] = []


class Measurements(ApiModel):
    gemm: list[GemmMeasurement] = []
    compile: CompileMeasurement | None = Field(
        default=None, description="The inference reference (GEMM-heavy MLP), reported"
    )
    training: CompileMeasurement | None = Field(
        default=None,
        description="The training reference (transformer block step); the advice rests on it",
    )


class MigInstance(ApiModel):
    """A MIG compute instance: SMs read from NVML; measured on the slice when it passes the gate."""

    profile: Annotated[str, Field(pattern=r"^[0-9a-z.+]+$", max_length=48)]
    resource: Annotated[str, Field(pattern=r"^nvidia\.com/(gpu|mig-[0-9a-z.+]+)$")] | None = Field(
        default=None,
        description="What the slice is scheduled as: nvidia.com/mig-<profile> (mixed "
        "strategy), nvidia.com/gpu (single); absent when the device plugin advertises "
        "nothing for it (strategy none, or an invalid single layout)",
    )
    uuid: str | None = None
    gpu_instance_id: NonNegInt | None = None
    compute_instance_id: NonNegInt | None = None
    sm_count: SmCount | None = None
    gpu_class: str
    verdict: GateVerdict
    measurements: Measurements | None = None


class Gpu(ApiModel):
    """One physical GPU as the agent found it."""

    index: NonNegInt
    uuid: str
    product: str
    memory_mib: NonNegInt
    compute_capability: Annotated[str, Field(pattern=r"^[0-9]+\.[0-9]+$")]
    sm_count: SmCount | None = Field(
        default=None, description="CUDA MULTIPROCESSOR_COUNT; absent when it could not be read"
    )
    mig_enabled: bool = False
    resource: str | None = Field(
        default=None,
        description="nvidia.com/gpu when the device plugin advertises the GPU whole; absent "
        "when its MIG slices are scheduled instead",
    )
    gpu_class: str
    verdict: GateVerdict
    mig_instances: list[MigInstance] = []
    measurements: Measurements | None = None


class Software(ApiModel):
    agent_version: str
    driver_version: str | None = None
    cuda_driver_version: str | None = None
    torch_version: str | None = None
    triton_version: str | None = None
    nvml_version: str | None = None


class CompileCacheProof(ApiModel):
    """The agent's proof of one sharing group's compile cache on this node: its reference
    block compiled twice through the group's Redis, each time in a fresh process with an
    empty local cache, under a key tag of its own (docs/decisions/0030-compile-cache.md).
    Never part of a verdict: a broken cache costs compile time, not capability."""

    group: str = Field(max_length=63, description="Sharing group (compileCache.groups[].name)")
    gpu_class: str | None = Field(default=None, description="Class of the GPU compiled on")
    mode: str = Field(max_length=64, description="torch.compile mode of both compiles")
    reachable: bool = Field(description="The agent's user authenticated and read a key")
    hit: bool = Field(
        default=False, description="The warm compile was served by the cache (torch's counters)"
    )
    cold_seconds: Seconds | None = Field(default=None, description="First compile, empty cache")
    warm_seconds: Seconds | None = Field(
        default=None, description="Second compile, fresh process, served by the remote cache"
    )
    saved_seconds: float | None = Field(
        default=None, description="cold - warm: what the cache saves a pod per start"
    )
    measured_time: datetime
    reason: Reason | None = Field(
        default=None,
        description="Why the proof failed: NoRedisPackage, BadUrl, Unreachable, AuthRefused, "
        "CompileFailed, Timeout, WarmMiss",
    )
    error: str | None = Field(default=None, max_length=400)

    @property
    def works(self) -> bool:
        return self.reachable and self.hit


class ModeAdvice(ApiModel):
    """One max-autotune mode judged against default on the training reference."""

    mode: Mode
    gain: float = Field(description="Median measured gain over default")
    gain_low: float = Field(description="Lower bound of the gain's interval")
    gain_high: float = Field(description="Upper bound of the gain's interval")
    step_seconds: Annotated[float, Field(gt=0)] = Field(description="Default's step time")
    extra_compile_seconds: float = Field(description="Cold compile seconds beyond default's")
    warm_extra_compile_seconds: float | None = Field(
        default=None, description="The same with warm caches (a shared compile cache)"
    )
    break_even_steps: NonNegInt | None = Field(
        default=None,
        description="Reference steps until the extra cold compile is paid back at the lower "
        "gain; absent: never (the lower gain is not positive)",
    )
    warm_break_even_steps: NonNegInt | None = None
    recommended: bool
    reason: Annotated[str, Field(max_length=512)]


class ResourceSummary(ApiModel):
    """What a pod requesting `name` gets on this node: the webhook decides from this."""

    name: Annotated[str, Field(pattern=r"^nvidia\.com/(gpu|mig-[0-9a-z.+]+)$")]
    count: NonNegInt
    sm_count: SmCount | None = None
    capable: bool
    gpu_class: str
    recommended_mode: Mode
    measured_gain: float | None = Field(
        default=None, description="Gain of the mode the advice is about (see `mode`)"
    )
    mig_profile: str | None = Field(
        default=None,
        description="Set when the resource is MIG slices (also nvidia.com/gpu under the "
        "single strategy): the slice's profile",
    )
    mode: Mode | None = Field(
        default=None,
        description="The max-autotune mode the figures below are about: the recommended "
        "one, else the best measured",
    )
    gain_low: float | None = None
    gain_high: float | None = None
    extra_compile_seconds: float | None = None
    break_even_steps: NonNegInt | None = None
    advice: Annotated[str, Field(max_length=2048)] = Field(
        default="", description="Why this mode, in words, with the measured numbers"
    )
    modes: list[ModeAdvice] = Field(default_factory=list, max_length=4)


class ProfileSummary(ApiModel):
    """The node at a glance (printer columns and the node labels come from here)."""

    gpus: NonNegInt
    sm_count: SmCount | None = None
    capable: bool
    recommended_mode: Mode
    gpu_class: str | None = None


MigStrategy = Literal["none", "single", "mixed"]


class ProfileSpec(ApiModel):
    node_name: Annotated[str, Field(min_length=1, max_length=253)]


class ProfileStatus(ApiModel):
    source: Literal["nvml", "simulation", "none"]
    simulation: str | None = Field(
        default=None, description="Name of the simulated fleet file; set only for simulations"
    )
    level: Literal["inventory", "gemm", "full"]
    mig_strategy: MigStrategy = Field(
        default="mixed",
        description="How the device plugin schedules MIG slices here (its MIG_STRATEGY): "
        "mixed: nvidia.com/mig-<profile>; single: every slice is an nvidia.com/gpu; none: "
        "MIG slices are not scheduled",
    )
    heartbeat_time: datetime
    measured_time: datetime | None = None
    fingerprint: str = Field(description="Hash of hardware, driver and torch; re-measure on change")
    software: Software
    gpus: list[Gpu] = []
    resources: list[ResourceSummary] = []
    summary: ProfileSummary
    conditions: list[Condition] = []
    compile_cache: list[CompileCacheProof] = Field(
        default=[],
        max_length=32,
        description="The agent's proof of each sharing group's compile cache (empty: none "
        "configured, or not proved yet)",
    )

    def wire(self) -> dict[str, Any]:
        """As published: measured numbers to six significant digits (contract.precision)."""
        wire: dict[str, Any] = published(super().wire())
        return wire


class ObjectMeta(ApiModel):
    name: str
    namespace: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    resource_version: str | None = None
    uid: str | None = None
    creation_timestamp: datetime | None = None


class GPUNodeProfile(ApiModel):
    """One per node, named after it, written by that node's agent."""

    crd_plural: ClassVar[str] = "gpunodeprofiles"
    crd_singular: ClassVar[str] = "gpunodeprofile"
    crd_short_names: ClassVar[tuple[str, ...]] = ("gnp", "gpuprofile")
    crd_scope: ClassVar[str] = "Cluster"
    crd_printer_columns: ClassVar[tuple[tuple[str, str, str, str], ...]] = (
        # name, type, jsonPath, description
        ("GPUs", "integer", ".status.summary.gpus", "GPUs on the node"),
        ("SMs", "integer", ".status.summary.smCount", "Smallest SM count among whole GPUs"),
        ("Capable", "boolean", ".status.summary.capable", "Passes the max-autotune gate"),
        ("Mode", "string", ".status.summary.recommendedMode", "Recommended torch.compile mode"),
        ("Class", "string", ".status.summary.gpuClass", "GPU class key"),
        ("Age", "date", ".metadata.creationTimestamp", ""),
    )
    crd_validations: ClassVar[tuple[dict[str, str], ...]] = (
        {
            "rule": "self.metadata.name == self.spec.nodeName",
            "message": "a GPUNodeProfile is named after its node: metadata.name must equal "
            "spec.nodeName",
        },
    )

    api_version: Literal["maxtune.io/v1alpha1"] = "maxtune.io/v1alpha1"
    kind: Literal["GPUNodeProfile"] = "GPUNodeProfile"
    metadata: ObjectMeta
    spec: ProfileSpec
    status: ProfileStatus | None = None

    def wire(self) -> dict[str, Any]:
        """The object with its status as published (ProfileStatus.wire), dumped once."""
        wire = self.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"status"})
        if self.status is not None:
            wire["status"] = self.status.wire()
        return wire


# ---------------------------------------------------------------- AutotunePolicy


class TorchRule(ApiModel):
    version: TorchMinor | None = Field(
        default=None,
        description="torch MAJOR.MINOR of the workloads; decides the is_big_gpu rule. "
        "Absent: the newest rule maxtune knows.",
    )


class Recipe(ApiModel):
    env: dict[str, Annotated[str, Field(max_length=4096)]] = Field(
        default_factory=dict,
        max_length=64,
        description="Environment variables set on GPU containers for this mode",
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.all(k, k.matches('^[A-Z_][A-Z0-9_]*$'))",
                    "message": "recipe env names must be environment variable names such as "
                    "TORCHINDUCTOR_MAX_AUTOTUNE (upper case, digits, underscores)",
                }
            ]
        },
    )


class CompileCacheRule(ApiModel):
    enabled: bool = Field(
        default=True,
        description="Hand opted-in GPU containers the compile cache of their namespace's "
        "sharing group, where the chart set one up (compileCache); false: never",
    )
    classes: list[Annotated[str, Field(max_length=128)]] = Field(
        default_factory=list,
        max_length=64,
        description="Only for pods whose every candidate node is of one of these GPU "
        "classes (maxtune.io/gpu-class); empty: every class",
    )


class PolicySpec(ApiModel):
    torch: TorchRule = Field(default_factory=TorchRule)
    compile_cache: CompileCacheRule = Field(default_factory=CompileCacheRule)
    steering: Literal["require", "none"] = Field(
        default="none",
        description="none (the default): keep placement and choose settings valid on every "
        "node the pod may land on; require: narrow placement (node affinity) to GPU classes "
        "where a stronger mode holds, but only within speedTolerance of the fastest "
        "candidate class and only onto minCapacityShare of the candidate GPUs. A pod may "
        "ask for either with the annotation maxtune.io/steering",
    )
    speed_tolerance: Annotated[float, Field(ge=0, le=10)] = Field(
        default=0.05,
        description="Steering never confines a pod to a class whose measured reference step, "
        "in the mode it would get, is slower than the fastest candidate class's by more "
        "than this (0.05 = 5%)",
    )
    min_capacity_share: Annotated[float, Field(ge=0, le=1)] = Field(
        default=0.5,
        description="Steering never confines a pod to classes holding less than this share "
        "of the GPUs it could otherwise use (allocatable, every candidate node)",
    )
    min_measured_gain: Annotated[float, Field(ge=0, le=10)] = Field(
        default=0.03,
        description="Smallest speed-up over default mode (0.03 = 3%) that the lower bound "
        "of a max-autotune mode's measured gain interval must reach before it is recommended",
    )
    max_extra_compile_seconds: Annotated[float, Field(ge=0, le=86_400)] | None = Field(
        default=None,
        description="Largest extra cold-compile time over default, on the training "
        "reference, a recommended mode may cost; absent: no bound",
    )
    max_break_even_steps: Annotated[int, Field(ge=0, le=1_000_000_000)] | None = Field(
        default=None,
        description="Recommend a mode only if its extra compile time pays back within this "
        "many steps of the training reference, at the lower bound of its gain; absent: "
        "no bound",
    )
    namespaces: list[Annotated[str, Field(max_length=63)]] = Field(
        default_factory=list, description="Namespaces this policy applies to; empty: all"
    )
    stale_after_seconds: Annotated[int, Field(ge=30, le=86_400)] = Field(
        default=300, description="A profile without a heartbeat for this long loses its labels"
    )
    recipes: dict[str, Recipe] = Field(
        default_factory=dict,
        max_length=3,
        description="Per-mode environment overrides (keys: default, max-autotune, "
        "max-autotune-no-cudagraphs); absent modes use maxtune's built-in recipes",
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.all(k, k in ['default', 'max-autotune', "
                    "'max-autotune-no-cudagraphs'])",
                    "message": "recipes keys must be torch.compile modes: default, "
                    "max-autotune or max-autotune-no-cudagraphs",
                }
            ]
        },
    )


class AutotunePolicy(ApiModel):
    """The knobs: torch rule, recipes per mode, steering, namespaces, minimum measured gain."""

    crd_plural: ClassVar[str] = "autotunepolicies"
    crd_singular: ClassVar[str] = "autotunepolicy"
    crd_short_names: ClassVar[tuple[str, ...]] = ("atp",)
    crd_scope: ClassVar[str] = "Cluster"
    crd_printer_columns: ClassVar[tuple[tuple[str, str, str, str], ...]] = (
        ("Torch", "string", ".spec.torch.version", "torch rule"),
        ("Steering", "string", ".spec.steering", "require or none"),
        ("Min-Gain", "number", ".spec.minMeasuredGain", "Smallest measured gain"),
        ("Age", "date", ".metadata.creationTimestamp", ""),
    )
    crd_validations: ClassVar[tuple[dict[str, str], ...]] = ()

    api_version: Literal["maxtune.io/v1alpha1"] = "maxtune.io/v1alpha1"
    kind: Literal["AutotunePolicy"] = "AutotunePolicy"
    metadata: ObjectMeta
    spec: PolicySpec = Field(default_factory=PolicySpec)
