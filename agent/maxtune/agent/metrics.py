"""The agent's Prometheus metrics, rendered from its latest profile.

A collector on the agent's own CollectorRegistry (never the global one, so
several agents can live in one test process) that renders the current status
on every scrape: a GPU that disappears takes its series with it, and no series
can go stale. Every family is declared in METRICS (names, help, labels: see
maxtune.contract.metricspec for the rules and docs/metrics.md for the list).
Labels are bounded by the node's hardware (GPU index, UUID, product, class,
resource, size, mode). The node itself is the scrape target's `node` label.
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
from maxtune.contract.models import ProfileStatus
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
COMPILE_OK = _spec(
    "maxtune_gpu_compile_ok",
    "gauge",
    "1 when the torch.compile reference block measured in every mode; 0 when it failed",
    (*_GPU, "reason"),
    "Level `full` only. `reason` as for the GEMM check; NotSimulated means a simulated fleet "
    "file gave no timings (not a failure on a node).",
)
GAIN = _spec(
    "maxtune_gpu_compile_gain_ratio",
    "gauge",
    "Measured speed-up of a torch.compile mode over default (0.05 = 5% faster)",
    (*_GPU, "mode"),
)
COMPILE_SECONDS = _spec(
    "maxtune_gpu_compile_seconds",
    "gauge",
    "Cold compile seconds of the reference block per mode",
    (*_GPU, "mode"),
)
STEP_SECONDS = _spec(
    "maxtune_gpu_compile_step_seconds",
    "gauge",
    "Median step seconds of the reference block per mode",
    (*_GPU, "mode"),
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
    COMPILE_SECONDS,
    STEP_SECONDS,
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


def _gpu_families(status: ProfileStatus, rule: str) -> Iterator[GaugeMetricFamily]:
    sms, capable = SMS.gauge(), CAPABLE.gauge()
    flops, ratio, autotune, gemm_ok = (
        GEMM_FLOPS.gauge(),
        GEMM_RATIO.gauge(),
        GEMM_AUTOTUNE.gauge(),
        GEMM_OK.gauge(),
    )
    compile_ok, gain = COMPILE_OK.gauge(), GAIN.gauge()
    compile_s, step_s = COMPILE_SECONDS.gauge(), STEP_SECONDS.gauge()
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
        m = gpu.measurements
        if m is None:
            continue
        for g in m.gemm:
            labels = [*whole, str(g.size)]
            gemm_ok.add_metric([*labels, g.reason or ""], 1.0 if g.ok else 0.0)
            if not g.ok:
                continue
            flops.add_metric([*labels, "triton"], g.triton_flops)
            flops.add_metric([*labels, "cublas"], g.cublas_flops)
            ratio.add_metric(labels, g.ratio_to_cublas)
            autotune.add_metric(labels, g.autotune_seconds)
        if m.compile is None:
            continue
        compile_ok.add_metric([*whole, m.compile.reason or ""], 1.0 if m.compile.ok else 0.0)
        if m.compile.ok:
            for t in m.compile.modes:
                labels = [*whole, t.mode.value]
                gain.add_metric(labels, t.gain)
                compile_s.add_metric(labels, t.compile_seconds)
                step_s.add_metric(labels, t.step_seconds)
    yield from (sms, capable, flops, ratio, autotune, gemm_ok, compile_ok, gain, compile_s, step_s)
