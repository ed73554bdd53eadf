"""The agent's Prometheus metrics, rendered from its latest profile.

A collector on the agent's own CollectorRegistry (never the global one, so
several agents can live in one test process) that renders the current status
on every scrape: a GPU that disappears takes its series with it, and no series
can go stale. Names follow Prometheus conventions: prefix `maxtune_`, base
units (`_seconds`, FLOP/s as `_flops`), `_total`, `_info`. Labels are bounded by
the node's hardware (GPU index, UUID, product, resource, size, mode).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from maxtune.cli.version import VERSION
from maxtune.contract.assess import gpu_capable, mig_capable
from maxtune.contract.models import ProfileStatus
from maxtune.contract.names import RESOURCE_GPU

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class AgentMetrics(Collector):
    """Holds what the agent last knew and renders it on scrape (thread-safe)."""

    def __init__(self, node: str, *, torch_rule: str = "2.14") -> None:
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

    def collect(self) -> Iterator[Metric]:  # noqa: PLR0915 - one family after another
        with self._lock:
            status = self._status
            rule = self._torch_rule
            last_publish = self._last_publish
            errors = self._publish_errors
            stages = dict(self._stage_seconds)
        info = InfoMetricFamily("maxtune_agent", "The maxtune agent and what it reads")
        info.add_metric(
            [],
            {
                "version": VERSION,
                "node": self.node,
                "source": status.source if status else "unknown",
                "simulation": (status.simulation or "") if status else "",
                "level": status.level if status else "unknown",
                "torch_rule": rule,
            },
        )
        yield info
        published = GaugeMetricFamily(
            "maxtune_agent_last_profile_timestamp_seconds",
            "Unix time of the last successful profile publish",
        )
        if last_publish is not None:
            published.add_metric([], last_publish)
        yield published
        yield CounterMetricFamily(
            "maxtune_agent_publish_errors",
            "Profile publishes that failed (each retry counts)",
            value=errors,
        )
        stage = GaugeMetricFamily(
            "maxtune_agent_last_measurement_stage_seconds",
            "Wall seconds of each stage of the last measurement round",
            labels=["stage"],
        )
        for name, seconds in sorted(stages.items()):
            stage.add_metric([name], seconds)
        yield stage
        if status is None:
            return

        gpu_labels = ["gpu", "uuid", "product", "resource"]
        sms = GaugeMetricFamily(
            "maxtune_gpu_sm_count", "Streaming multiprocessors, as measured", labels=gpu_labels
        )
        capable = GaugeMetricFamily(
            "maxtune_gpu_max_autotune_capable",
            "1 when torch's max-autotune GEMM gate passes (and no GEMM check failed)",
            labels=gpu_labels,
        )
        measured_labels = ["gpu", "uuid", "product", "size"]
        flops = GaugeMetricFamily(
            "maxtune_gpu_reference_gemm_flops",
            "Reference GEMM FLOP/s (bf16, size^3) by implementation",
            labels=[*measured_labels, "implementation"],
        )
        ratio = GaugeMetricFamily(
            "maxtune_gpu_reference_gemm_ratio_to_cublas",
            "The tuned Triton GEMM's speed over cuBLAS's, same run",
            labels=measured_labels,
        )
        autotune = GaugeMetricFamily(
            "maxtune_gpu_reference_gemm_autotune_seconds",
            "Wall seconds of the Triton GEMM autotune search, compiles included",
            labels=measured_labels,
        )
        gemm_ok = GaugeMetricFamily(
            "maxtune_gpu_reference_gemm_ok",
            "1 when the reference GEMM measured and checked correct, 0 when it failed",
            labels=[*measured_labels, "reason"],
        )
        mode_labels = ["gpu", "uuid", "product", "mode"]
        gain = GaugeMetricFamily(
            "maxtune_gpu_compile_gain_ratio",
            "Measured speed-up of a torch.compile mode over default (0.05 = 5% faster)",
            labels=mode_labels,
        )
        compile_s = GaugeMetricFamily(
            "maxtune_gpu_compile_seconds",
            "Cold compile seconds of the reference block per mode",
            labels=mode_labels,
        )
        step_s = GaugeMetricFamily(
            "maxtune_gpu_compile_step_seconds",
            "Median step seconds of the reference block per mode",
            labels=mode_labels,
        )
        for gpu in status.gpus:
            idx = str(gpu.index)
            if not gpu.mig_enabled:
                labels = [idx, gpu.uuid, gpu.product, gpu.resource or RESOURCE_GPU]
                if gpu.sm_count is not None:
                    sms.add_metric(labels, gpu.sm_count)
                capable.add_metric(labels, 1.0 if gpu_capable(gpu, rule) else 0.0)
            for mig in gpu.mig_instances:
                labels = [idx, mig.uuid or "", gpu.product, mig.resource or ""]
                if mig.sm_count is not None:
                    sms.add_metric(labels, mig.sm_count)
                capable.add_metric(labels, 1.0 if mig_capable(mig, rule) else 0.0)
            m = gpu.measurements
            if m is None:
                continue
            for g in m.gemm:
                labels = [idx, gpu.uuid, gpu.product, str(g.size)]
                gemm_ok.add_metric([*labels, g.reason or ""], 1.0 if g.ok else 0.0)
                if not g.ok:
                    continue
                flops.add_metric([*labels, "triton"], g.triton_flops)
                flops.add_metric([*labels, "cublas"], g.cublas_flops)
                ratio.add_metric(labels, g.ratio_to_cublas)
                autotune.add_metric(labels, g.autotune_seconds)
            if m.compile is not None and m.compile.ok:
                for t in m.compile.modes:
                    labels = [idx, gpu.uuid, gpu.product, t.mode.value]
                    gain.add_metric(labels, t.gain)
                    compile_s.add_metric(labels, t.compile_seconds)
                    step_s.add_metric(labels, t.step_seconds)
        yield from (sms, capable, flops, ratio, autotune, gemm_ok, gain, compile_s, step_s)
