"""The benchmarks' arithmetic and checks, without a plane."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path

import pytest

from benchmarks import connwatch, heartbeatcost, stats, vegeta, webhooke2e
from benchmarks.gpufleet import CHANGED_GAIN, changeable, kind_of, plan_node
from benchmarks.nodeaudit import NodeAudit
from benchmarks.reviews import MIX, UID_PLACEHOLDER, mixed_bodies, rotation
from maxtune_dev.localplane import LocalPlane


def test_percentile_is_a_seen_value() -> None:
    values = [float(i) for i in range(1, 101)]
    assert stats.percentile(values, 50) == 50.0
    assert stats.percentile(values, 99) == 99.0
    assert stats.percentile(values, 100) == 100.0
    assert math.isnan(stats.percentile([], 50))


def test_histogram_quantile_interpolates_inside_the_bucket() -> None:
    buckets = {0.001: 50.0, 0.005: 90.0, 0.01: 100.0, math.inf: 100.0}
    q = stats.histogram_quantile(buckets, 0.99)
    assert q["bucket_ms"] == [5.0, 10.0]
    assert q["value_ms"] == pytest.approx(9.5)
    assert stats.fraction_at_most(buckets, 0.005) == 0.9
    beyond = stats.histogram_quantile({0.001: 1.0, math.inf: 10.0}, 0.99)
    assert beyond["value_ms"] is None


def test_highest_bucket_is_where_the_largest_observation_lies() -> None:
    assert stats.highest_bucket({0.001: 50.0, 0.005: 90.0, 0.01: 100.0, math.inf: 100.0}) == [
        5.0,
        10.0,
    ]
    assert stats.highest_bucket({0.001: 99.0, 0.005: 99.0, math.inf: 100.0}) == [5.0, None]
    assert stats.highest_bucket({0.001: 0.0, math.inf: 0.0}) is None


def test_changed_profiles_flip_the_mode_to_default() -> None:
    for i in changeable(90)[:6]:
        before, after = plan_node(i), plan_node(i, gain=CHANGED_GAIN)
        assert before.expected["maxtune.io/recommended-mode"] != "default"
        assert after.expected["maxtune.io/recommended-mode"] == "default"
        assert kind_of(i).gain is not None


def test_the_review_mix_is_what_it_says() -> None:
    order = rotation()
    assert sorted(set(order)) == sorted(MIX)
    assert set(mixed_bodies()) == set(MIX)


def test_extra_args_only_for_known_components() -> None:
    with pytest.raises(ValueError, match="unknown components"):
        LocalPlane(extra_args={"kubelet": ["--v=2"]})


def test_connwatch_counts_client_sockets_of_one_port(tmp_path: Path) -> None:
    """Client sockets to the port count in any state but LISTEN (TIME_WAIT included); the
    server's own sockets (local port = the port) and other ports do not."""
    header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid\n"
    rows = [
        "0: 0100007F:2328 00000000:0000 0A 0 0 0",  # the listener on 9000
        "1: 0100007F:9C40 0100007F:2328 01 0 0 0",  # client 40000 -> 9000, established
        "2: 0100007F:2328 0100007F:9C40 01 0 0 0",  # the server's end of it
        "3: 0100007F:9C41 0100007F:2328 06 0 0 0",  # client 40001 -> 9000, TIME_WAIT
        "4: 0100007F:9C42 0100007F:1F90 01 0 0 0",  # client 40002 -> 8080: another port
    ]
    table = tmp_path / "tcp"
    table.write_text(header + "\n".join(rows) + "\n")
    found = connwatch.client_ports(9000, (table, tmp_path / "absent"))
    assert found == {("0100007F", 40000), ("0100007F", 40001)}


def test_vegeta_timestamps_keep_their_nanoseconds_and_zone() -> None:
    assert vegeta._timestamp("2026-12-01T12:00:00.5Z") == pytest.approx(
        datetime(2026, 12, 1, 12, tzinfo=UTC).timestamp() + 0.5
    )
    assert vegeta._timestamp("2026-12-01T13:00:00.000000250+01:00") == pytest.approx(
        datetime(2026, 12, 1, 12, tzinfo=UTC).timestamp() + 250e-9
    )
    assert vegeta.shape_uid(3).endswith("000000000003")
    assert len(vegeta.shape_uid(3)) == len(UID_PLACEHOLDER)


def test_heartbeat_cost_ratio_is_per_round_and_net_of_idle() -> None:
    rounds = [
        {
            "net_ms": {
                "profile": {"kube-apiserver": 10.0, "etcd": 2.0},
                "lease": {"kube-apiserver": 1.0, "etcd": 0.5},
            }
        },
        {
            "net_ms": {
                "profile": {"kube-apiserver": 12.0, "etcd": 3.0},
                "lease": {"kube-apiserver": 2.0, "etcd": 1.0},
            }
        },
    ]
    found = heartbeatcost.summarize(rounds, ["profile", "lease"])
    assert found["profile_over_lease"]["per_round"] == [8.0, 5.0]
    assert found["profile_over_lease"]["median"] == 6.5
    assert found["lease"]["net_ms_per_heartbeat"] == {"kube-apiserver": 1.5, "etcd": 0.75}
    # one heartbeat a minute: ms per heartbeat is ms per node per minute
    assert found["lease"]["cpu_ms_per_node_per_minute"] == 2.25
    assert found["lease"]["cores_at_5000_nodes"] == round(5000 * 2.25 / 60_000, 3)


def _phase(arm: str, round_no: int, p99: float, cpu: dict[str, float]) -> dict[str, object]:
    return {
        "load": "50",
        "arm": arm,
        "round": round_no,
        "created": 100,
        "latencies_ms": [p99 / 2] * 90 + [p99] * 10,
        "latency": {"p50_ms": p99 / 2, "p99_ms": p99},
        "cpu": {"cpu_s": cpu},
    }


def test_e2e_summary_reads_maxtune_against_the_reference() -> None:
    bare = {"kube-apiserver": 0.4, "kube-scheduler": 0.2, "operator": 0.1, "reference": 0.0}
    ref = {**bare, "kube-apiserver": 0.6, "reference": 0.1}
    mine = {**bare, "kube-apiserver": 0.6, "operator": 0.25, "kube-scheduler": 0.25}
    phases = [
        _phase("bare", 0, 100.0, {**bare, "driver": 9.0}),
        _phase("reference", 0, 140.0, ref),
        _phase("maxtune", 0, 150.0, mine),
    ]
    (summary,) = webhooke2e.summarize(phases, ["maxtune", "reference", "bare"])
    assert summary["overhead"]["reference"]["p99_ms"] == 40.0
    assert summary["overhead"]["maxtune"]["p99_ms"] == 50.0
    # CPU per pod over bare, summed over the plane and the webhook servers (not the driver)
    assert summary["overhead"]["reference"]["added_cpu_ms_per_pod"] == 3.0
    assert summary["overhead"]["maxtune"]["added_cpu_ms_per_pod"] == 4.0
    ratio = summary["maxtune_over_reference"]
    assert ratio["p99_overhead_pooled"] == 1.25
    assert ratio["added_cpu_per_pod"] == 1.33


def _audit(kind: str, name: str, who: str, received: str, done: str, code: int = 200) -> str:
    ref = {"resource": kind, "name": name}
    if kind == "gpunodeprofiles":
        ref["subresource"] = "status"
    return json.dumps(
        {
            "stage": "ResponseComplete",
            "verb": "patch",
            "objectRef": ref,
            "userAgent": f"{who}/0.2",
            "user": {"username": "admin"},
            "responseStatus": {"code": code},
            "requestReceivedTimestamp": received,
            "stageTimestamp": done,
        }
    )


def test_the_operator_lag_runs_from_a_profile_write_to_the_operators_next_node_write(
    tmp_path: Path,
) -> None:
    log = tmp_path / "audit.log"
    log.write_text(_audit("nodes", "gpu-9", "maxtune-operator", "2026-12-02T15:00:00Z", "x") + "\n")
    audit = NodeAudit(log)
    audit.mark()  # what came before the phase is not counted
    lines = [
        _audit("gpunodeprofiles", "gpu-1", "python", "t", "2026-12-02T15:00:01.000000Z"),
        _audit("gpunodeprofiles", "gpu-2", "python", "t", "2026-12-02T15:00:01.500000Z"),
        _audit("nodes", "gpu-2", "kwok", "2026-12-02T15:00:01.600000Z", "t"),  # not the operator
        _audit("nodes", "gpu-1", "maxtune-operator", "2026-12-02T15:00:01.250000Z", "t"),
        _audit("nodes", "gpu-2", "maxtune-operator", "2026-12-02T15:00:02.000000Z", "t", 409),
        _audit("nodes", "gpu-2", "maxtune-operator", "2026-12-02T15:00:03.500000Z", "t"),
        _audit("nodes", "gpu-2", "maxtune-operator", "2026-12-02T15:00:09.000000Z", "t"),
        _audit("nodes", "gpu-3", "maxtune-operator", "2026-12-02T15:00:04.000000Z", "t"),
    ]
    with log.open("a") as handle:
        handle.write("\n".join(lines) + "\n")
    # gpu-1 0.25 s; gpu-2 2 s (the refused write and later ones do not count); gpu-3 had
    # no profile write.
    assert sorted(audit.lags_since_mark()) == [0.25, 2.0]
    # The node-write counts leave the profiles' writes out.
    assert audit.since_mark() == {
        "kwok as admin": {"PATCH": 1},
        "maxtune-operator as admin": {"PATCH": 4},
    }
