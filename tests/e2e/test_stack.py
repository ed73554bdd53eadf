"""End to end: the chart installed by helm, a kwok fleet, agents and operators running, Prometheus.

Nothing is faked but the GPUs (the agents run with `--simulate`, each with its own node's
pod-bound token) and the container runtime (the pods' containers run as local processes). The
numbers asserted here come from Prometheus's HTTP API, from the API server, and from the
scheduler's bindings; the expectations are written out by hand from examples/fleets/demo.yaml
(and the gate: 68 SMs), not computed by maxtune's own code.

The tests share one running stack and run in file order; the last one uninstalls.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from maxtune.agent.fleetfile import load
from maxtune.agent.metrics import METRICS as AGENT_METRICS
from maxtune.contract.metricspec import CONTENT_TYPE
from maxtune.contract.names import (
    ANNOTATION_DECISION,
    LABEL_CAPABLE,
    LABEL_CLASS,
    LABEL_INJECT,
    LABEL_MODE,
    LABEL_SM_COUNT,
    PREFIX,
    RESOURCE_GPU,
)
from maxtune.operator.metrics import METRICS as OPERATOR_METRICS
from maxtune_dev.demo.stack import Stack
from maxtune_dev.localplane import wait_for
from maxtune_dev.localrun import kapi
from tests.chart.helmkit import render
from tests.e2e.conftest import FLEET
from tests.e2e.observe import dashboard_queries, families, promtool_check_metrics, scrape

pytestmark = [pytest.mark.plane, pytest.mark.slow]

GATE_SMS = 68
A100_CLASS = "nvidia-a100-sxm4-40gb-108sm"
# node: (capable, sm-count, recommended-mode), read off demo.yaml by hand. Only the A100's training
# gain (2.60 ms -> 2.36 ms, +10.2%) clears the default 3% bar; the H100's best is +2.8%.
EXPECTED = {
    "gpu-a100-0": ("true", "108", "max-autotune"),
    "gpu-bad-triton-0": ("false", "132", "default"),  # the gate passes, Triton fails
    "gpu-busy-0": ("true", "132", "default"),
    "gpu-h100-0": ("true", "132", "default"),
    "gpu-h100-1": ("true", "132", "default"),
    "gpu-l4-0": ("false", "58", "default"),
    "gpu-mig-0": ("true", "132", "default"),  # its 3 whole GPUs; the MIG GPU is not whole
    "gpu-mig-all-0": ("false", "132", "default"),  # no whole GPU: never capable
    "gpu-mixed-0": ("false", "58", "default"),  # H100 + L4: the weakest decides
    "gpu-rtx3070-0": ("false", "46", "default"),
    "gpu-rtx3080-0": ("true", "68", "default"),  # exactly at the gate
    "gpu-t4-0": ("false", "40", "default"),
}


def _pod(name: str, resource: str, **extra: Any) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "train",
        "image": "registry.invalid/train:1",
        "resources": {"limits": {resource: "1"}},
        **extra.pop("container", {}),
    }
    return {"metadata": {"name": name, **extra}, "spec": {"containers": [container]}}


def test_every_gpu_node_labelled_as_its_gpus_say(stack: Stack) -> None:
    labels = stack.node_labels()
    found = {
        node: (have[LABEL_CAPABLE], have[LABEL_SM_COUNT], have[LABEL_MODE])
        for node, have in labels.items()
        if have
    }
    assert found == EXPECTED
    assert labels["cpu-0"] == {}
    assert labels["gpu-a100-0"][LABEL_CLASS] == A100_CLASS


def test_prometheus_scrapes_both_operator_replicas_and_every_agent(stack: Stack) -> None:
    prometheus = stack.prometheus
    assert prometheus is not None
    assert prometheus.targets_up() == {
        "maxtune-operator": {"up": 2, "total": 2},
        "maxtune-agent": {"up": 12, "total": 12},
    }
    leaders = prometheus.query("sum(maxtune_operator_leader)")
    assert leaders[0].value == 1  # two replicas, one labeller
    nodes = {s.labels["node"] for s in prometheus.query("maxtune_agent_info")}
    assert nodes == set(EXPECTED)


def test_agents_per_gpu_sm_counts_and_verdicts_match_the_fleet(stack: Stack) -> None:
    """Every whole GPU and MIG slice of the fleet file, as Prometheus has scraped it."""
    prometheus = stack.prometheus
    assert prometheus is not None
    fleet = load(FLEET)
    want_sms: dict[tuple[str, str, str], float] = {}
    want_capable: dict[tuple[str, str, str], float] = {}
    for node, gpus in fleet.nodes.items():
        for sim in gpus:
            gpu = sim.device
            if gpu.mig_enabled:
                for mig in gpu.mig:
                    key = (node, mig.uuid, f"nvidia.com/mig-{mig.profile}")
                    want_sms[key] = mig.sm_count
                    want_capable[key] = float(mig.sm_count >= GATE_SMS)
                continue
            key = (node, gpu.uuid, RESOURCE_GPU)
            assert gpu.sm_count is not None
            triton_failed = bool(sim.model.gemm) and all(g.fail for g in sim.model.gemm)
            want_sms[key] = gpu.sm_count
            want_capable[key] = float(gpu.sm_count >= GATE_SMS and not triton_failed)

    def by_key(expr: str) -> dict[tuple[str, str, str], float]:
        return {
            (s.labels["node"], s.labels["uuid"], s.labels["resource"]): s.value
            for s in prometheus.query(expr)
        }

    assert by_key("maxtune_gpu_streaming_multiprocessors") == want_sms
    assert by_key("maxtune_gpu_max_autotune_capable") == want_capable
    assert sum(want_capable.values()) == 35  # 8+8+8 (H100s, A100) + 3 + 2 + 2 + 2 + 2 (7g slices)


def test_operator_fleet_metric_agrees_with_the_labels(stack: Stack) -> None:
    prometheus = stack.prometheus
    assert prometheus is not None
    samples = prometheus.query("max by (capable, gpu_class) (maxtune_operator_nodes)")
    reported = {(s.labels["capable"], s.labels["gpu_class"]): s.value for s in samples}
    labelled = Counter(
        (have[LABEL_CAPABLE], have[LABEL_CLASS]) for have in stack.node_labels().values() if have
    )
    assert reported == {key: float(count) for key, count in labelled.items()}
    assert sum(v for (capable, _), v in reported.items() if capable == "true") == 6


def test_opted_in_pods_keep_their_placement_and_asking_never_costs_speed(stack: Stack) -> None:
    """The demo fleet's A100 gains 10% from max-autotune (2.60 -> 2.36 ms on the training
    reference) while its H100s run the same step in 1.10 ms in default mode. Opted-in pods keep
    every node (default holds everywhere); a pod that asks to be steered is not confined to the
    A100 either: it would run more than twice as slow there. The annotation shows the numbers."""
    core = stack.core
    team = "team-e2e"
    core.create_namespace({"metadata": {"name": team}})
    wait_for(
        lambda: any(
            sa.metadata.name == "default" for sa in core.list_namespaced_service_account(team).items
        ),
        timeout_s=60,
        what="default service account",
    )
    opted = {LABEL_INJECT: "true"}
    asking = {"maxtune.io/steering": "require"}
    names = [f"train-{i}" for i in range(9)]
    user_env = {"container": {"env": [{"name": "TORCHINDUCTOR_MAX_AUTOTUNE", "value": "0"}]}}
    for i, name in enumerate(names):
        extra: dict[str, Any] = {"annotations": asking} if i >= 6 else {}
        if name == "train-0":
            extra.update(user_env)
        core.create_namespaced_pod(team, _pod(name, RESOURCE_GPU, labels=opted, **extra))
    core.create_namespaced_pod(team, _pod("mig", "nvidia.com/mig-3g.40gb", labels=opted))
    plain_pod = _pod("plain", RESOURCE_GPU)
    plain_pod["spec"]["nodeSelector"] = {"kubernetes.io/hostname": "gpu-h100-0"}
    core.create_namespaced_pod(team, plain_pod)

    def bound() -> list[Any] | None:
        listed = core.list_namespaced_pod(team).items
        return listed if all(p.spec.node_name for p in listed) and len(listed) == 11 else None

    listed = {p.metadata.name: p for p in wait_for(bound, timeout_s=90, what="11 pods bound")}
    for name in names:
        pod = listed[name]
        decision = json.loads(pod.metadata.annotations[ANNOTATION_DECISION])
        assert decision["steered"] is False and pod.spec.affinity is None, name
        if name == "train-0":  # the user chose: nothing added, never steered
            assert {e.name: e.value for e in pod.spec.containers[0].env} == {
                "TORCHINDUCTOR_MAX_AUTOTUNE": "0"
            }
            assert "TORCHINDUCTOR" in decision["untouched"]["train"]
            continue
        assert decision["mode"] == "default" and pod.spec.containers[0].env is None
        if name in ("train-6", "train-7", "train-8"):  # asked: judged by speed, not narrowed
            assert decision["steering"] == "require (pod)"
            assert "slower than the fastest candidate class" in decision["reason"]
            classes = decision["speeds"]["classes"]
            # The simulated rounds scatter within 0.5% of the fleet file's 2.36 and 1.10 ms.
            assert classes[A100_CLASS][0] == "max-autotune"
            assert abs(classes[A100_CLASS][1] - 2.36) < 0.02
            assert classes["nvidia-h100-80gb-hbm3-132sm"][0] == "default"
            assert abs(classes["nvidia-h100-80gb-hbm3-132sm"][1] - 1.10) < 0.01
        else:
            assert decision["steering"] == "none" and "speeds" not in decision
    placed = {listed[n].spec.node_name for n in names}
    assert len(placed) > 1  # spread by the scheduler, not confined to one class

    # A MIG 3g slice (60 SMs) fails the gate: default settings, and default holds everywhere.
    mig = listed["mig"]
    decision = json.loads(mig.metadata.annotations[ANNOTATION_DECISION])
    assert decision["mode"] == "default" and decision["steered"] is False
    assert mig.spec.node_name == "gpu-mig-0"

    plain = listed["plain"]
    assert plain.spec.node_name == "gpu-h100-0"
    assert ANNOTATION_DECISION not in (plain.metadata.annotations or {})
    assert plain.spec.containers[0].env is None and plain.spec.affinity is None

    prometheus = stack.prometheus
    assert prometheus is not None
    patched = "sum(maxtune_operator_admission_requests_total{result='patched'})"
    wait_for(
        lambda: (found := prometheus.query(patched)) and found[0].value >= 10,
        timeout_s=30,
        what="the admissions counted in Prometheus",
    )
    core.delete_namespace(team)


def test_promtool_passes_live_scrapes_of_every_agent_and_operator(stack: Stack) -> None:
    """`promtool check metrics` on what each running process serves, and nothing undeclared."""
    seen: dict[str, set[str]] = {"operator": set(), "agent": set()}
    for local in [*stack.operators, *stack.agents]:
        got = scrape(local.metrics_url)
        assert got.content_type == CONTENT_TYPE, local.pod
        checked = promtool_check_metrics(got.body)
        assert checked.returncode == 0, (local.pod, checked.stdout + checked.stderr)
        assert checked.stdout == checked.stderr == "", (local.pod, checked.stdout)
        seen[local.component] |= families(got.body)
    # Every declared family is served (the demo fleet has every case: failed GEMM, compile
    # not measured, MIG), and nothing is served that docs/metrics.md does not list.
    assert seen["operator"] == {spec.name for spec in OPERATOR_METRICS}
    assert seen["agent"] == {spec.name for spec in AGENT_METRICS}
    print(
        f"promtool check metrics: {len(stack.operators)} operators, {len(stack.agents)} agents OK"
    )


def test_every_dashboard_query_returns_series_from_the_real_prometheus(stack: Stack) -> None:
    prometheus = stack.prometheus
    assert prometheus is not None
    counts = {}
    for query in dashboard_queries(stack.options.namespace):
        samples = prometheus.query(query.expr)  # raises with Prometheus's message if it fails
        counts[query.where] = len(samples)
    for where, count in counts.items():
        print(f"  {count:>4} series  {where}")
    assert all(counts.values()), {where: n for where, n in counts.items() if not n}


def test_alert_conditions_on_the_healthy_demo_fleet(stack: Stack) -> None:
    """The chart's alert expressions on real series: only the broken Triton node's holds."""
    prometheus = stack.prometheus
    assert prometheus is not None
    values = {"metrics": {"prometheusRule": {"enabled": True}}}
    (rule,) = render(values, ("monitoring.coreos.com/v1",)).all("PrometheusRule")
    holding = {}
    for group in rule["spec"]["groups"]:
        for alert in group["rules"]:
            samples = prometheus.query(alert["expr"])
            if samples:
                holding[alert["alert"]] = sorted(
                    (s.labels.get("node", ""), s.labels.get("reason", "")) for s in samples
                )
    assert holding == {
        "MaxtuneTritonGemmCheckFailing": [("gpu-bad-triton-0", "TritonCompileFailed")]
    }


def test_uninstall_leaves_no_label_and_no_webhook_configuration(stack: Stack) -> None:
    output = stack.uninstall()
    assert "error" not in output.lower(), output
    core = stack.core
    for node in core.list_node().items:
        leftover = [k for k in node.metadata.labels if k.startswith(PREFIX)]
        assert not leftover, (node.metadata.name, leftover)
    hooks = kapi("AdmissionregistrationV1Api", stack.api)
    assert hooks.list_mutating_webhook_configuration().items == []
    assert hooks.list_validating_admission_policy().items == []
    assert stack.release.installed is False
