"""The agent against the real local control plane (etcd + kube-apiserver + CRDs).

Simulated GPUs (a fleet file), real everything else: the official client, the
CRD's schema validation and status subresource, RBAC with the agent's exact
rules and a service-account token, an outage between agent and API server, the
`maxtune agent` process with its HTTP endpoints.
"""

from __future__ import annotations

import contextlib
import copy
import json
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from maxtune.agent.backends import SimulationBackend
from maxtune.agent.daemon import Agent
from maxtune.agent.inventory import Inventory
from maxtune.agent.kube import KubeSink
from maxtune.agent.measure import GpuOutcome
from maxtune.agent.publish import AGENT_RBAC_RULES
from maxtune.contract.models import GPUNodeProfile
from maxtune.contract.names import GROUP, POLICY_PLURAL, PROFILE_PLURAL, VERSION
from maxtune.kube import Kube, KubeError
from maxtune.retry import Backoff
from maxtune_dev.localplane import LocalPlane, wait_for
from maxtune_dev.localplane.process import free_port
from tests.agent.conftest import DEMO
from tests.agent.tcpproxy import TcpProxy

pytestmark = pytest.mark.plane


class CountingBackend(SimulationBackend):
    def __init__(self, fleet: Path, node: str) -> None:
        super().__init__(fleet, node)
        self.measured = 0

    def measure(self, inventory: Inventory, level: str) -> dict[str, GpuOutcome]:
        self.measured += 1
        return super().measure(inventory, level)


def read_profile(k8s: ApiClient, name: str) -> GPUNodeProfile:
    obj = client.CustomObjectsApi(k8s).get_cluster_custom_object(
        GROUP, VERSION, PROFILE_PLURAL, name
    )
    return GPUNodeProfile.model_validate(obj)


def test_agent_publishes_its_profile_through_the_api_server(
    k8s: ApiClient, sim_node: tuple[str, Path]
) -> None:
    name, fleet = sim_node
    agent = Agent(
        node=name, backend=SimulationBackend(fleet, name), sink=KubeSink(Kube(k8s.configuration))
    )
    agent.tick(block=True)
    profile = read_profile(k8s, name)
    assert profile.spec.node_name == name
    status = profile.status
    assert status is not None
    assert (status.source, status.simulation, status.level) == ("simulation", "fleet.yaml", "full")
    assert len(status.gpus) == 4 and status.gpus[0].mig_enabled
    assert {r.name: r.count for r in status.resources} == {
        "nvidia.com/gpu": 3,
        "nvidia.com/mig-1g.10gb": 1,
        "nvidia.com/mig-3g.40gb": 2,
    }
    assert {c.type: c.status for c in status.conditions} == {
        "Inventoried": "True",
        "GemmMeasured": "True",
        "CompileMeasured": "True",
        "Ready": "True",
    }
    # The status went through the status subresource: the spec is the agent's too.
    raw = client.CustomObjectsApi(k8s).get_cluster_custom_object(
        GROUP, VERSION, PROFILE_PLURAL, name
    )
    assert raw["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "maxtune"


def test_restart_keeps_and_refreshes_the_published_profile(
    k8s: ApiClient, sim_node: tuple[str, Path]
) -> None:
    name, fleet = sim_node
    Agent(
        node=name, backend=SimulationBackend(fleet, name), sink=KubeSink(Kube(k8s.configuration))
    ).tick(block=True)
    before = read_profile(k8s, name).status
    assert before is not None
    time.sleep(1.1)  # heartbeats have one-second resolution
    backend = CountingBackend(fleet, name)
    restarted = Agent(node=name, backend=backend, sink=KubeSink(Kube(k8s.configuration)))
    restarted.recover()
    restarted.tick(block=True)
    after = read_profile(k8s, name).status
    assert after is not None
    assert backend.measured == 0
    assert after.measured_time == before.measured_time
    assert after.heartbeat_time > before.heartbeat_time
    assert [g.measurements for g in after.gpus] == [g.measurements for g in before.gpus]


def test_heartbeats_patch_only_the_heartbeat_and_a_hand_edit_is_written_over(
    k8s: ApiClient, sim_node: tuple[str, Path]
) -> None:
    name, fleet = sim_node
    objects = client.CustomObjectsApi(k8s)
    sink = KubeSink(Kube(k8s.configuration))
    agent = Agent(node=name, backend=SimulationBackend(fleet, name), sink=sink)
    agent.tick(block=True)
    first = objects.get_cluster_custom_object(GROUP, VERSION, PROFILE_PLURAL, name)
    time.sleep(1.1)  # heartbeats have one-second resolution
    agent.tick(block=True)
    second = objects.get_cluster_custom_object(GROUP, VERSION, PROFILE_PLURAL, name)
    assert sink.writes == {"status": 1, "heartbeat": 1}
    assert second["status"]["heartbeatTime"] > first["status"]["heartbeatTime"]
    assert {k: v for k, v in second["status"].items() if k != "heartbeatTime"} == {
        k: v for k, v in first["status"].items() if k != "heartbeatTime"
    }

    # Someone else rewrites the status: the conditional patch is refused (409) and the
    # agent sends its whole status again.
    edited = dict(second)
    edited["status"] = {**second["status"], "resources": []}
    objects.replace_cluster_custom_object_status(GROUP, VERSION, PROFILE_PLURAL, name, edited)
    agent.tick(block=True)
    third = objects.get_cluster_custom_object(GROUP, VERSION, PROFILE_PLURAL, name)
    assert sink.writes == {"status": 2, "heartbeat": 1}
    assert third["status"]["resources"] == first["status"]["resources"]

    # The profile deleted (no finalizers: gone at once): the patch finds nothing (404) and
    # the agent creates it again.
    objects.delete_cluster_custom_object(GROUP, VERSION, PROFILE_PLURAL, name)
    agent.tick(block=True)
    assert sink.writes == {"status": 3, "heartbeat": 1}
    assert read_profile(k8s, name).status is not None


def test_a_steady_agent_renews_its_lease_and_writes_its_profile_only_on_change(
    k8s: ApiClient, sim_node: tuple[str, Path], namespace: str
) -> None:
    """Liveness through a Lease named after the node (like kubelets'); the profile is written
    once while nothing changes, and again only when the agent's facts change."""
    name, fleet = sim_node
    kube = Kube(k8s.configuration)
    lease_path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}"
    sink = KubeSink(kube, lease_namespace=namespace)
    agent = Agent(node=name, backend=SimulationBackend(fleet, name), sink=sink)
    agent.tick(block=True)
    first = kube.request("GET", f"/apis/{GROUP}/{VERSION}/{PROFILE_PLURAL}/{name}")
    lease = kube.request("GET", lease_path)
    assert lease["metadata"]["labels"]["maxtune.io/agent-heartbeat"] == "true"
    assert lease["spec"]["holderIdentity"] == name
    for _ in range(3):
        time.sleep(0.05)
        agent.tick(block=True)
    second = kube.request("GET", f"/apis/{GROUP}/{VERSION}/{PROFILE_PLURAL}/{name}")
    renewed = kube.request("GET", lease_path)
    assert sink.writes == {"status": 1, "lease": 4}
    assert second["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    assert renewed["spec"]["renewTime"] > lease["spec"]["renewTime"]
    # The API server tracked the fields the first write set; renewals cleared that record and
    # it did not come back (maxtune.agent.lease: tracking cost a sixth of each renewal).
    assert lease["metadata"]["managedFields"]
    assert "managedFields" not in renewed["metadata"], renewed["metadata"]
    # Someone else's server-side apply starts tracking again; the next renewal clears it.
    kube.request(
        "PATCH",
        lease_path,
        query={"fieldManager": "admin", "force": "true"},
        body=json.dumps(  # YAML, as apply wants it (JSON is YAML)
            {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": name, "annotations": {"note": "checked"}},
            }
        ),
        content_type="application/apply-patch+yaml",
    )
    assert kube.request("GET", lease_path)["metadata"]["managedFields"]
    agent.tick(block=True)
    after = kube.request("GET", lease_path)["metadata"]
    assert "managedFields" not in after
    assert after["annotations"]["note"] == "checked"  # the admin's field kept
    # The Lease deleted (an admin, a restored namespace): the next round creates it again.
    kube.request("DELETE", lease_path)
    agent.tick(block=True)
    assert kube.request("GET", lease_path)["spec"]["holderIdentity"] == name
    assert sink.writes["status"] == 1


def test_the_heartbeat_lease_goes_with_its_node(
    k8s: ApiClient,
    kwok_nodes: Callable[..., list[str]],
    namespace: str,
    tmp_path: Path,
    agent_crds: None,
) -> None:
    """The Node owns its agent's Lease: the garbage collector deletes it with the node, so a
    shrinking cluster leaves no Leases behind (and the operator needs no delete right)."""
    name = kwok_nodes(1, prefix="leased")[0]
    fleet = yaml.safe_load(DEMO.read_text())
    fleet["nodes"] = [
        {**next(n for n in fleet["nodes"] if n["name"] == "gpu-a100-0"), "name": name}
    ]
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(fleet))
    kube = Kube(k8s.configuration)
    lease_path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}"
    node = kube.request("GET", f"/api/v1/nodes/{name}")
    agent = Agent(
        node=name,
        backend=SimulationBackend(path, name),
        sink=KubeSink(kube, lease_namespace=namespace),
        level="inventory",
    )
    try:
        agent.tick(block=True)
        owners = kube.request("GET", lease_path)["metadata"]["ownerReferences"]
        assert owners == [
            {"apiVersion": "v1", "kind": "Node", "name": name, "uid": node["metadata"]["uid"]}
        ]
        kube.request("DELETE", f"/api/v1/nodes/{name}")

        def gone() -> bool:
            try:
                kube.request("GET", lease_path)
            except KubeError as exc:
                return exc.status == 404
            return False

        wait_for(gone, timeout_s=60, what=f"the garbage collector to delete Lease {name}")
    finally:
        with contextlib.suppress(KubeError):
            kube.request("DELETE", f"/apis/{GROUP}/{VERSION}/{PROFILE_PLURAL}/{name}")


def _agent_identity(k8s: ApiClient, plane: LocalPlane) -> Iterator[ApiClient]:
    core = client.CoreV1Api(k8s)
    rbac = client.RbacAuthorizationV1Api(k8s)
    suffix = uuid.uuid4().hex[:6]
    namespace, account = f"agent-rbac-{suffix}", "maxtune-agent"
    role = f"maxtune-agent-test-{suffix}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    try:
        core.create_namespaced_service_account(
            namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=account))
        )
        rbac.create_cluster_role(
            client.V1ClusterRole(
                metadata=client.V1ObjectMeta(name=role),
                rules=[
                    client.V1PolicyRule(api_groups=[g], resources=[r], verbs=list(v))
                    for g, r, v in AGENT_RBAC_RULES
                ],
            )
        )
        rbac.create_cluster_role_binding(
            client.V1ClusterRoleBinding(
                metadata=client.V1ObjectMeta(name=role),
                role_ref=client.V1RoleRef(
                    api_group="rbac.authorization.k8s.io", kind="ClusterRole", name=role
                ),
                subjects=[
                    client.RbacV1Subject(kind="ServiceAccount", name=account, namespace=namespace)
                ],
            )
        )
        token = core.create_namespaced_service_account_token(
            account,
            namespace,
            client.AuthenticationV1TokenRequest(
                spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)
            ),
        ).status.token
        cfg = client.Configuration()
        cfg.host = plane.server
        cfg.ssl_ca_cert = str(plane.ca_file)
        cfg.api_key = {"authorization": token}
        cfg.api_key_prefix = {"authorization": "Bearer"}
        with ApiClient(cfg) as api:
            yield api
    finally:
        for delete in (
            lambda: rbac.delete_cluster_role_binding(role),
            lambda: rbac.delete_cluster_role(role),
            lambda: core.delete_namespace(namespace),
        ):
            try:
                delete()
            except ApiException as exc:
                if exc.status != 404:
                    raise


@pytest.fixture
def agent_api(k8s: ApiClient, plane: LocalPlane) -> Iterator[ApiClient]:
    """An ApiClient holding a service-account token bound to exactly AGENT_RBAC_RULES."""
    yield from _agent_identity(k8s, plane)


def test_the_agent_rbac_rules_are_enough_and_no_more(
    k8s: ApiClient, agent_api: ApiClient, sim_node: tuple[str, Path]
) -> None:
    name, fleet = sim_node
    agent = Agent(
        node=name,
        backend=SimulationBackend(fleet, name),
        sink=KubeSink(Kube(agent_api.configuration)),
    )
    agent.recover()
    agent.tick(block=True)  # create, then status: allowed
    agent.tick(block=True)  # get + replace status again: allowed
    assert agent.published is not None
    assert read_profile(k8s, name).status is not None
    objects = client.CustomObjectsApi(agent_api)
    with pytest.raises(ApiException) as denied:
        objects.delete_cluster_custom_object(GROUP, VERSION, PROFILE_PLURAL, name)
    assert denied.value.status == 403
    with pytest.raises(ApiException) as denied:
        objects.list_cluster_custom_object(GROUP, VERSION, PROFILE_PLURAL)
    assert denied.value.status == 403
    with pytest.raises(ApiException) as denied:
        client.CoreV1Api(agent_api).list_node()
    assert denied.value.status == 403


def test_api_server_outage_loses_nothing(
    k8s: ApiClient, sim_node: tuple[str, Path], plane: LocalPlane
) -> None:
    name, fleet = sim_node
    upstream = urllib.parse.urlsplit(plane.server)
    proxy = TcpProxy(upstream.hostname or "127.0.0.1", upstream.port or 443).start()
    cfg = copy.deepcopy(k8s.configuration)
    cfg.host = f"https://127.0.0.1:{proxy.port}"
    cfg.retries = 0
    api = ApiClient(cfg)
    agent = Agent(
        node=name,
        backend=SimulationBackend(fleet, name),
        sink=KubeSink(Kube(api.configuration)),
        interval_s=0.5,
        backoff=Backoff(base_s=0.05, cap_s=0.3),
    )
    stop = threading.Event()
    thread = threading.Thread(target=agent.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: agent.first_complete_publish_s, timeout_s=30, what="first publish")
        before = read_profile(k8s, name).status
        assert before is not None

        proxy.stop()  # the API server is gone, as far as the agent can tell
        errors_at_cut = _publish_errors(agent)
        wait_for(
            lambda: _publish_errors(agent) >= errors_at_cut + 3,
            timeout_s=30,
            what="the agent to notice the outage",
        )
        time.sleep(1.1)
        during = agent.latest
        assert during is not None and during.heartbeat_time > before.heartbeat_time
        assert read_profile(k8s, name).status == before  # nothing reached the server

        proxy.start()  # same port: the API server is back
        wait_for(
            lambda: (
                (s := read_profile(k8s, name).status) is not None
                and s.heartbeat_time > before.heartbeat_time
            ),
            timeout_s=30,
            what="a publish after the outage",
        )
        after = read_profile(k8s, name).status
        assert after is not None
        assert [g.model_dump() for g in after.gpus] == [g.model_dump() for g in before.gpus]
        assert after.measured_time == before.measured_time
        assert agent.readiness()[0]
    finally:
        stop.set()
        thread.join(timeout=10)
        proxy.stop()
        api.close()
    assert not thread.is_alive()


def _publish_errors(agent: Agent) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(agent.metrics.render().decode()):
        for sample in family.samples:
            if sample.name == "maxtune_agent_publish_errors_total":
                return float(sample.value)
    return 0.0


def _http(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return 0, ""


def test_agent_process_publishes_and_serves_its_endpoints(
    k8s: ApiClient, kubeconfig: Path, sim_node: tuple[str, Path], tmp_path: Path
) -> None:
    name, fleet = sim_node
    port = free_port()
    log = (tmp_path / "agent.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "maxtune.cli.main",
            "agent",
            "--node-name",
            name,
            "--kubeconfig",
            str(kubeconfig),
            "--simulate",
            str(fleet),
            "--metrics-host",
            "127.0.0.1",
            "--metrics-port",
            str(port),
            "--interval",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: _http(port, "/healthz")[0] == 200, timeout_s=60, what="/healthz")
        wait_for(lambda: _http(port, "/readyz")[0] == 200, timeout_s=60, what="/readyz")
        profile = read_profile(k8s, name)
        assert profile.status is not None and profile.status.summary.gpus == 4
        code, body = _http(port, "/metrics")
        assert code == 200
        assert 'maxtune_agent_info{level="full",simulation=' in body
        assert f'node="{name}"' not in body  # the scrape target names the node
        assert (
            'maxtune_gpu_streaming_multiprocessors{gpu="0",' in body
            and 'resource="nvidia.com/mig-3g.40gb"' in body
        )
        assert "maxtune_agent_last_profile_timestamp_seconds " in body
        # The fleet file's compile-cache proof, stored through the CRD's schema (a field the
        # schema lacked would be pruned by the API server and never show up here).
        wait_for(
            lambda: bool(getattr(read_profile(k8s, name).status, "compile_cache", None)),
            timeout_s=60,
            what="status.compileCache",
        )
        stored = read_profile(k8s, name).status
        assert stored is not None
        assert [(p.group, p.works, p.saved_seconds) for p in stored.compile_cache] == [
            ("ml", True, 10.2)
        ]
        code, body = _http(port, "/metrics")
        assert 'maxtune_agent_compile_cache_reachable{group="ml",reason=""} 1.0' in body
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


def test_the_cluster_policy_decides_the_torch_rule(
    k8s: ApiClient, agent_crds: None, tmp_path: Path
) -> None:
    objects = client.CustomObjectsApi(k8s)
    listed = objects.list_cluster_custom_object(GROUP, VERSION, POLICY_PLURAL)["items"]
    if any(p["metadata"]["name"] == "default" for p in listed):
        pytest.skip("a `default` AutotunePolicy exists on this plane and would govern")
    policy = f"0-agent-test-{uuid.uuid4().hex[:6]}"  # sorts first among cluster-wide policies
    body: dict[str, Any] = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "AutotunePolicy",
        "metadata": {"name": policy},
        "spec": {"torch": {"version": "2.3"}},
    }
    objects.create_cluster_custom_object(GROUP, VERSION, POLICY_PLURAL, body)
    node = f"agent-{uuid.uuid4().hex[:8]}"
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(
        json.dumps(
            {
                "name": "policy",
                "gpuModels": {
                    "rtx3080": {
                        "product": "NVIDIA GeForce RTX 3080",
                        "memoryMib": 10240,
                        "computeCapability": "8.6",
                        "smCount": 68,
                    }
                },
                "nodes": [{"name": node, "gpus": [{"model": "rtx3080"}]}],
            }
        )
    )
    try:
        agent = Agent(
            node=node,
            backend=SimulationBackend(fleet, node),
            sink=KubeSink(Kube(k8s.configuration)),
            level="inventory",
        )
        agent.tick(block=True)
        status = read_profile(k8s, node).status
        assert status is not None
        (gpu,) = status.gpus
        assert gpu.verdict.torch_version == "2.3"
        assert (gpu.verdict.capable, gpu.verdict.rule) == (False, "SMs: 68 < 80")
    finally:
        objects.delete_cluster_custom_object(GROUP, VERSION, POLICY_PLURAL, policy)
        try:
            objects.delete_cluster_custom_object(GROUP, VERSION, PROFILE_PLURAL, node)
        except ApiException as exc:
            if exc.status != 404:
                raise
