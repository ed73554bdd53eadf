"""The whole maxtune stack on a cluster without a container runtime, up and down.

Start: Prometheus (empty targets), the fleet's fake nodes, `helm install` of the chart with values
that let out-of-cluster processes serve it, the operator Deployment's pods and one agent per GPU
node (the DaemonSet's pods) as local processes, their metrics endpoints handed to Prometheus, and
then the waits that make the state worth looking at: every process ready, every GPU node labelled
as the operator says it should be, every target scraped.

Stop, in the order a cluster would go: the pods' processes get SIGTERM (helm deleting the
workloads), `helm uninstall`, the post-delete hook's `maxtune cleanup` run here (kwok completes
Jobs without running them), then what the stack itself added: Prometheus, the webhook service
forwarder, the fleet's profiles and nodes, the namespace it created. Every step runs even when
an earlier one failed; the failures are reported together.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from maxtune.contract.names import GROUP, LABEL_CAPABLE, LABEL_MODE, PROFILE_PLURAL, VERSION
from maxtune_dev.demo import fleet as fleetmod
from maxtune_dev.demo import workloads
from maxtune_dev.demo.cluster import Cluster
from maxtune_dev.demo.prometheus import Prometheus, Target
from maxtune_dev.demo.promfetch import ensure_prometheus
from maxtune_dev.demo.release import HelmError, Release, run_cleanup_hook
from maxtune_dev.demo.service import Forwarder
from maxtune_dev.localplane import wait_for
from maxtune_dev.localplane.process import free_port
from maxtune_dev.localrun import kapi

FLEET_CONFIGMAP = "maxtune-demo-fleet"
Progress = Callable[[str], None]


class StackError(RuntimeError):
    """The stack could not start, or stopping it left something behind."""


@dataclass
class StackOptions:
    fleet_file: Path
    release: str = "maxtune"
    namespace: str = "maxtune-system"
    operator_replicas: int = 2
    cpu_nodes: int = 1
    # Heartbeats well inside the policy's default staleAfterSeconds (300), and often enough
    # that a measurement published a round late (the agent's wake-up race) costs seconds.
    agent_interval_s: int = 20
    extra_values: dict[str, Any] = field(default_factory=dict)
    ready_timeout_s: float = 180.0


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


class Stack:
    def __init__(
        self, cluster: Cluster, options: StackOptions, folder: Path, progress: Progress = print
    ) -> None:
        self.cluster = cluster
        self.options = options
        self.folder = folder
        self.progress = progress
        self.fleet = fleetmod.load_fleet(options.fleet_file)
        self.nodes = fleetmod.fake_nodes(self.fleet, cpu_nodes=options.cpu_nodes)
        self.gpu_nodes = [n.name for n in self.nodes if n.has_gpus]
        self.api: ApiClient = cluster.api_client()
        self.webhook_port = free_port()
        self.release = Release(
            name=options.release,
            namespace=options.namespace,
            kubeconfig=cluster.kubeconfig,
            values=merge(self._values(), options.extra_values),
        )
        self.prometheus: Prometheus | None = None
        self.forwarder: Forwarder | None = None
        self.operators: list[workloads.LocalPod] = []
        self.agents: list[workloads.LocalPod] = []
        self.timings: dict[str, float] = {}
        self._created_namespace = False
        self._made: list[str] = []
        self._uninstalled = False
        self._stopped = False

    def _crds_owned_elsewhere(self) -> bool:
        """maxtune CRDs already there and not this release's (e.g. `kubectl apply -f crds/`):
        Helm would refuse to take them over, so the release must not install its own."""
        ext = kapi("ApiextensionsV1Api", self.api)
        for crd in ext.list_custom_resource_definition().items:
            if crd.spec.group != GROUP:
                continue
            owner = (crd.metadata.annotations or {}).get("meta.helm.sh/release-name")
            if owner != self.options.release:
                return True
        return False

    def _values(self) -> dict[str, Any]:
        return {
            "listenHost": "127.0.0.1",
            "crds": {"enabled": not self._crds_owned_elsewhere()},
            "operator": {"replicas": self.options.operator_replicas},
            "webhook": {
                "url": f"https://127.0.0.1:{self.webhook_port}/mutate",
                "tls": {"mode": "chart", "extraIPSANs": ["127.0.0.1"]},
            },
            "agent": {
                "intervalSeconds": self.options.agent_interval_s,
                "simulate": {"enabled": True, "fleetConfigMap": FLEET_CONFIGMAP},
            },
        }

    @property
    def core(self) -> Any:
        return kapi("CoreV1Api", self.api)

    @contextmanager
    def _step(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        yield
        self.timings[name] = time.monotonic() - started

    # -- start ----------------------------------------------------------------

    def __enter__(self) -> Stack:
        try:
            return self.start()
        except BaseException:
            try:
                self.stop()
            except StackError as failed:  # the start's error is the one to raise
                self.progress(str(failed))
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> Stack:
        self.folder.mkdir(parents=True, exist_ok=True)
        with self._step("prometheus"):
            binary = ensure_prometheus(self.progress)
            self.prometheus = Prometheus(binary, self.folder / "prometheus", free_port()).start()
            self.forwarder = Forwarder(self.webhook_port).start()
        with self._step("nodes"):
            self._namespace_and_fleet()
            for node in self.nodes:
                fleetmod.create_node(self.api, node, self.fleet.spec.name)
                self._made.append(node.name)  # only these are ours to delete
            fleetmod.wait_ready(self.api, [n.name for n in self.nodes])
        with self._step("helm install"):
            self.release.install(self.folder)
        with self._step("processes"):
            self._start_operators()
            self._start_agents()
            workloads.wait_ready(self.operators + self.agents, self.options.ready_timeout_s)
            self._route()  # the ports each process reported
        with self._step("labels"):
            self.wait_labels()
        with self._step("scraped"):
            self.wait_scraped()
        return self

    def _namespace_and_fleet(self) -> None:
        namespace = self.options.namespace
        try:
            self.core.create_namespace({"metadata": {"name": namespace}})
            self._created_namespace = True
        except ApiException as exc:
            if exc.status != 409:
                raise
        wait_for(
            lambda: any(
                sa.metadata.name == "default"
                for sa in self.core.list_namespaced_service_account(namespace).items
            ),
            timeout_s=60,
            what=f"service account {namespace}/default",
        )
        text = self.options.fleet_file.read_text()
        body = {"metadata": {"name": FLEET_CONFIGMAP}, "data": {"fleet.yaml": text}}
        try:
            self.core.create_namespaced_config_map(namespace, body)
        except ApiException as exc:
            if exc.status != 409:
                raise
            self.core.replace_namespaced_config_map(FLEET_CONFIGMAP, namespace, body)

    def _start_operators(self) -> None:
        found = workloads.scheduled_pods(
            self.api, self.options.namespace, "operator", self.options.operator_replicas
        )
        for pod in found:
            local = workloads.start_pod(
                self.api,
                self.cluster,
                pod,
                "operator",
                self.folder / "pods",
                port_flags={"webhook": "--webhook-port", "metrics": "--metrics-port"},
            )
            self.operators.append(local)

    def _start_agents(self) -> None:
        found = workloads.scheduled_pods(
            self.api, self.options.namespace, "agent", len(self.gpu_nodes)
        )
        for pod in found:
            local = workloads.start_pod(
                self.api,
                self.cluster,
                pod,
                "agent",
                self.folder / "pods",
                port_flags={"metrics": "--metrics-port"},
            )
            self.agents.append(local)

    def _route(self) -> None:
        """The webhook Service and Prometheus's targets point at the processes' ports."""
        assert self.forwarder is not None
        self.forwarder.set_backends([o.ports["webhook"] for o in self.operators])
        self._targets("maxtune-operator", self.operators)
        if self.agents:
            self._targets("maxtune-agent", self.agents)

    def _targets(self, job: str, local: list[workloads.LocalPod]) -> None:
        assert self.prometheus is not None
        targets = [
            Target(
                f"127.0.0.1:{item.ports['metrics']}",
                {"namespace": self.options.namespace, "pod": item.pod, "node": item.node},
            )
            for item in local
        ]
        self.prometheus.set_targets(job, targets)

    # -- waits ------------------------------------------------------------------

    def node_labels(self) -> dict[str, dict[str, str]]:
        """The `maxtune.io/` labels of every node the stack made."""
        ours = {n.name for n in self.nodes}
        return {
            n.metadata.name: {
                k: v for k, v in (n.metadata.labels or {}).items() if k.startswith("maxtune.io/")
            }
            for n in self.core.list_node().items
            if n.metadata.name in ours
        }

    def status(self, *, as_json: bool) -> str:
        """`maxtune status` against the cluster, as a person would run it."""
        argv = [str(Path(sys.executable).with_name("maxtune")), "status"]
        argv += ["--kubeconfig", str(self.cluster.kubeconfig)] + (["--json"] if as_json else [])
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            raise StackError(f"maxtune status failed:\n{done.stderr}")
        return done.stdout

    def profiles(self) -> dict[str, dict[str, Any]]:
        """The fleet's GPUNodeProfiles by node (those published so far)."""
        listed = kapi("CustomObjectsApi", self.api).list_cluster_custom_object(
            GROUP, VERSION, PROFILE_PLURAL
        )
        ours = set(self.gpu_nodes)
        return {p["metadata"]["name"]: p for p in listed["items"] if p["metadata"]["name"] in ours}

    def wait_labels(self) -> None:
        """Until every profile holds its measurements and every node's labels match them.

        An agent publishes its inventory first and its measurements a moment later; labels that
        are "in sync" with an inventory-only profile would still change (a measured gain moves
        the recommended mode), so the wait starts with the measurements: no profile may still
        say `Pending` (a busy GPU says `GPUBusy`, a node of MIG slices `NoWholeGPU`).
        """
        timeout = self.options.ready_timeout_s

        def measured() -> bool:
            found = self.profiles()
            for node in self.gpu_nodes:
                status = found.get(node, {}).get("status")
                if not status or any(c["reason"] == "Pending" for c in status["conditions"]):
                    return False
            return True

        wait_for(measured, timeout_s=timeout, interval_s=0.5, what="every profile measured")

        def labelled() -> bool:
            found = self.node_labels()
            return all(
                LABEL_CAPABLE in found.get(n, {}) and LABEL_MODE in found.get(n, {})
                for n in self.gpu_nodes
            )

        wait_for(labelled, timeout_s=timeout, interval_s=0.5, what="every GPU node labelled")

        def in_sync() -> bool:
            summary = json.loads(self.status(as_json=True))["summary"]
            return bool(
                summary["labelsOutOfSync"] == 0
                and summary["stale"] == 0
                and summary["profiles"] >= len(self.gpu_nodes)
            )

        wait_for(in_sync, timeout_s=timeout, interval_s=1.0, what="labels in sync with profiles")

    def wait_scraped(self) -> None:
        """Until Prometheus has scraped every process since the labels settled.

        Called after `wait_labels`: a scrape older than that could still hold an agent's
        inventory-only verdicts (a GPU whose Triton check has not failed yet reads capable), so
        every target's latest scrape must come after this call began.
        """
        prometheus = self.prometheus
        assert prometheus is not None
        want = {"maxtune-operator": len(self.operators), "maxtune-agent": len(self.agents)}
        since = time.time()

        def scraped() -> bool:
            up = prometheus.targets_up()
            if any(up[job] != {"up": n, "total": n} for job, n in want.items()):
                return False
            oldest = prometheus.query("min(timestamp(up))")
            if not oldest or oldest[0].value < since:
                return False
            nodes = prometheus.query("count by (node) (maxtune_gpu_streaming_multiprocessors)")
            fleet = prometheus.query("max(sum by (instance) (maxtune_operator_nodes))")
            return len(nodes) == len(self.gpu_nodes) and bool(
                fleet and fleet[0].value == len(self.gpu_nodes)
            )

        wait_for(
            scraped,
            timeout_s=self.options.ready_timeout_s,
            interval_s=1.0,
            what=f"Prometheus scraping every process ({prometheus.url})",
        )

    # -- stop -------------------------------------------------------------------

    def uninstall(self) -> str:
        """Stop the processes, `helm uninstall`, run the cleanup hook; returns its output."""
        if self._uninstalled:
            return ""
        self._uninstalled = True
        workloads.stop_pods(self.operators)  # first: a running labeller would relabel
        workloads.stop_pods(self.agents)
        if not self.release.installed:
            return ""
        try:
            hooks = self.release.hook_manifests("post-delete")
        except HelmError:  # no release after all (an install that failed early)
            hooks = []
        self.release.uninstall()
        return run_cleanup_hook(self.api, self.cluster, hooks, self.folder)

    def stop(self) -> None:
        """Take everything down; idempotent. Raises StackError naming whatever failed."""
        if self._stopped:
            return
        self._stopped = True
        errors: list[str] = []

        def attempt(what: str, action: Callable[[], object]) -> None:
            try:
                action()
            except Exception as exc:
                errors.append(f"{what}: {exc}")

        started = time.monotonic()
        attempt("uninstall", self.uninstall)
        if self.forwarder is not None:
            attempt("webhook forwarder", self.forwarder.stop)
        if self.prometheus is not None:
            attempt("prometheus", self.prometheus.stop)
        if self._made:
            attempt("profiles", lambda: fleetmod.delete_profiles(self.api, self._made))
            attempt("nodes", lambda: fleetmod.delete_nodes(self.api, self._made))
        if self._created_namespace:
            attempt("namespace", lambda: self.core.delete_namespace(self.options.namespace))
        self.api.close()  # type: ignore[no-untyped-call]
        self.timings["stop"] = time.monotonic() - started
        if errors:
            raise StackError("stopping the stack failed:\n  " + "\n  ".join(errors))
