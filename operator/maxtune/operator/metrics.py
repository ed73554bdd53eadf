"""The operator's Prometheus metrics, in a registry of its own.

Every family is declared in METRICS (see maxtune.contract.metricspec for the naming
rules; docs/metrics.md is generated from it). Base units, `_total` counters,
bounded labels: admission results are a fixed set, node counts are by capability
and GPU class (a handful of values per fleet), and no metric carries a node name
(per-node series are the agent's). Fleet-derived gauges are computed at scrape
time from FleetState, so they can never drift from what the operator knows.
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from maxtune.contract.metricspec import CONTENT_TYPE, Kind, MetricSpec, no_created_series
from maxtune.contract.names import LABEL_CAPABLE, LABEL_CLASS
from maxtune.operator.admission import RESULTS
from maxtune.operator.fleet import FleetState

__all__ = ["ADMISSION_BUCKETS", "CONTENT_TYPE", "LOOP_LAG_BUCKETS", "METRICS", "Metrics"]

# Admission is expected in milliseconds; the API server gives up at timeoutSeconds (<= 3 s).
ADMISSION_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 3.0)
# A healthy loop runs a due timer within a millisecond or two; the API server gives up on the
# webhook at its timeoutSeconds (<= 3 s), so a lag near that is an admission lost to it.
LOOP_LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 3.0)


def _spec(
    name: str, kind: Kind, help: str, labels: tuple[str, ...] = (), notes: str = ""
) -> MetricSpec:
    return MetricSpec(name, kind, help, "operator", labels, notes)


BUILD_INFO = _spec("maxtune_operator_build_info", "info", "The running maxtune build", ("version",))
READY = _spec(
    "maxtune_operator_ready",
    "gauge",
    "1 once every watched kind has been listed (the replica answers /readyz), else 0",
)
LEADER = _spec(
    "maxtune_operator_leader",
    "gauge",
    "1 while this replica holds the labeller's lease, else 0",
    notes="Exactly one replica of a release should report 1.",
)
ADMISSION_DURATION = _spec(
    "maxtune_operator_admission_duration_seconds",
    "histogram",
    "Time to answer one AdmissionReview, from body read to response built",
    notes="Buckets 0.5 ms to 3 s. The API server's own call adds TLS and network time; it gives "
    "up (and the pod is admitted unchanged) at the webhook's timeoutSeconds.",
)
LOOP_LAG = _spec(
    "maxtune_operator_event_loop_lag_seconds",
    "histogram",
    "How late the event loop that answers admissions ran a timer that was due (probed every "
    "100 ms)",
    notes="Every admission waits behind what holds the loop, before its handler starts and "
    "so outside the admission histogram. A high p99 here beside a low admission p99: the "
    "answers wait for the loop (the process starved of CPU, or held by other work), not for "
    "the decision. Buckets 1 ms to 3 s.",
)
ADMISSION_REQUESTS = _spec(
    "maxtune_operator_admission_requests_total",
    "counter",
    "AdmissionReviews answered, by result (every one is allowed: the webhook fails open)",
    ("result",),
    "`result`: patched (settings or placement added), unchanged (opted in, nothing to add), "
    "skipped (not a GPU pod, or not opted in), invalid (a malformed review), error (maxtune "
    "failed and allowed the pod unchanged), not_ready (the replica had not listed the fleet "
    "yet). Every result is present from start-up at 0.",
)
RECONCILE_ERRORS = _spec(
    "maxtune_operator_reconcile_errors_total",
    "counter",
    "Failed API writes of the labeller (retried with backoff)",
)
LABEL_WRITES = _spec(
    "maxtune_operator_label_writes_total",
    "counter",
    "Node label patches written by the labeller",
)
ORPHANS_DELETED = _spec(
    "maxtune_operator_orphan_profiles_deleted_total",
    "counter",
    "GPUNodeProfiles deleted because their node was gone",
)
WATCH_RESTARTS = _spec(
    "maxtune_operator_watch_restarts_total",
    "counter",
    "Informer watches that ended abnormally, by kind and why",
    ("kind", "reason"),
    "`reason`: gone (410, the kind was listed again) or error (resumed after a backoff). "
    "A watch the API server ends on schedule (its timeoutSeconds) is not counted.",
)
CERT_EXPIRY = _spec(
    "maxtune_operator_webhook_certificate_expiry_timestamp_seconds",
    "gauge",
    "Unix time at which the webhook's serving certificate in use expires",
    notes="Read from the certificate the replica serves (the first of tls.crt), at start and "
    "after every reload.",
)
CERT_RELOADS = _spec(
    "maxtune_operator_webhook_certificate_reloads_total",
    "counter",
    "Times a renewed webhook certificate was loaded without a restart",
)
CERT_RELOAD_FAILURES = _spec(
    "maxtune_operator_webhook_certificate_reload_failures_total",
    "counter",
    "Times changed certificate files could not be loaded (the previous pair stays in use)",
)
NODES = _spec(
    "maxtune_operator_nodes",
    "gauge",
    "Nodes with a current GPUNodeProfile, by max-autotune capability and GPU class",
    ("capable", "gpu_class"),
    "What the node labels should say: `capable` and `gpu_class` are the values of "
    "maxtune.io/max-autotune-capable and maxtune.io/gpu-class. Every replica reports the "
    "whole fleet: aggregate with max, not sum.",
)
STALE_PROFILES = _spec(
    "maxtune_operator_stale_profiles",
    "gauge",
    "GPUNodeProfiles whose heartbeat is older than the policy's staleAfterSeconds",
    notes="Their nodes lose their maxtune.io/ labels until the agent publishes again.",
)
OUT_OF_SYNC = _spec(
    "maxtune_operator_nodes_out_of_sync",
    "gauge",
    "Nodes whose maxtune.io/ labels differ from what their profile and the policy give",
    notes="Non-zero for a moment after every change; staying non-zero means the labeller "
    "cannot write (see reconcile errors) or no replica leads.",
)

METRICS: tuple[MetricSpec, ...] = (
    BUILD_INFO,
    READY,
    LEADER,
    ADMISSION_DURATION,
    LOOP_LAG,
    ADMISSION_REQUESTS,
    RECONCILE_ERRORS,
    LABEL_WRITES,
    ORPHANS_DELETED,
    WATCH_RESTARTS,
    CERT_EXPIRY,
    CERT_RELOADS,
    CERT_RELOAD_FAILURES,
    NODES,
    STALE_PROFILES,
    OUT_OF_SYNC,
)


class _FleetCollector(Collector):
    def __init__(self, fleet: FleetState, clock: Callable[[], float]) -> None:
        self.fleet = fleet
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        now = self.clock()
        nodes = NODES.gauge()
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
        yield STALE_PROFILES.gauge(stale)
        differ = sum(
            node.maxtune_labels() != dict(self.fleet.desired_labels(name, now))
            for name, node in self.fleet.nodes.items()
        )
        yield OUT_OF_SYNC.gauge(differ)


class _CertificateCollector(Collector):
    """The expiry of the certificate in use: no series until one was read (0 would alert)."""

    def __init__(self) -> None:
        self.expiry: float | None = None

    def collect(self) -> Iterator[Metric]:
        if self.expiry is not None:
            yield CERT_EXPIRY.gauge(self.expiry)


class Metrics:
    def __init__(
        self, version: str, fleet: FleetState | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        no_created_series()
        self.registry = CollectorRegistry()
        r = self.registry
        self.admission_duration = Histogram(
            ADMISSION_DURATION.name,
            ADMISSION_DURATION.help,
            buckets=ADMISSION_BUCKETS,
            registry=r,
        )
        self.loop_lag = Histogram(
            LOOP_LAG.name, LOOP_LAG.help, buckets=LOOP_LAG_BUCKETS, registry=r
        )
        self.admission_requests = Counter(
            ADMISSION_REQUESTS.base, ADMISSION_REQUESTS.help, ADMISSION_REQUESTS.labels, registry=r
        )
        for result in RESULTS:
            self.admission_requests.labels(result)
        self.reconcile_errors = Counter(RECONCILE_ERRORS.base, RECONCILE_ERRORS.help, registry=r)
        self.label_writes = Counter(LABEL_WRITES.base, LABEL_WRITES.help, registry=r)
        self.watch_restarts = Counter(
            WATCH_RESTARTS.base, WATCH_RESTARTS.help, list(WATCH_RESTARTS.labels), registry=r
        )
        self.orphan_profiles_deleted = Counter(
            ORPHANS_DELETED.base, ORPHANS_DELETED.help, registry=r
        )
        self.leader = Gauge(LEADER.name, LEADER.help, registry=r)
        self.ready = Gauge(READY.name, READY.help, registry=r)
        self._certificate = _CertificateCollector()
        r.register(self._certificate)
        self.certificate_reloads = Counter(CERT_RELOADS.base, CERT_RELOADS.help, registry=r)
        self.certificate_reload_failures = Counter(
            CERT_RELOAD_FAILURES.base, CERT_RELOAD_FAILURES.help, registry=r
        )
        Info(BUILD_INFO.base, BUILD_INFO.help, registry=r).info({"version": version})
        if fleet is not None:
            r.register(_FleetCollector(fleet, clock))

    def observe_certificate(self, expiry: float) -> None:
        """The serving certificate now in use expires at `expiry` (Unix seconds)."""
        self._certificate.expiry = expiry
