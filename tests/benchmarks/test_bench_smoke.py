"""The CPU benchmarks still run: tiny sizes, real plane, real operator. Numbers are not checked.

`make bench` runs them at full size (2,000 nodes) and takes many minutes; this
keeps the code from rotting between runs. What is checked is that every part
produced its result and that the measurements are internally consistent
(every label right, every answer checked, both e2e arms verified).
"""

from __future__ import annotations

import json
from pathlib import Path

import psutil
import pytest

from benchmarks import fleet, heartbeatcost, webhook
from benchmarks.benchplane import BENCH_PLANE_ARGS

pytestmark = [pytest.mark.plane, pytest.mark.slow]


def _only(folder: Path, name: str) -> dict[str, object]:
    files = sorted((folder / "data").glob(f"{name}-*.json"))
    assert len(files) == 1, files
    result: dict[str, object] = json.loads(files[0].read_text())
    return result


def test_fleet_benchmark_runs(tmp_path: Path) -> None:
    assert (
        fleet.main(
            ["--nodes", "18", "--heartbeat-s", "2", "--settle-s", "1", "--out", str(tmp_path)]
        )
        == 0
    )
    result = _only(tmp_path, "fleet")
    start, change = result["start"], result["change"]
    assert isinstance(start, dict) and isinstance(change, dict)
    assert start["label_writes_operator_metric"] == 18
    assert start["watch"]["nodes_changed"] == 18
    # the API server's audit log names the operator's client as the writer of every label
    assert start["operator_node_writes_audit"] == 18
    assert change["operator_node_writes_audit"] == 1
    assert change["changed_profiles"] == 1
    assert result["heartbeats"]["label_writes_operator_metric"] == 0  # type: ignore[index]
    page = (tmp_path / "fleet.md").read_text()
    assert "all 18 nodes labelled right" in page


def test_webhook_benchmark_runs(tmp_path: Path) -> None:
    argv = ["--nodes", "18", "--rounds", "1", "--step-s", "1", "--rates", "50"]
    argv += ["--concurrency", "2", "--e2e-pods", "20", "--e2e-loads", "5", "5@20"]
    argv += ["--hotpath-rounds", "20", "--heartbeat-s", "3"]
    assert webhook.main([*argv, "--out", str(tmp_path)]) == 0
    result = _only(tmp_path, "webhook")
    steps = result["direct"]["steps"]  # type: ignore[index]
    assert [s["name"] for s in steps] == ["open 50/s", "closed c=2"]
    assert all(s["error_count"] == 0 and s["ok"] > 0 for s in steps)
    phases = result["e2e"]["phases"]  # type: ignore[index]
    assert {(p["load"], p["arm"]) for p in phases} == {
        (load, arm) for load in ("5", "5@20") for arm in ("webhook", "bare")
    }
    for phase in phases:
        assert phase["created"] == 20
        assert phase["mutated"] == (20 if phase["arm"] == "webhook" else 0)
    assert "(b) Pod creation through the API server" in (tmp_path / "webhook.md").read_text()


def test_bench_plane_passes_its_flags() -> None:
    from benchmarks.benchplane import bench_plane

    with bench_plane() as plane:
        for name, flags in BENCH_PLANE_ARGS.items():
            cmdline = psutil.Process(plane.pids()[name]).cmdline()
            assert all(flag in cmdline for flag in flags), (name, cmdline)


def test_heartbeat_cost_benchmark_runs(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--profiles", "3", "--rate", "10", "--seconds", "0.5", "--rounds", "1"]
    assert heartbeatcost.main(argv) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "per heartbeat" in line]
    assert [line.split("kube-apiserver")[0].split(maxsplit=2)[2].strip() for line in lines] == list(
        heartbeatcost.WAYS
    )
