"""The agent loop on a simulated node with a file sink: publish, restart, re-measure, retry."""

from __future__ import annotations

import random
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from maxtune.agent.backends import SimulationBackend
from maxtune.agent.daemon import RETRY_FAILED_S, Agent
from maxtune.agent.inventory import Inventory
from maxtune.agent.measure import GpuOutcome
from maxtune.agent.publish import FileSink, PublishError
from maxtune.contract.models import GPUNodeProfile, ProfileStatus
from maxtune.retry import Backoff

DEMO = Path(__file__).resolve().parents[2] / "examples" / "fleets" / "demo.yaml"


class CountingBackend(SimulationBackend):
    """The simulation backend, counting how often it is asked to measure which GPUs."""

    def __init__(self, fleet: Path, node: str) -> None:
        super().__init__(fleet, node)
        self.measured: list[int] = []

    def measure(self, inventory: Inventory, level: str) -> dict[str, GpuOutcome]:
        self.measured.append(len(inventory.gpus))
        return super().measure(inventory, level)


class FlakySink(FileSink):
    """A file sink whose first `failures` writes fail the way an unreachable API server does."""

    def __init__(self, path: Path, failures: int, *, retry: bool = True) -> None:
        super().__init__(path)
        self.failures = failures
        self.retry = retry
        self.writes = 0

    def write(self, node: str, status: ProfileStatus) -> None:
        self.writes += 1
        if self.failures > 0:
            self.failures -= 1
            raise PublishError("API server unreachable: ConnectionRefusedError", retry=self.retry)
        super().write(node, status)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def fast_backoff() -> Backoff:
    return Backoff(base_s=0.01, cap_s=0.05, rng=random.Random(0))


def published(path: Path) -> GPUNodeProfile:
    return GPUNodeProfile.model_validate_json(path.read_text())


def test_first_round_publishes_a_complete_profile(tmp_path: Path) -> None:
    out = tmp_path / "p.json"
    backend = CountingBackend(DEMO, "gpu-h100-0")
    agent = Agent(node="gpu-h100-0", backend=backend, sink=FileSink(out), level="full")
    assert agent.readiness()[0] is False
    agent.tick(block=True)
    profile = published(out)
    assert profile.metadata.name == profile.spec.node_name == "gpu-h100-0"
    assert profile.status is not None and len(profile.status.gpus) == 8
    assert {c.type: c.status for c in profile.status.conditions}["Ready"] == "True"
    assert backend.measured == [8]
    assert agent.readiness()[0] is True


def test_restart_keeps_measurements_when_the_fingerprint_matches(tmp_path: Path) -> None:
    out = tmp_path / "p.json"
    first = Agent(
        node="gpu-h100-0",
        backend=CountingBackend(DEMO, "gpu-h100-0"),
        sink=FileSink(out),
        level="full",
    )
    first.tick(block=True)
    before = published(out).status
    assert before is not None and before.measured_time is not None

    backend = CountingBackend(DEMO, "gpu-h100-0")
    clock = Clock()
    clock.now = before.heartbeat_time + timedelta(minutes=3)
    second = Agent(
        node="gpu-h100-0", backend=backend, sink=FileSink(out), level="full", clock=clock
    )
    second.recover()
    second.tick(block=True)
    after = published(out).status
    assert after is not None
    assert backend.measured == []  # nothing re-measured
    assert after.measured_time == before.measured_time
    assert after.heartbeat_time > before.heartbeat_time
    assert [g.measurements for g in after.gpus] == [g.measurements for g in before.gpus]
    # Conditions did not change status, so their transition times stayed.
    assert [c.last_transition_time for c in after.conditions] == [
        c.last_transition_time for c in before.conditions
    ]


def test_changed_fingerprint_retakes_measurements(tmp_path: Path) -> None:
    out = tmp_path / "p.json"
    Agent(
        node="gpu-h100-0",
        backend=CountingBackend(DEMO, "gpu-h100-0"),
        sink=FileSink(out),
        level="gemm",
    ).tick(block=True)
    # The node's driver changed: a new fleet file with a different driver version.
    upgraded = tmp_path / "upgraded.yaml"
    upgraded.write_text(
        DEMO.read_text().replace('driverVersion: "580.159.04"', 'driverVersion: "590.10.01"')
    )
    backend = CountingBackend(upgraded, "gpu-h100-0")
    agent = Agent(node="gpu-h100-0", backend=backend, sink=FileSink(out), level="gemm")
    agent.recover()
    agent.tick(block=True)
    assert backend.measured == [8]
    status = published(out).status
    assert status is not None and status.software.driver_version == "590.10.01"


def test_busy_gpu_is_tried_again_next_round_not_at_once(tmp_path: Path) -> None:
    clock = Clock()
    backend = CountingBackend(DEMO, "gpu-busy-0")
    agent = Agent(
        node="gpu-busy-0",
        backend=backend,
        sink=FileSink(tmp_path / "p.json"),
        clock=clock,
        interval_s=60,
    )
    agent.tick(block=True)
    assert backend.measured == [2]
    agent.tick(block=True)  # a wake-up within the round: no busy loop on the busy GPU
    assert backend.measured == [2]
    clock.now += timedelta(seconds=60)
    agent.tick(block=True)
    assert backend.measured == [2, 1]  # only the busy one is tried again


def test_failed_measurements_are_retried_after_an_hour(tmp_path: Path) -> None:
    clock = Clock()
    backend = CountingBackend(DEMO, "gpu-bad-triton-0")
    agent = Agent(
        node="gpu-bad-triton-0",
        backend=backend,
        sink=FileSink(tmp_path / "p.json"),
        level="gemm",
        clock=clock,
    )
    agent.tick(block=True)
    agent.tick(block=True)
    assert backend.measured == [2]
    clock.now += timedelta(seconds=RETRY_FAILED_S)
    agent.tick(block=True)
    assert backend.measured == [2, 2]


def test_publish_is_retried_with_backoff_and_nothing_is_lost(tmp_path: Path) -> None:
    out = tmp_path / "p.json"
    sink = FlakySink(out, failures=3)
    agent = Agent(
        node="gpu-l4-0",
        backend=CountingBackend(DEMO, "gpu-l4-0"),
        sink=sink,
        level="gemm",
        interval_s=30,
        backoff=fast_backoff(),
    )
    status = agent.tick(block=True)
    assert sink.writes == 4 and out.exists()
    assert agent.published == status == published(out).status
    from prometheus_client.parser import text_string_to_metric_families

    errors = [
        s.value
        for f in text_string_to_metric_families(agent.metrics.render().decode())
        for s in f.samples
        if s.name == "maxtune_agent_publish_errors_total"
    ]
    assert errors == [3.0]


def test_a_refused_publish_waits_for_the_next_round(tmp_path: Path) -> None:
    sink = FlakySink(tmp_path / "p.json", failures=1, retry=False)
    agent = Agent(
        node="gpu-l4-0",
        backend=CountingBackend(DEMO, "gpu-l4-0"),
        sink=sink,
        level="inventory",
        backoff=fast_backoff(),
    )
    agent.tick(block=True)
    assert sink.writes == 1 and agent.published is None
    agent.tick(block=True)
    assert agent.published is not None


def test_retries_stop_at_the_next_round(tmp_path: Path) -> None:
    sink = FlakySink(tmp_path / "p.json", failures=10_000)
    agent = Agent(
        node="gpu-l4-0",
        backend=CountingBackend(DEMO, "gpu-l4-0"),
        sink=sink,
        level="inventory",
        interval_s=0.3,
        backoff=fast_backoff(),
    )
    began = time.monotonic()
    agent.tick(block=True)
    assert time.monotonic() - began < 2
    assert agent.published is None and agent.latest is not None
    assert sink.writes > 2


def test_backoff_is_capped_and_jittered() -> None:
    backoff = Backoff(base_s=0.5, cap_s=30, rng=random.Random(1))
    delays = [backoff.next_delay() for _ in range(12)]
    assert 0.25 <= delays[0] <= 0.5
    assert all(15 <= d <= 30 for d in delays[7:])
    assert len(set(delays)) == len(delays)
    backoff.reset()
    assert backoff.next_delay() <= 0.5


def test_the_loop_heartbeats_and_stops(tmp_path: Path) -> None:
    out = tmp_path / "p.json"
    agent = Agent(
        node="gpu-h100-0",
        backend=CountingBackend(DEMO, "gpu-h100-0"),
        sink=FileSink(out),
        level="full",
        interval_s=0.2,
    )
    stop = threading.Event()
    thread = threading.Thread(target=agent.run, args=(stop,))
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while agent.first_complete_publish_s is None:
            assert time.monotonic() < deadline, "no complete profile published"
            time.sleep(0.05)
        first = published(out).status
        assert first is not None
        while published(out).status.heartbeat_time == first.heartbeat_time:  # type: ignore[union-attr]
            assert time.monotonic() < deadline + 5, "no second heartbeat"
            time.sleep(0.1)
    finally:
        stop.set()
        thread.join(timeout=5)
    assert not thread.is_alive()


def test_file_sink_rejects_an_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text("{not json")
    with pytest.raises(PublishError, match="cannot read"):
        FileSink(path).read("n")
    agent = Agent(node="n", backend=CountingBackend(DEMO, "gpu-l4-0"), sink=FileSink(path))
    agent.recover()  # says so in the log and starts fresh
    assert agent.state.fingerprint is None


class UnreadableAtFirst(FileSink):
    """The profile cannot be read on the first try (API server away at start-up)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.reads = 0

    def read(self, node: str) -> GPUNodeProfile | None:
        self.reads += 1
        if self.reads == 1:
            raise PublishError("API server unreachable: ConnectionRefusedError", retry=True)
        return super().read(node)


def test_a_failed_read_at_start_is_retried_before_measuring(tmp_path: Path) -> None:
    out = tmp_path / "p.json"
    Agent(
        node="gpu-h100-0",
        backend=CountingBackend(DEMO, "gpu-h100-0"),
        sink=FileSink(out),
        level="gemm",
    ).tick(block=True)
    backend = CountingBackend(DEMO, "gpu-h100-0")
    sink = UnreadableAtFirst(out)
    agent = Agent(node="gpu-h100-0", backend=backend, sink=sink, level="gemm")
    agent.recover()  # fails: the server is away
    agent.tick(block=True)  # the round reads it again, and keeps the measurements
    assert sink.reads == 2
    assert backend.measured == []


def test_model_without_gemm_data_is_skipped_with_a_reason_not_remeasured(tmp_path: Path) -> None:
    fleet = tmp_path / "nogemm.yaml"
    fleet.write_text(
        "name: nogemm\n"
        "software: {driverVersion: '580.159.04', torchVersion: '2.11.0'}\n"
        "gpuModels:\n"
        "  bare: {product: NVIDIA H100 80GB HBM3, memoryMib: 81559,"
        " computeCapability: '9.0', smCount: 132}\n"
        "nodes:\n"
        "  - {name: gpu-bare-0, gpus: [{model: bare}]}\n"
    )
    clock = Clock()
    backend = CountingBackend(fleet, "gpu-bare-0")
    out = tmp_path / "p.json"
    agent = Agent(
        node="gpu-bare-0", backend=backend, sink=FileSink(out), clock=clock, interval_s=60
    )
    agent.tick(block=True)
    agent.tick(block=True)
    assert backend.measured == [1]  # asked once this round, not on every wake-up
    status = published(out).status
    assert status is not None
    reasons = {c.reason for c in status.conditions}
    assert "NotSimulated" in reasons
    assert status.gpus[0].measurements is None or not status.gpus[0].measurements.gemm
