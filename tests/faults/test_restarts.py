"""Faults under a running fleet: the API server or etcd restarted, an agent killed or hung,
the webhook hung. Nothing here restarts the operator or an agent unless the fault is theirs:
they must ride the fault out and converge afterwards.
"""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import jsonpatch
import pytest
from kubernetes import client
from kubernetes.client import ApiClient

from maxtune.kube import Kube
from maxtune_dev.localplane import LocalPlane
from maxtune_dev.testkit import cluster
from tests.faults.conftest import OperatorFactory, delete_nodes
from tests.faults.procs import AgentProcess, write_fleet
from tests.faults.rig import (
    POLICY,
    Rig,
    cluster_policy,
    decision_of,
    patch_of,
    profile_of,
)

pytestmark = [pytest.mark.plane, pytest.mark.slow]

eventually = cluster.eventually


@pytest.fixture(scope="module")
def rig(
    plane: LocalPlane,
    k8s: ApiClient,
    operators: OperatorFactory,
    registered_webhook: object,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Rig]:
    kube = Kube(k8s.configuration)
    tag = uuid.uuid4().hex[:6]
    roles = {r: f"flt-{tag}-{r}" for r in ("big-0", "big-1", "small-0", "late-0")}
    models = {name: "small" if role.startswith("small") else "big" for role, name in roles.items()}
    folder = tmp_path_factory.mktemp("fleet")
    fleet = write_fleet(folder / "fleet.yaml", models)
    core = client.CoreV1Api(k8s)
    namespace = f"faults-{tag}"
    core.create_namespace(
        client.V1Namespace(
            metadata=client.V1ObjectMeta(name=namespace, labels={"maxtune.io/inject": "enabled"})
        )
    )
    op = operators(identity="op-rig", lease=f"rig-{tag}")
    op.start()
    registered_webhook(op)  # type: ignore[operator]
    rig = Rig(kube, k8s, op, {}, roles, namespace, plane.ca_file)
    try:
        for role in ("big-0", "big-1", "small-0"):
            rig.add_node(role)
            rig.agents[role] = AgentProcess(roles[role], fleet, plane.kubeconfig, folder).start()
        for agent in rig.agents.values():
            agent.wait_ready()
        eventually(rig.all_labelled, "labels on every node of the rig", timeout_s=60)
        eventually(
            lambda: all("measuredTime" in rig.profile_status(r) for r in rig.agents),
            "every agent's measurements published",
            timeout_s=60,
        )
        yield rig
    finally:
        for agent in rig.agents.values():
            if agent.proc is not None:
                agent.stop()
        cluster.delete_quietly(kube, POLICY)
        delete_nodes(k8s, rig.made_nodes)
        for name in roles.values():
            cluster.delete_quietly(kube, f"{cluster.PROFILES}/{name}")
        core.delete_namespace(namespace, propagation_policy="Background")


def _pids(rig: Rig) -> dict[str, int]:
    return {"operator": rig.operator.proc.pid, **{r: a.pid for r, a in rig.agents.items()}}  # type: ignore[union-attr]


def _alive(rig: Rig) -> bool:
    return (
        rig.operator.proc is not None
        and rig.operator.proc.poll() is None
        and all(a.alive() for a in rig.agents.values())
    )


@pytest.mark.parametrize("component", ["kube-apiserver", "etcd"])
def test_control_plane_restart_under_operator_and_agents(
    rig: Rig, plane: LocalPlane, component: str
) -> None:
    """Down for a while, then back on the same port: nobody restarts, everything converges."""
    pids = _pids(rig)
    measured = {r: rig.profile_status(r)["measuredTime"] for r in rig.agents}
    errors = {r: a.metric("maxtune_agent_publish_errors_total") for r, a in rig.agents.items()}

    began = time.monotonic()
    plane.stop_component(component, grace_s=3)
    try:
        # The agents notice (their publishes fail: at once without an API server, after their
        # 10 s read timeout without etcd) and keep their health.
        eventually(
            lambda: all(
                a.metric("maxtune_agent_publish_errors_total") > errors[r]
                for r, a in rig.agents.items()
            ),
            "every agent to see the outage",
            timeout_s=45,
        )
        # The leader cannot renew its Lease: it stops labelling (renew deadline 3 s here).
        eventually(
            lambda: rig.operator.metric("maxtune_operator_leader") == 0,
            "the leader to step down while it cannot renew",
            timeout_s=30,
        )
        # The webhook keeps answering from what it knows: valid, allowing, a patch that applies.
        for _ in range(5):
            status, answer = rig.ask_webhook()
            assert status == 200
            patched = jsonpatch.apply_patch(rig.gpu_pod("x"), patch_of(answer))
            assert decision_of(patched)["mode"] == "max-autotune"
        assert rig.operator.get("/healthz")[0] == 200
        assert all(a.get("/healthz")[0] == 200 for a in rig.agents.values())
        outage = time.monotonic() - began
    finally:
        plane.start_component(component)
    back_at = datetime.now(UTC).replace(microsecond=0)

    # Profiles refreshed (heartbeats move), measurements kept, nobody restarted.
    eventually(
        lambda: all(rig.heartbeat(r) > back_at for r in rig.agents),
        "fresh heartbeats after the restart",
        timeout_s=60,
    )
    assert {r: rig.profile_status(r)["measuredTime"] for r in rig.agents} == measured
    assert _alive(rig) and _pids(rig) == pids
    eventually(
        lambda: rig.operator.metric("maxtune_operator_leader") == 1, "leader again", timeout_s=30
    )
    assert rig.all_labelled()

    # The operator's watches are live again: a policy change relabels, a new node is labelled.
    cluster_policy(rig.kube, minMeasuredGain=0.5)
    try:
        eventually(
            lambda: (
                rig.labels("big-0")["maxtune.io/recommended-mode"] == "default"
                and rig.labels("big-1")["maxtune.io/recommended-mode"] == "default"
            ),
            "the policy change relabels after the restart",
            timeout_s=60,
        )
    finally:
        cluster.delete_quietly(rig.kube, POLICY)
    eventually(rig.all_labelled, "labels back once the policy is gone", timeout_s=60)
    # The webhook is called by the restarted API server again.
    pod = eventually(
        lambda: (
            (p := rig.create_pod(f"after-{component}-{uuid.uuid4().hex[:4]}"))
            and decision_of(p).get("mode") is not None
            and p
        ),
        "a pod mutated through the restarted API server",
        timeout_s=30,
    )
    assert decision_of(pod)["mode"] == "max-autotune"
    print(f"{component} down {outage:.1f}s; operator and agents kept pids {pids}")


def test_leader_steps_down_by_its_renew_deadline_when_the_api_server_hangs(
    rig: Rig, plane: LocalPlane
) -> None:
    """Without etcd the API server accepts requests and does not answer them. A leader must
    stop labelling once it has not renewed for its renew deadline (3 s in these tests), before
    its Lease (4 s) lets a standby take over: a hanging request must not keep it leading."""
    assert rig.operator.metric("maxtune_operator_leader") == 1
    plane.stop_component("etcd", grace_s=3)
    began = time.monotonic()
    try:
        eventually(
            lambda: rig.operator.metric("maxtune_operator_leader") == 0,
            "the leader to step down",
            timeout_s=60,
        )
        took = time.monotonic() - began
    finally:
        plane.start_component("etcd")
    eventually(
        lambda: rig.operator.metric("maxtune_operator_leader") == 1, "leader again", timeout_s=60
    )
    # Renewed last at most retry period (0.5 s) before the outage; steps down by the deadline.
    assert took < 4.0, f"still leading {took:.1f}s into the outage (renew deadline 3 s)"


def test_a_node_joining_after_an_api_server_restart_is_labelled(
    rig: Rig, plane: LocalPlane, tmp_path: Path
) -> None:
    plane.restart("kube-apiserver", sig=signal.SIGKILL, down_s=2)
    rig.add_node("late-0")
    agent = AgentProcess(
        rig.node("late-0"), rig.agents["big-0"].fleet, plane.kubeconfig, tmp_path
    ).start()
    rig.agents["late-0"] = agent
    agent.wait_ready()
    eventually(lambda: rig.all_labelled(["late-0"]), "the late node labelled", timeout_s=60)


def test_agent_sigkilled_and_restarted_keeps_and_refreshes_its_profile(rig: Rig) -> None:
    agent = rig.agents["big-0"]
    before = profile_of(rig.kube, agent.node)["status"]
    old_pid = agent.pid
    assert agent.stop(signal.SIGKILL) == -signal.SIGKILL
    time.sleep(1.5)  # heartbeats have one-second resolution
    assert rig.labels("big-0") == rig.expected("big-0")  # a fresh profile keeps its labels
    agent.start()
    agent.wait_ready()
    assert agent.pid != old_pid
    restarted_at = datetime.fromisoformat(before["heartbeatTime"])
    eventually(lambda: rig.heartbeat("big-0") > restarted_at, "a heartbeat from the new agent", 30)
    after = profile_of(rig.kube, agent.node)["status"]
    assert after["measuredTime"] == before["measuredTime"]
    assert [g.get("measurements") for g in after["gpus"]] == [
        g.get("measurements") for g in before["gpus"]
    ]
    assert "kept the published measurements" in agent.tail(200)
    assert rig.labels("big-0") == rig.expected("big-0")


def test_hung_agent_goes_stale_loses_its_labels_and_regains_them(rig: Rig) -> None:
    """SIGSTOP: the process is there, its heartbeat is not. Labels must not outlive it."""
    cluster_policy(rig.kube, staleAfterSeconds=30)  # the smallest the schema allows
    agent = rig.agents["big-1"]
    try:
        agent.send(signal.SIGSTOP)
        stopped = time.monotonic()
        eventually(lambda: rig.labels("big-1") == {}, "labels of the hung agent's node gone", 60)
        took = time.monotonic() - stopped
        assert 25 <= took <= 45, took  # staleAfterSeconds, plus at most a sweep (3 s)
        assert rig.labels("big-0") == rig.expected("big-0")  # only the silent node
        assert rig.operator.metric("maxtune_operator_stale_profiles") >= 1
        agent.send(signal.SIGCONT)
        eventually(lambda: rig.all_labelled(["big-1"]), "labels back with the heartbeat", 30)
    finally:
        agent.send(signal.SIGCONT)
        cluster.delete_quietly(rig.kube, POLICY)


def test_hung_webhook_times_out_open_and_the_labeller_catches_up(rig: Rig) -> None:
    """A webhook that accepts connections but never answers: the API server's timeout (3 s)
    and failurePolicy Ignore let pods through; the operator catches up when it runs again."""
    op = rig.operator
    assert op.proc is not None
    op.proc.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        pod = rig.create_pod(f"hung-{uuid.uuid4().hex[:4]}")
        took = time.monotonic() - started
        assert decision_of(pod) == {}  # created, unmutated
        assert took < 10, took
        cluster_policy(rig.kube, minMeasuredGain=0.5)  # a change the hung labeller misses
        time.sleep(2)
        assert rig.labels("big-0")["maxtune.io/recommended-mode"] == "max-autotune"
    finally:
        op.proc.send_signal(signal.SIGCONT)
    try:
        eventually(
            lambda: rig.labels("big-0")["maxtune.io/recommended-mode"] == "default",
            "the labeller catches up after the hang",
            timeout_s=60,
        )
        after = rig.create_pod(f"after-hang-{uuid.uuid4().hex[:4]}")
        assert decision_of(after)["mode"] == "default"
    finally:
        cluster.delete_quietly(rig.kube, POLICY)
    eventually(rig.all_labelled, "labels back once the policy is gone", timeout_s=60)
