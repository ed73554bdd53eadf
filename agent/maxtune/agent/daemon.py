"""The agent's loop: inventory every interval, measure when the fingerprint asks, publish.

One thread owns publishing. Each round re-inventories (cheap: NVML, plus the
CUDA driver only when the set of GPUs changed), rebuilds the status with a new
heartbeat and publishes it. Measurements run in their own thread, started when
the fingerprint (hardware, driver, torch, triton, level) differs from the one
the held measurements were taken under, or when a GPU still lacks them (it was
busy); the loop keeps heartbeating meanwhile and publishes again as soon as
they land. On start the agent reads its published profile and keeps its
measurements when the fingerprint matches, so a restart only refreshes it.

A failed measurement holds (the GPU is not capable) and is retried after an
hour. A failed publish is retried with capped, jittered backoff until the next round;
the status lives in memory meanwhile and the next success carries everything.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from maxtune.agent import migstrategy
from maxtune.agent.backends import Backend
from maxtune.agent.inventory import Inventory
from maxtune.agent.measure import GpuOutcome, write_log
from maxtune.agent.metrics import AgentMetrics
from maxtune.agent.profile import (
    READY,
    MeasurementState,
    build_status,
    fingerprint,
    lacks,
    local_policy_spec,
)
from maxtune.agent.publish import PublishError, Sink
from maxtune.agent.targets import restrict
from maxtune.contract.models import (
    CompileCacheProof,
    Measurements,
    MigStrategy,
    PolicySpec,
    ProfileStatus,
)
from maxtune.contract.policy import torch_rule
from maxtune.retry import Backoff

log = logging.getLogger("maxtune.agent")

Clock = Callable[[], datetime]
# Proves the configured compile caches on this node (cacheproof.py): one result per group.
CacheProver = Callable[[Inventory], list[CompileCacheProof]]
# A failed measurement (timeout, crash, lost device) may have been transient:
# it is retried after this long, and until then the GPU is not capable.
RETRY_FAILED_S = 3600.0


def utc_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


class Agent:
    """One node's agent. `tick()` is one round; `run(stop)` loops until `stop` is set."""

    def __init__(
        self,
        *,
        node: str,
        backend: Backend,
        sink: Sink | None,
        level: str = "full",
        interval_s: float = 60.0,
        metrics: AgentMetrics | None = None,
        clock: Clock = utc_now,
        backoff: Backoff | None = None,
        measurement_log: Path | None = None,
        mig_strategy: MigStrategy = migstrategy.DEFAULT,
        cache_prover: CacheProver | None = None,
        cache_groups: Sequence[str] | None = None,
    ) -> None:
        self.node = node
        self.backend = backend
        self.sink = sink
        self.level = level
        self.interval_s = interval_s
        self.metrics = metrics or AgentMetrics(node)
        self.clock = clock
        self.backoff = backoff or Backoff()
        self.measurement_log = measurement_log
        self.mig_strategy: MigStrategy = mig_strategy
        self.cache_prover = cache_prover
        # The groups the prover proves: proofs held for another set (a group added or
        # removed, recovered from the published profile) are due again.
        self.cache_groups = None if cache_groups is None else frozenset(cache_groups)
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self.state = MeasurementState()
        self.latest: ProfileStatus | None = None
        self.published: ProfileStatus | None = None
        self.published_at: float | None = None
        self._previous: ProfileStatus | None = None
        self._spec: PolicySpec = local_policy_spec()
        self._measuring: threading.Thread | None = None
        self.first_complete_publish_s: float | None = None
        self._recovered = False

    # -- readiness ---------------------------------------------------------

    def readiness(self) -> tuple[bool, str]:
        if self.published is None:
            return False, "no profile published yet"
        return True, f"profile published ({self.sink.description if self.sink else 'no sink'})"

    # -- start-up ------------------------------------------------------------

    def recover(self) -> None:
        """Read our own published profile: its conditions and (if still valid) measurements.

        When the read fails (API server away at start-up), later rounds try again until
        one succeeds or a measurement of our own has landed.
        """
        if self.sink is None:
            self._recovered = True
            return
        try:
            profile = self.sink.read(self.node)
        except PublishError as exc:
            log.warning("could not read the published profile (%s); will try again", exc)
            return
        self._recovered = True
        if profile is not None and profile.status is not None:
            self._previous = profile.status
            log.info(
                "found published profile: fingerprint %s, measured %s",
                profile.status.fingerprint,
                profile.status.measured_time,
            )

    # -- one round -----------------------------------------------------------

    def _policy(self) -> PolicySpec:
        if self.sink is None:
            return self._spec
        try:
            spec = self.sink.policy()
        except PublishError as exc:
            log.info("policy not readable (%s); keeping torch rule %s", exc, self._spec.torch)
            return self._spec
        if spec is not None:
            self._spec = spec
        return self._spec

    def _align_measurements(self, inventory: Inventory, fp: str) -> None:
        with self._lock:
            if self.state.fingerprint == fp:
                return
            previous = self._previous
            if previous is not None and previous.fingerprint == fp:
                self.state = MeasurementState.from_status(previous)
                log.info("kept the published measurements (fingerprint unchanged: %s)", fp)
            else:
                if self.state.fingerprint is not None or previous is not None:
                    log.info("fingerprint is now %s: measurements will be retaken", fp)
                self.state = MeasurementState(fingerprint=fp)

    def _missing(self, inventory: Inventory) -> Inventory:
        """Devices (whole GPUs, gate-passing MIG slices) that lack the level's measurements,
        or whose failed ones are due a retry."""
        devices = self.backend.targets(inventory)
        with self._lock:
            have = self.state.by_gpu
            measured = self.state.measured_time
            since = None if measured is None else (self.clock() - measured).total_seconds()
            retry_failed = since is not None and since >= RETRY_FAILED_S
            # A skipped device (busy, or nothing to simulate) is asked again next round,
            # not on every wake-up: a busy GPU must not turn the agent into a busy loop.
            retry_skipped = since is None or since >= self.interval_s
            skipped = self.state.skipped
            uuids = {
                d.uuid
                for d in devices
                if (retry_skipped or d.uuid not in skipped)
                and (
                    lacks(have.get(d.uuid), self.level)
                    or (retry_failed and _has_failure(have[d.uuid]))
                )
            }
        return restrict(inventory, uuids)

    def _measure(self, inventory: Inventory, fp: str) -> None:
        began = time.monotonic()
        names = ", ".join(t.label for t in self.backend.targets(inventory))
        log.info("measuring %s at level %s", names, self.level)
        try:
            outcomes = self.backend.measure(inventory, self.level)
        except Exception:  # never let a measurement bug kill the agent; say it
            log.exception("measurement failed unexpectedly")
            outcomes = {}
        self._merge(outcomes, fp)
        if self.measurement_log is not None:
            try:
                write_log(outcomes, self.measurement_log)
            except OSError as exc:
                log.warning("cannot write the measurement log: %s", exc)
        stages: dict[str, float] = {"measure_total": time.monotonic() - began}
        for outcome in outcomes.values():
            for name, seconds in outcome.stage_seconds.items():
                stages[name] = max(stages.get(name, 0.0), seconds)
        self.metrics.observe_stages(stages)
        log.info(
            "measurement done in %.1fs (%s)",
            stages["measure_total"],
            ", ".join(f"{k} {v:.1f}s" for k, v in stages.items()),
        )
        if any(o.measurements is not None for o in outcomes.values()):
            self._wake.set()  # publish the new measurements now, not an interval later

    def _cache_due(self) -> bool:
        """The full profile proves the configured caches once per fingerprint; a proof that
        failed is tried again after RETRY_FAILED_S, like a failed measurement."""
        if self.cache_prover is None or self.level != "full":
            return False
        with self._lock:
            held = list(self.state.compile_cache)
        if not held:
            return True
        if self.cache_groups is not None and {p.group for p in held} != self.cache_groups:
            return True
        failed = [p for p in held if not p.works]
        return bool(failed) and any(
            (self.clock() - p.measured_time).total_seconds() >= RETRY_FAILED_S for p in failed
        )

    def _prove_cache(self, inventory: Inventory, fp: str) -> None:
        """Never raises and never touches a verdict: a broken cache is a status, not a fault."""
        assert self.cache_prover is not None
        try:
            proofs = self.cache_prover(inventory)
        except Exception:
            log.exception("compile-cache proof failed unexpectedly")
            return
        for p in proofs:
            log.info(
                "compile cache %s: reachable %s, hit %s, cold %s s, warm %s s%s",
                p.group,
                p.reachable,
                p.hit,
                p.cold_seconds,
                p.warm_seconds,
                f" ({p.reason}: {p.error})" if p.reason else "",
            )
        with self._lock:
            if self.state.fingerprint != fp:
                return
            self.state.compile_cache = proofs
        self._wake.set()

    def _work(self, missing: Inventory, inventory: Inventory, fp: str) -> None:
        """What a measurement thread does: the devices that lack measurements, then the
        cache proof when it is due (after them, so it never competes with their timings)."""
        if missing.gpus:
            self._measure(missing, fp)
        if self._cache_due():
            self._prove_cache(inventory, fp)

    def _merge(self, outcomes: dict[str, GpuOutcome], fp: str) -> None:
        with self._lock:
            if self.state.fingerprint != fp:
                return  # the hardware or software changed while we measured: discard
            for uuid, outcome in outcomes.items():
                if outcome.skipped is not None:
                    self.state.skipped[uuid] = outcome.skipped
                    log.info("GPU %s not measured: %s", uuid, outcome.skipped[1])
                elif outcome.measurements is not None:
                    self.state.by_gpu[uuid] = outcome.measurements
                    self.state.skipped.pop(uuid, None)
            self.state.measured_time = self.clock()

    def build(self) -> tuple[ProfileStatus, Inventory]:
        if not self._recovered and self.state.measured_time is None:
            self.recover()
        inventory = self.backend.inventory()
        software = self.backend.software(inventory)
        spec = self._policy()
        fp = fingerprint(inventory, software, self.level)
        self._align_measurements(inventory, fp)
        with self._lock:
            state = dataclasses.replace(
                self.state, by_gpu=dict(self.state.by_gpu), skipped=dict(self.state.skipped)
            )
        previous = self.latest or self._previous
        status = build_status(
            inventory=inventory,
            software=software,
            level=self.level,
            spec=spec,
            state=state,
            node=self.node,
            previous=previous,
            now=self.clock(),
            mig_strategy=self.backend.mig_strategy() or self.mig_strategy,
            devices=self.backend.targets(inventory),
        )
        self.latest = status
        self.metrics.observe_status(status, torch_rule(spec))
        return status, inventory

    def _start_measuring(self, inventory: Inventory, fp: str, *, block: bool) -> None:
        if self.level == "inventory" or (
            self._measuring is not None and self._measuring.is_alive()
        ):
            return
        missing = self._missing(inventory)
        if not missing.gpus and not self._cache_due():
            return
        if block:
            self._work(missing, inventory, fp)
            return
        self._measuring = threading.Thread(
            target=self._work, args=(missing, inventory, fp), name="maxtune-measure", daemon=True
        )
        self._measuring.start()

    def publish(self, status: ProfileStatus, *, until: float, stop: threading.Event) -> bool:
        """Publish, retrying with backoff until success, `until` (monotonic) or `stop`."""
        if self.sink is None:
            return False
        while True:
            try:
                self.sink.write(self.node, status)
            except PublishError as exc:
                self.metrics.observe_publish_error()
                delay = self.backoff.next_delay()
                if not exc.retry:
                    log.error("publish failed, not retrying before the next round: %s", exc)
                    return False
                if time.monotonic() + delay > until:
                    log.warning("publish failed (%s); next round in under %.0fs", exc, delay)
                    return False
                log.warning("publish failed (%s); retrying in %.1fs", exc, delay)
                if stop.wait(delay):
                    return False
                continue
            self.backoff.reset()
            self.published = status
            self.published_at = time.time()
            self.metrics.observe_publish(self.published_at)
            ready = next((c for c in status.conditions if c.type == READY), None)
            if (
                ready is not None
                and ready.status == "True"
                and self.first_complete_publish_s is None
            ):
                self.first_complete_publish_s = time.monotonic() - self.started
                log.info(
                    "first complete profile published %.1fs after start (level %s)",
                    self.first_complete_publish_s,
                    self.level,
                )
            return True

    def tick(self, *, stop: threading.Event | None = None, block: bool = False) -> ProfileStatus:
        """One round: build, publish, start (or with `block`, run) what measurement is due."""
        stop = stop or threading.Event()
        status, inventory = self.build()
        due = time.monotonic() + self.interval_s
        missing = self._missing(inventory)
        if missing.gpus and self.level != "inventory" and not block:
            self.publish(status, until=due, stop=stop)  # the inventory now; measurements later
        self._start_measuring(inventory, status.fingerprint, block=block)
        if block:
            status, _ = self.build()
            self.publish(status, until=due, stop=stop)
        elif not missing.gpus or self.level == "inventory":
            self.publish(status, until=due, stop=stop)
        return status

    def run(self, stop: threading.Event) -> None:
        self.recover()
        while not stop.is_set():
            began = time.monotonic()
            # Cleared before the round: a measurement that ends during it wakes the next.
            self._wake.clear()
            try:
                self.tick(stop=stop)
            except Exception:  # a bug in one round must not end the DaemonSet pod's agent
                log.exception("round failed")
            remaining = self.interval_s - (time.monotonic() - began)
            if remaining > 0:
                _wait_any(stop, self._wake, remaining)


def _has_failure(m: Measurements) -> bool:
    return any(not g.ok for g in m.gemm) or any(
        block is not None and not block.ok for block in (m.compile, m.training)
    )


def _wait_any(stop: threading.Event, wake: threading.Event, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not stop.is_set() and not wake.is_set():
        left = deadline - time.monotonic()
        if left <= 0:
            return
        stop.wait(min(left, 0.25))
