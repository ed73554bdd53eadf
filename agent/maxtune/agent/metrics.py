"""The agent's Prometheus metrics, rendered from its latest profile.

A collector on the agent's own CollectorRegistry (never the global one, so
several agents can live in one test process) that renders the current status
on every scrape: a GPU that disappears takes its series with it, and no series
can go stale. Every family is declared in METRICS (names, help, labels: see
maxtune.contract.metricspec for the rules and docs/metrics.md for the list).
Labels are bounded by the node's hardware (GPU index, UUID, product, class,
resource, size) and by the reference blocks and modes (`workload`: training, the
block the advice rests on, or inference; `mode`). The node itself is the scrape
target's `node` label.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from maxtune.cli.version import VERSION
from maxtune.contract.assess import gpu_capable, mig_capable
from maxtune.contract.metricspec import CONTENT_TYPE, Kind, MetricSpec, no_created_series
from maxtune.contract.models import CompileMeasurement, Measurements, ProfileStatus
from maxtune.contract.names import RESOURCE_GPU

__all__ = ["CONTENT_TYPE", "METRICS", "AgentMetrics"]

_GPU = ("gpu", "uuid", "product", "gpu_class")


def _spec(
    name: str, kind: Kind, help: str, labels: tuple[str, ...] = (), notes: str = ""
) -> MetricSpec:
    return MetricSpec(name, kind, help, "agent", labels, notes)


AGENT_INFO = _spec(
    "maxtune_agent_info",
    "info",
    "The maxtune agent and what it reads",
    ("version", "source", "simulation", "level", "torch_rule"),
    "Always 1. `source` is nvml or simulation (`simulation` names the fleet file); "
    "`torch_rule` is the torch version whose is_big_gpu rule the verdicts follow.",
)
LAST_PUBLISH = _spec(
    "maxtune_agent_last_profile_timestamp_seconds",
    "gauge",
    "Unix time of the last successful profile publish",
    notes="Every round publishes (a heartbeat at least), so `time() - this` growing past a few "
    "intervals means the agent cannot write its GPUNodeProfile. No series before the first "
    "publish.",
)
PUBLISH_ERRORS = _spec(
    "maxtune_agent_publish_errors_total",
    "counter",
    "Profile publishes that failed (each retry counts)",
)
STAGE_SECONDS = _spec(
    "maxtune_agent_last_measurement_stage_seconds",
    "gauge",
    "Wall seconds of each stage of the last measurement round",
    ("stage",),
)
SMS = _spec(
    "maxtune_gpu_streaming_multiprocessors",
    "gauge",
    "Streaming multiprocessors of a whole GPU or MIG instance, as read on the node",
    (*_GPU, "resource"),
    "Whole GPUs from the CUDA driver, MIG instances from NVML; no series when it could not be "
    "read.",
)
CAPABLE = _spec(
    "maxtune_gpu_max_autotune_capable",
    "gauge",
    "1 when torch's max-autotune GEMM gate passes (and no GEMM check failed), else 0",
    (*_GPU, "resource"),
)
GEMM_FLOPS = _spec(
    "maxtune_gpu_reference_gemm_flops",
    "gauge",
    "Reference GEMM FLOP/s (bf16, size^3) by implementation",
    (*_GPU, "size", "implementation"),
    "`implementation` is triton (the agent's autotuned Triton GEMM) or cublas; only for "
    "sizes that measured and checked correct.",
)
GEMM_RATIO = _spec(
    "maxtune_gpu_reference_gemm_ratio_to_cublas",
    "gauge",
    "The tuned Triton GEMM's speed over cuBLAS's, same run",
    (*_GPU, "size"),
)
GEMM_AUTOTUNE = _spec(
    "maxtune_gpu_reference_gemm_autotune_seconds",
    "gauge",
    "Wall seconds of the Triton GEMM autotune search, compiles included",
    (*_GPU, "size"),
)
GEMM_OK = _spec(
    "maxtune_gpu_reference_gemm_ok",
    "gauge",
    "1 when the reference Triton GEMM compiled, ran and matched cuBLAS; 0 when it failed",
    (*_GPU, "size", "reason"),
    "`reason` is empty on success, else a condition reason (TritonCompileFailed, WrongResult, "
    "OutOfMemory, Timeout, DeviceLost, ...). A GPU with a failed check is not reported capable.",
)
_BLOCK = (*_GPU, "workload")  # one series per reference block: training (the advice's), inference
_MODE = (*_BLOCK, "mode")
_ADVICE = ("resource", "gpu_class", "mode")

COMPILE_OK = _spec(
    "maxtune_gpu_compile_ok",
    "gauge",
    "1 when a torch.compile reference block measured in every mode; 0 when it failed",
    (*_BLOCK, "reason"),
    "Level `full` only. `workload` training is the transformer block step the advice rests on, "
    "inference the GEMM-heavy MLP reported beside it. `reason` as for the GEMM check; "
    "NotSimulated means a simulated fleet file gave no timings (not a failure on a node).",
)
GAIN = _spec(
    "maxtune_gpu_compile_gain_ratio",
    "gauge",
    "Measured speed-up of a torch.compile mode over default (0.05 = 5% faster): the median "
    "of the per-round paired gains",
    _MODE,
    'Select `workload="training"` for the figures the advice rests on. Whole GPUs, and MIG '
    "slices measured on themselves (their own `uuid` and `gpu_class`).",
)
GAIN_LOW = _spec(
    "maxtune_gpu_compile_gain_low_ratio",
    "gauge",
    "Lower bound of the gain's confidence interval over every timing process",
    _MODE,
    "A max-autotune mode is recommended only when this reaches the policy's minMeasuredGain "
    "(training workload). No series when the interval was not measured.",
)
GAIN_HIGH = _spec(
    "maxtune_gpu_compile_gain_high_ratio",
    "gauge",
    "Upper bound of the gain's confidence interval over every timing process",
    _MODE,
)
COMPILE_SECONDS = _spec(
    "maxtune_gpu_compile_seconds",
    "gauge",
    "Cold compile seconds of a reference block per mode (fresh Inductor and Triton caches)",
    _MODE,
)
WARM_COMPILE_SECONDS = _spec(
    "maxtune_gpu_compile_warm_seconds",
    "gauge",
    "Compile seconds of a reference block per mode in a later process, on the caches the cold "
    "compile filled",
    _MODE,
    "What a shared compile cache brings the compile down to. No series when not measured.",
)
STEP_SECONDS = _spec(
    "maxtune_gpu_compile_step_seconds",
    "gauge",
    "Median step seconds of a reference block per mode, over every round of every timing process",
    _MODE,
)
BREAK_EVEN = _spec(
    "maxtune_gpu_break_even_steps",
    "gauge",
    "Steps of the training reference after which the recommended mode's extra cold compile "
    "is paid back, at the lower bound of its gain",
    _ADVICE,
    "Per GPU resource of the node, from the advice in its profile (under the cluster policy "
    "the agent last read, else the built-in one). Only for a resource whose recommended mode "
    "is a max-autotune one; `mode` names it. `gpu_class` is the resource's class: a "
    "`mixed-` key when the resource spans several.",
)
WARM_BREAK_EVEN = _spec(
    "maxtune_gpu_warm_break_even_steps",
    "gauge",
    "The same break-even with warm caches (a shared compile cache's compile time)",
    _ADVICE,
    "Only where the warm compile was measured.",
)

_CACHE = ("group", "gpu_class", "mode")
CACHE_REACHABLE = _spec(
    "maxtune_agent_compile_cache_reachable",
    "gauge",
    "1 when the agent's cache user logged in to a sharing group's compile cache and read a "
    "key; 0 when it could not",
    ("group", "reason"),
    "From the agent's proof in its full profile (docs/decisions/0030-compile-cache.md). "
    "`reason` is empty when the proof passed, else NoRedisPackage, BadUrl, Unreachable, "
    "AuthRefused, CompileFailed, Timeout or WarmMiss. No series where no cache is configured. "
    "Server-side hits and misses are not here: the agent's ACL user may run GET and SET only, "
    "not INFO; the cache's own redis_exporter (compileCache.metrics) exports "
    "`redis_keyspace_hits_total` and `redis_keyspace_misses_total`.",
)
CACHE_WORKS = _spec(
    "maxtune_agent_compile_cache_hit",
    "gauge",
    "1 when a second fresh process compiling the reference block was served by the cache "
    "(torch's fxgraph_cache_hit counter), else 0",
    _CACHE,
)
CACHE_COLD = _spec(
    "maxtune_agent_compile_cache_cold_seconds",
    "gauge",
    "Seconds of the proof's first compile of the reference block (empty local and remote cache)",
    _CACHE,
)
CACHE_WARM = _spec(
    "maxtune_agent_compile_cache_warm_seconds",
    "gauge",
    "Seconds of the proof's second compile, a fresh process served by the remote cache only",
    _CACHE,
)
CACHE_SAVED = _spec(
    "maxtune_agent_compile_cache_saved_seconds_per_start",
    "gauge",
    "Compile seconds the cache saves a pod's start on this block and mode (cold - warm)",
    _CACHE,
    "Only where the warm compile hit. One block and one mode; a real model saves in "
    "proportion to its graphs.",
)

METRICS: tuple[MetricSpec, ...] = (
    AGENT_INFO,
    LAST_PUBLISH,
    PUBLISH_ERRORS,
    STAGE_SECONDS,
    SMS,
    CAPABLE,
    GEMM_FLOPS,
    GEMM_RATIO,
    GEMM_AUTOTUNE,
    GEMM_OK,
    COMPILE_OK,
    GAIN,
    GAIN_LOW,
    GAIN_HIGH,
    COMPILE_SECONDS,
    WARM_COMPILE_SECONDS,
    STEP_SECONDS,
    BREAK_EVEN,
    WARM_BREAK_EVEN,
    CACHE_REACHABLE,
    CACHE_WORKS,
    CACHE_COLD,
    CACHE_WARM,
    CACHE_SAVED,
)


class AgentMetrics(Collector):
    """Holds what the agent last knew and renders it on scrape (thread-safe)."""

    def __init__(self, node: str, *, torch_rule: str = "2.14") -> None:
        no_created_series()
        self.node = node
        self.registry = CollectorRegistry(auto_describe=False)
        self._lock = threading.Lock()
        self._status: ProfileStatus | None = None
        self._torch_rule = torch_rule
        self._last_publish: float | None = None
        self._publish_errors = 0
        self._rounds = 0
        self._stage_seconds: dict[str, float] = {}
        self.registry.register(self)

    # -- updates from the agent ----------------------------------------------

    def observe_status(self, status: ProfileStatus, torch_rule: str) -> None:
        with self._lock:
            self._status = status
            self._torch_rule = torch_rule
            self._rounds += 1

    def observe_publish(self, timestamp: float) -> None:
        with self._lock:
            self._last_publish = timestamp

    def observe_publish_error(self) -> None:
        with self._lock:
            self._publish_errors += 1

    def observe_stages(self, stages: dict[str, float]) -> None:
        with self._lock:
            self._stage_seconds = dict(stages)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    # -- Collector -------------------------------------------------------------

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            status = self._status
            rule = self._torch_rule
            last_publish = self._last_publish
            errors = self._publish_errors
            stages = dict(self._stage_seconds)
        info = AGENT_INFO.info()
        info.add_metric(
            [],
            {
                "version": VERSION,
                "source": status.source if status else "unknown",
                "simulation": (status.simulation or "") if status else "",
                "level": status.level if status else "unknown",
                "torch_rule": rule,
            },
        )
        yield info
        published = LAST_PUBLISH.gauge()
        if last_publish is not None:
            published.add_metric([], last_publish)
        yield published
        yield PUBLISH_ERRORS.counter(errors)
        stage = STAGE_SECONDS.gauge()
        for name, seconds in sorted(stages.items()):
            stage.add_metric([name], seconds)
        yield stage
        if status is not None:
            yield from _gpu_families(status, rule)


def _measured(status: ProfileStatus) -> Iterator[tuple[list[str], Measurements]]:
    """Every device measured on itself, with its labels: whole GPUs and full-size MIG slices."""
    for gpu in status.gpus:
        if gpu.measurements is not None:
            yield [str(gpu.index), gpu.uuid, gpu.product, gpu.gpu_class], gpu.measurements
        for mig in gpu.mig_instances:
            if mig.measurements is not None:
                labels = [str(gpu.index), mig.uuid or "", gpu.product, mig.gpu_class]
                yield labels, mig.measurements


class _Blocks:
    """The per-mode families of the reference blocks, filled device by device."""

    def __init__(self) -> None:
        self.ok, self.gain = COMPILE_OK.gauge(), GAIN.gauge()
        self.low, self.high = GAIN_LOW.gauge(), GAIN_HIGH.gauge()
        self.cold, self.warm = COMPILE_SECONDS.gauge(), WARM_COMPILE_SECONDS.gauge()
        self.step = STEP_SECONDS.gauge()

    def add(self, device: list[str], block: CompileMeasurement) -> None:
        labels = [*device, block.workload]
        self.ok.add_metric([*labels, block.reason or ""], 1.0 if block.ok else 0.0)
        if not block.ok:
            return
        for t in block.modes:
            mode = [*labels, t.mode.value]
            self.gain.add_metric(mode, t.gain)
            if t.gain_low is not None and t.gain_high is not None:
                self.low.add_metric(mode, t.gain_low)
                self.high.add_metric(mode, t.gain_high)
            self.cold.add_metric(mode, t.compile_seconds)
            if t.warm_compile_seconds is not None:
                self.warm.add_metric(mode, t.warm_compile_seconds)
            self.step.add_metric(mode, t.step_seconds)

    def families(self) -> tuple[GaugeMetricFamily, ...]:
        return (self.ok, self.gain, self.low, self.high, self.cold, self.warm, self.step)


def _advice_families(status: ProfileStatus) -> Iterator[GaugeMetricFamily]:
    """Break-even of each resource's recommended max-autotune mode (the profile's advice)."""
    cold, warm = BREAK_EVEN.gauge(), WARM_BREAK_EVEN.gauge()
    for r in status.resources:
        chosen = next((m for m in r.modes if m.recommended and m.mode is r.recommended_mode), None)
        if chosen is None:
            continue
        labels = [r.name, r.gpu_class, chosen.mode.value]
        if chosen.break_even_steps is not None:
            cold.add_metric(labels, chosen.break_even_steps)
        if chosen.warm_break_even_steps is not None:
            warm.add_metric(labels, chosen.warm_break_even_steps)
    yield from (cold, warm)


def _gpu_families(status: ProfileStatus, rule: str) -> Iterator[GaugeMetricFamily]:
    sms, capable = SMS.gauge(), CAPABLE.gauge()
    flops, ratio, autotune, gemm_ok = (
        GEMM_FLOPS.gauge(),
        GEMM_RATIO.gauge(),
        GEMM_AUTOTUNE.gauge(),
        GEMM_OK.gauge(),
    )
    blocks = _Blocks()
    for gpu in status.gpus:
        idx = str(gpu.index)
        whole = [idx, gpu.uuid, gpu.product, gpu.gpu_class]
        if not gpu.mig_enabled:
            labels = [*whole, gpu.resource or RESOURCE_GPU]
            if gpu.sm_count is not None:
                sms.add_metric(labels, gpu.sm_count)
            capable.add_metric(labels, 1.0 if gpu_capable(gpu, rule) else 0.0)
        for mig in gpu.mig_instances:
            labels = [idx, mig.uuid or "", gpu.product, mig.gpu_class, mig.resource or ""]
            if mig.sm_count is not None:
                sms.add_metric(labels, mig.sm_count)
            capable.add_metric(labels, 1.0 if mig_capable(mig, rule) else 0.0)
    for device, m in _measured(status):
        for g in m.gemm:
            labels = [*device, str(g.size)]
            gemm_ok.add_metric([*labels, g.reason or ""], 1.0 if g.ok else 0.0)
            if not g.ok:
                continue
            flops.add_metric([*labels, "triton"], g.triton_flops)
            flops.add_metric([*labels, "cublas"], g.cublas_flops)
            ratio.add_metric(labels, g.ratio_to_cublas)
            autotune.add_metric(labels, g.autotune_seconds)
        for block in (m.training, m.compile):
            if block is not None:
                blocks.add(device, block)
    yield from (sms, capable, flops, ratio, autotune, gemm_ok, *blocks.families())
    yield from _advice_families(status)
    yield from _cache_families(status)


def _cache_families(status: ProfileStatus) -> Iterator[GaugeMetricFamily]:
    """The agent's proof of each sharing group's compile cache."""
    reachable, works = CACHE_REACHABLE.gauge(), CACHE_WORKS.gauge()
    cold, warm, saved = CACHE_COLD.gauge(), CACHE_WARM.gauge(), CACHE_SAVED.gauge()
    for proof in status.compile_cache:
        reachable.add_metric([proof.group, proof.reason or ""], 1.0 if proof.reachable else 0.0)
        labels = [proof.group, proof.gpu_class or "", proof.mode]
        if not proof.reachable:
            continue
        works.add_metric(labels, 1.0 if proof.hit else 0.0)
        if proof.cold_seconds is not None:
            cold.add_metric(labels, proof.cold_seconds)
        if proof.warm_seconds is not None:
            warm.add_metric(labels, proof.warm_seconds)
        if proof.hit and proof.saved_seconds is not None:
            saved.add_metric(labels, proof.saved_seconds)
    yield from (reachable, works, cold, warm, saved)
