"""The CPU benchmarks still run: tiny sizes, real plane, real operator. Numbers are not checked.

`make bench` runs them at full size (2,000 nodes) and takes many minutes; this
keeps the code from rotting between runs. What is checked is that every part
produced its result and that the measurements are internally consistent
(every label right, every answer checked, both e2e arms verified).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from kubernetes.client import ApiClient

from benchmarks import agentleases, fleet, fleetsetup, handlercpu, heartbeatcost, webhook
from benchmarks.benchplane import BENCH_PLANE_ARGS
from benchmarks.gpufleet import plan_node
from benchmarks.kubeapi import Api, Credentials
from benchmarks.nodewatch import NodeWatcher
from maxtune.agent.kube import KubeSink
from maxtune.kube import Kube

pytestmark = [pytest.mark.plane, pytest.mark.slow]


def _only(folder: Path, name: str) -> dict[str, object]:
    files = sorted((folder / "data").glob(f"{name}-*.json"))
    assert len(files) == 1, files
    result: dict[str, object] = json.loads(files[0].read_text())
    return result


def test_fleet_benchmark_runs(tmp_path: Path) -> None:
    argv = ["--nodes", "18", "--heartbeat-s", "2", "--settle-s", "1", "--out", str(tmp_path)]
    assert fleet.main(argv) == 0
    result = _only(tmp_path, "fleet")
    start, change = result["start"], result["change"]
    assert isinstance(start, dict) and isinstance(change, dict)
    assert start["label_writes_operator_metric"] == 18
    assert start["watch"]["nodes_changed"] == 18
    # the API server's audit log names the operator's client as the writer of every label
    assert start["operator_node_writes_audit"] == 18
    assert change["operator_node_writes_audit"] == 1
    assert change["changed_profiles"] == 1
    # the operator's answer to the change, by the API server's clock and by the node watch
    assert change["operator_lag"]["count"] == 1 and change["label_lag"]["count"] == 1
    assert 0 < change["operator_lag"]["max_ms"] < change["converged_s"] * 1e3
    # agents renewed their Leases all along (setup included), and no heartbeat, Lease or
    # profile, made the operator write
    leases = result["agent_lease_counts"]
    assert isinstance(leases, dict) and leases["created"] == 18 and leases["renewed"] >= 18
    assert not leases.get("failed")
    for key, way in (("heartbeats", "lease"), ("legacy_heartbeats", "profile")):
        phase = result[key]
        assert isinstance(phase, dict)
        assert phase["way"] == way and phase["heartbeats"] >= 18
        assert not phase.get("failed")
        assert phase["label_writes_operator_metric"] == 0
        assert phase["operator_node_writes_audit"] == 0
        assert phase["watch"]["label_changing_events"] == 0
    assert "PATCH nodes" in start["apiserver_latency"]
    page = (tmp_path / "fleet.md").read_text()
    assert "all 18 nodes labelled right" in page
    assert "0 label writes while nothing changes" in page
    assert "from the API server finishing its profile's write" in page


def test_the_node_watch_resumes_a_stream_the_api_server_ends(
    kubeconfig: Path, kwok_nodes: Callable[..., list[str]]
) -> None:
    """A stream ended by the server (here its 1 s timeout) is taken up where it stopped:
    a node labelled after that is still seen, so the witness misses no write."""

    async def watch() -> tuple[int, dict[str, str] | None]:
        async with Api(Credentials.from_kubeconfig(kubeconfig)) as api:
            watcher = NodeWatcher(api, watch_seconds=1)
            await watcher.start()
            try:
                await asyncio.sleep(2.5)  # at least one stream ended and resumed
                name = kwok_nodes(1, prefix="watched")[0]
                watcher.expect({name: {"maxtune.io/probe": "yes"}})
                await api.call(
                    "PATCH",
                    f"/api/v1/nodes/{name}",
                    {"metadata": {"labels": {"maxtune.io/probe": "yes"}}},
                    content_type="application/merge-patch+json",
                )
                await watcher.wait_all_right(30)
                return watcher.resumed, watcher.current.get(name)
            finally:
                await watcher.stop()

    resumed, labels = asyncio.run(watch())
    assert resumed >= 1
    assert labels == {"maxtune.io/probe": "yes"}


def test_a_failed_profile_heartbeat_is_counted_not_fatal(kubeconfig: Path) -> None:
    """At 5,000 nodes on 2 cores a profile heartbeat can go unanswered for a minute; the
    benchmark counts it, as an agent would, instead of losing the whole run."""

    async def one_round() -> tuple[float, int]:
        async with Api(Credentials.from_kubeconfig(kubeconfig)) as api:
            return await fleetsetup.heartbeat_round(api, [plan_node(99_999)], 0.0)

    _, failed = asyncio.run(one_round())  # that node has no profile: the PATCH is refused
    assert failed == 1


def test_webhook_benchmark_runs(tmp_path: Path) -> None:
    argv = ["--nodes", "18", "--rounds", "1", "--step-s", "1", "--rates", "50"]
    argv += ["--concurrency", "2", "--e2e-pods", "20", "--e2e-loads", "5", "5@20"]
    argv += ["--hotpath-rounds", "20", "--heartbeat-s", "3"]
    argv += ["--arms", "maxtune", "reference", "reference-go-h2", "reference-go-h1", "bare"]
    assert webhook.main([*argv, "--out", str(tmp_path)]) == 0
    result = _only(tmp_path, "webhook")
    direct = result["direct"]
    assert isinstance(direct, dict) and direct["client"] == "vegeta"
    steps = direct["steps"]
    assert [s["name"] for s in steps] == ["open 50/s", "closed c=2"]
    assert all(s["error_count"] == 0 and s["ok"] > 0 for s in steps)
    e2e = result["e2e"]
    assert isinstance(e2e, dict)
    arms = ["maxtune", "reference", "reference-go-h2", "reference-go-h1", "bare"]
    assert {(p["load"], p["arm"]) for p in e2e["phases"]} == {
        (load, arm) for load in ("5", "5@20") for arm in arms
    }
    for phase in e2e["phases"]:
        assert phase["created"] == 20
        assert phase["mutated"] == (0 if phase["arm"] == "bare" else 20)
        if phase["arm"].startswith("reference"):
            # the server's own count of calls agrees with the pods created
            assert phase["server_transport"]["requests"] == 20
        if phase["arm"] == "reference-go-h2":
            assert phase["server_transport"]["http2"] == 20
        if phase["arm"] == "reference-go-h1":
            assert phase["server_transport"]["http1"] == 20
        # The operator's loop is probed in every phase; the Python reference probes its own.
        assert phase["operator_loop_lag"]["p99"]["count"] > 0
        if phase["arm"] == "reference":
            assert phase["reference_loop_lag"]["p99"]["count"] > 0
        else:
            assert phase["reference_loop_lag"] is None
    summary = e2e["summary"][0]
    assert "maxtune_over_reference" in summary
    page = (tmp_path / "webhook.md").read_text()
    assert "(b) Pod creation through the API server" in page
    assert "operator loop lag p99" in page


def test_bench_plane_passes_its_flags() -> None:
    from benchmarks.benchplane import bench_plane

    with bench_plane() as plane:
        for name, flags in BENCH_PLANE_ARGS.items():
            cmdline = psutil.Process(plane.pids()[name]).cmdline()
            assert all(flag in cmdline for flag in flags), (name, cmdline)


def test_heartbeat_cost_benchmark_runs(tmp_path: Path) -> None:
    argv = ["--profiles", "3", "--rate", "10", "--seconds", "0.5", "--rounds", "2"]
    argv += ["--ways", *heartbeatcost.WAYS, "--out", str(tmp_path)]
    assert heartbeatcost.main(argv) == 0
    result = _only(tmp_path, "heartbeatcost")
    summary = result["summary"]
    assert isinstance(summary, dict)
    assert set(heartbeatcost.WAYS) <= set(summary)
    assert len(summary["profile_over_lease"]["per_round"]) == 2
    sizes = result["object_bytes"]
    assert isinstance(sizes, dict) and sizes["profile"] > 5 * sizes["lease"]
    # The full-precision profile is the one agents wrote before contract.precision: larger.
    assert sizes["profile-full"] > 1.2 * sizes["profile"]
    assert len(summary["status_put_full_over_status_put"]["per_round"]) == 2
    page = (tmp_path / "heartbeatcost.md").read_text()
    assert "Profile / Lease" in page and "Whole-status PUT, full precision / published" in page


def test_handler_cpu_benchmark_runs(tmp_path: Path) -> None:
    """Three arms (this tree, HEAD's tree in a worktree, the reference), every answer checked."""
    argv = ["--before", "HEAD", "--nodes", "20", "--rate", "50", "--seconds", "1"]
    assert handlercpu.main([*argv, "--rounds", "1", "--out", str(tmp_path)]) == 0
    result = _only(tmp_path, "handlercpu")
    steps = result["steps"]
    assert isinstance(steps, list)
    assert sorted(s["arm"] for s in steps) == ["before", "maxtune", "reference"]
    assert all(s["reviews"] >= 40 and s["errors"] == 0 for s in steps)
    summary = result["summary"]
    assert isinstance(summary, dict)
    assert set(summary["ratios"]) == {"maxtune/reference", "before/reference", "before/maxtune"}


def test_simulated_agents_write_the_lease_a_real_agent_writes(
    kubeconfig: Path, k8s: ApiClient, kwok_nodes: Callable[..., list[str]], namespace: str
) -> None:
    """benchmarks.agentleases stands in for 5,000 agents: its Leases must be the agent's own
    (KubeSink._renew): the same labels, owner, holder, duration and fields."""
    real, simulated = kwok_nodes(2, prefix="lease")
    interval = 0.5
    sink = KubeSink(
        Kube(k8s.configuration),
        lease_namespace=namespace,
        lease_seconds=agentleases.lease_seconds(interval),
    )
    sink._renew(real, namespace)  # the agent's first round creates its Lease, the next renews it
    sink._renew(real, namespace)

    async def simulate() -> None:
        async with Api(Credentials.from_kubeconfig(kubeconfig)) as api:
            agents = agentleases.LeaseAgents(api, namespace, interval_s=interval).start()
            node = await api.call("GET", f"/api/v1/nodes/{simulated}")
            await agents.add(simulated, node["metadata"]["uid"])
            while agents.counts["renewed"] < 2:
                await asyncio.sleep(0.1)
                agents.check()
            await agents.stop()

    asyncio.run(simulate())
    path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
    kube = Kube(k8s.configuration)
    mine, theirs = (kube.request("GET", f"{path}/{n}") for n in (real, simulated))
    assert mine["metadata"]["labels"] == theirs["metadata"]["labels"]
    assert [
        {k: v for k, v in ref.items() if k != "uid"} for ref in mine["metadata"]["ownerReferences"]
    ] == [
        {k: v if k != "name" else real for k, v in ref.items() if k != "uid"}
        for ref in theirs["metadata"]["ownerReferences"]
    ]
    assert set(mine["spec"]) == set(theirs["spec"])
    assert mine["spec"]["leaseDurationSeconds"] == theirs["spec"]["leaseDurationSeconds"]
    assert (mine["spec"]["holderIdentity"], theirs["spec"]["holderIdentity"]) == (real, simulated)
    assert theirs["spec"]["renewTime"] > theirs["spec"]["acquireTime"]
    # Renewed without field tracking, both (maxtune.agent.lease).
    assert "managedFields" not in mine["metadata"], mine["metadata"]
    assert "managedFields" not in theirs["metadata"], theirs["metadata"]
