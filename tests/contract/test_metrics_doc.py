"""docs/metrics.md is generated from the metric declarations, which follow the naming rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from maxtune.agent.metrics import METRICS as AGENT
from maxtune.contract.metricspec import MetricSpec, MetricSpecError
from maxtune.operator.metrics import METRICS as OPERATOR
from maxtune_dev.docs import METRICS_DOC, metrics_markdown

ROOT = Path(__file__).resolve().parents[2]


def test_metrics_doc_is_generated_from_the_code() -> None:
    on_disk = (ROOT / METRICS_DOC).read_text()
    assert on_disk == metrics_markdown(), "docs/metrics.md is stale: run `make docs`"


def test_every_declared_metric_is_in_the_doc_once() -> None:
    text = metrics_markdown()
    for spec in (*AGENT, *OPERATOR):
        assert text.count(f"| `{spec.name}` |") == 1, spec.name
    names = [spec.name for spec in (*AGENT, *OPERATOR)]
    assert len(names) == len(set(names))


@pytest.mark.parametrize(
    ("name", "kind", "labels", "problem"),
    [
        ("maxtune_gpu_sm_count", "gauge", (), "only histograms end in _count"),
        ("maxtune_agent_errors", "counter", (), "a counter must end in _total"),
        ("maxtune_agent_errors_total", "gauge", (), "only counters end in _total"),
        ("maxtune_agent", "info", (), "a info must end in _info"),
        ("maxtune_agent_up", "gauge", ("node",), "exported_node"),
        ("maxtune_agent_up", "gauge", ("colour",), "no meaning"),
        ("maxtune_ready", "gauge", (), "starts with maxtune_operator_"),
    ],
)
def test_declarations_that_break_the_rules_are_refused(
    name: str, kind: str, labels: tuple[str, ...], problem: str
) -> None:
    component = "operator" if name == "maxtune_ready" else "agent"
    with pytest.raises(MetricSpecError, match=problem):
        MetricSpec(name, kind, "Help.", component, labels)  # type: ignore[arg-type]
