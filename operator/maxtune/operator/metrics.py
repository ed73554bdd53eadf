"""The operator's Prometheus metrics, in a registry of its own.

Base units, `_total` counters, bounded labels: admission results are a fixed
set, node counts are by capability and GPU class (a handful of values per
fleet), and no metric carries a node name (per-node series are the agent's).
Fleet-derived gauges are computed at scrape time from FleetState, so they can
never drift from what the operator actually knows.
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from maxtune.contract.names import LABEL_CAPABLE, LABEL_CLASS
from maxtune.operator.admission import RESULTS
from maxtune.operator.fleet import FleetState

# Admission is expected in milliseconds; the API server gives up at timeoutSeconds (<= 3 s).
ADMISSION_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 3.0)


class _FleetCollector(Collector):
    def __init__(self, fleet: FleetState, clock: Callable[[], float]) -> None:
        self.fleet = fleet
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        now = self.clock()
        nodes = GaugeMetricFamily(
            "maxtune_nodes",
            "Nodes with a current GPUNodeProfile, by max-autotune capability and GPU class",
            labels=["capable", "gpu_class"],
        )
        tally: Tally[tuple[str, str]] = Tally()
        stale = 0
        for name in self.fleet.profiles:
            labels = self.fleet.desired_labels(name, now)
            if labels:
                tally[(labels.get(LABEL_CAPABLE, "false"), labels.get(LABEL_CLASS, ""))] += 1
            elif self.fleet.is_stale(name, now):
                stale += 1
        for (capable, gpu_class), count in sorted(tally.items()):
            nodes.add_metric([capable, gpu_class], count)
        yield nodes
        yield GaugeMetricFamily(
            "maxtune_stale_profiles",
            "GPUNodeProfiles whose heartbeat is older than the policy's staleAfterSeconds",
            value=stale,
        )


class Metrics:
    def __init__(
        self, version: str, fleet: FleetState | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.admission_duration = Histogram(
            "maxtune_admission_duration_seconds",
            "Time to answer one AdmissionReview, from body read to response built",
            buckets=ADMISSION_BUCKETS,
            registry=r,
        )
        self.admission_requests = Counter(
            "maxtune_admission_requests",
            "AdmissionReviews answered, by result (every one is allowed: the webhook fails open)",
            ["result"],
            registry=r,
        )
        for result in RESULTS:
            self.admission_requests.labels(result)
        self.watch_restarts = Counter(
            "maxtune_watch_restarts",
            "Informer watches that ended abnormally, by kind and why: 'gone' (410, relisted) "
            "or 'error' (resumed after a backoff)",
            ["kind", "reason"],
            registry=r,
        )
        self.reconcile_errors = Counter(
            "maxtune_reconcile_errors",
            "Failed API writes of the labeller (retried with backoff)",
            registry=r,
        )
        self.label_writes = Counter(
            "maxtune_label_writes", "Node label patches written by the labeller", registry=r
        )
        self.orphan_profiles_deleted = Counter(
            "maxtune_orphan_profiles_deleted",
            "GPUNodeProfiles deleted because their node was gone",
            registry=r,
        )
        self.leader = Gauge(
            "maxtune_leader", "1 while this replica holds the labeller's lease", registry=r
        )
        self.ready = Gauge("maxtune_ready", "1 once every watched kind has been listed", registry=r)
        Info("maxtune_build", "The running maxtune build", registry=r).info({"version": version})
        if fleet is not None:
            r.register(_FleetCollector(fleet, clock))
