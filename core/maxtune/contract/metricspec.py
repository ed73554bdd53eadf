"""Every metric maxtune exposes, declared once: name, type, help text, labels.

The agent and the operator build their metric families from these declarations,
docs/metrics.md is generated from them (`make docs`), and a test scrapes
both live components and compares what they serve with what is declared here
(and runs `promtool check metrics` on it). So the catalogue cannot say one thing
while the code does another.

Naming (design.md, Prometheus's conventions, and what `promtool check metrics`
enforces): prefix `maxtune_`, then the subsystem (`agent`, `gpu` for the agent's
per-GPU series, `operator`), base units (`_seconds`, `_timestamp_seconds`,
FLOP/s as `_flops`), counters end in `_total`, info metrics in `_info`, and no
non-histogram ends in `_count`, `_sum` or `_bucket`. No metric carries a `node`
label: that is the target label the chart's ServiceMonitor and PodMonitor add
(from `__meta_kubernetes_pod_node_name`), and a metric label of the same name
would be renamed `exported_node` at scrape time.

Both components serve the Prometheus text format 0.0.4, which every Prometheus
2.x and 3.x reads; `_created` series are off (they would double every counter's
series for a start time nobody here needs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import prometheus_client
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
)

# The exposition format both components declare on /metrics.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Kind = Literal["counter", "gauge", "histogram", "info"]
Component = Literal["agent", "operator"]

_SUFFIX: dict[str, str] = {"counter": "_total", "info": "_info"}


# What every label means (docs/metrics.md prints them; a test checks every label used is here).
LABELS: dict[str, str] = {
    "gpu": "GPU index on the node (NVML order)",
    "uuid": "GPU or MIG instance UUID",
    "product": "GPU product name as NVML reports it",
    "gpu_class": "GPU class key (maxtune.io/gpu-class), e.g. nvidia-h100-80gb-hbm3-132sm",
    "resource": "Kubernetes resource the GPU is requested as (nvidia.com/gpu, nvidia.com/mig-...)",
    "size": "GEMM size n of the n x n x n reference GEMM",
    "implementation": "triton (the agent's autotuned Triton GEMM) or cublas",
    "mode": "torch.compile mode: default, max-autotune-no-cudagraphs, max-autotune",
    "workload": "Reference block: training (a transformer block's forward, backward and "
    "optimizer step; the advice rests on it) or inference (a GEMM-heavy MLP, reported)",
    "reason": "Condition reason of a failed check, empty when it passed",
    "stage": "Stage of a measurement round (inventory, gemm, compile, ...)",
    "version": "maxtune version",
    "source": "Where the agent's GPUs come from: nvml, simulation or none",
    "simulation": "Fleet file name when source is simulation, else empty",
    "level": "What the agent measures: inventory, gemm or full",
    "torch_rule": "torch version whose is_big_gpu rule the verdicts follow",
    "result": "How an AdmissionReview was answered (see the metric)",
    "capable": "maxtune.io/max-autotune-capable label value: true or false",
    "kind": "Kind of object an informer follows: node, namespace, profile, policy, lease",
    "group": "Compile-cache sharing group (compileCache.groups[].name)",
}


class MetricSpecError(ValueError):
    """A declaration breaks the naming rules above; the message says which and why."""


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One metric family as it appears on /metrics (counters with `_total`, info with `_info`)."""

    name: str
    kind: Kind
    help: str
    component: Component
    labels: tuple[str, ...] = ()
    # For docs/metrics.md: when the family has series, and what a value means, beyond `help`.
    notes: str = ""

    def __post_init__(self) -> None:
        problems = []
        prefix = "maxtune_operator_" if self.component == "operator" else "maxtune_"
        if not self.name.startswith(prefix) or (
            self.component == "agent" and self.name.startswith("maxtune_operator_")
        ):
            problems.append(f"a metric of the {self.component} starts with {prefix}")
        suffix = _SUFFIX.get(self.kind)
        if suffix and not self.name.endswith(suffix):
            problems.append(f"a {self.kind} must end in {suffix}")
        if self.kind != "counter" and self.name.endswith("_total"):
            problems.append("only counters end in _total")
        if self.kind != "histogram" and self.name.endswith(("_count", "_sum", "_bucket")):
            problems.append("only histograms end in _count, _sum or _bucket")
        if "node" in self.labels:
            problems.append("'node' is the scrape target's label (it would become exported_node)")
        unknown = [label for label in self.labels if label not in LABELS]
        if unknown:
            problems.append(f"labels {unknown} have no meaning in metricspec.LABELS")
        if not self.help.strip():
            problems.append("no help text")
        if problems:
            raise MetricSpecError(f"{self.name}: " + "; ".join(problems))

    @property
    def base(self) -> str:
        """The name prometheus_client wants: without `_total` (counters) or `_info` (info)."""
        suffix = _SUFFIX.get(self.kind)
        return self.name.removesuffix(suffix) if suffix else self.name

    # -- families for custom collectors (rendered at scrape time) ------------------------

    def gauge(self, value: float | None = None) -> GaugeMetricFamily:
        self._expect("gauge")
        if value is not None:
            return GaugeMetricFamily(self.name, self.help, value=value)
        return GaugeMetricFamily(self.name, self.help, labels=list(self.labels))

    def counter(self, value: float) -> CounterMetricFamily:
        self._expect("counter")
        return CounterMetricFamily(self.base, self.help, value=value)

    def info(self) -> InfoMetricFamily:
        self._expect("info")
        return InfoMetricFamily(self.base, self.help, labels=list(self.labels))

    def _expect(self, kind: Kind) -> None:
        if self.kind != kind:
            raise MetricSpecError(f"{self.name} is a {self.kind}, not a {kind}")


def no_created_series() -> None:
    """Turn off `_created` series (process-wide, idempotent): both components call it."""
    prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
