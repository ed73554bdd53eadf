"""Chart releases on the local control plane: installed by the real helm, always uninstalled.

Each release gets a fresh namespace and its own name, so its cluster-scoped objects (roles,
webhook configuration, admission policies) cannot meet another test's. Servers that a test runs
locally from the chart's pod specs listen on free ports of 127.0.0.1, which the values carry.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client import ApiClient

from maxtune_dev.localplane import LocalPlane, wait_for
from maxtune_dev.localplane.process import free_port
from tests.agent.conftest import agent_crds  # noqa: F401 - the CRDs from crds/, as a fixture
from tests.chart.helmkit import CHART, helm
from tests.chart.localrun import kapi

GPU_PRESENT = {"nvidia.com/gpu.present": "true"}
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}


@dataclass
class Release:
    name: str
    namespace: str
    kubeconfig: Path
    values: dict[str, Any]
    webhook_port: int
    metrics_port: int
    installed: bool = True
    notes: str = field(default="")

    @property
    def fullname(self) -> str:
        return self.name if "maxtune" in self.name else f"{self.name}-maxtune"

    def helm(self, *args: str, check: bool = True) -> str:
        done = helm(*args, "--namespace", self.namespace, kubeconfig=self.kubeconfig, check=check)
        return done.stdout

    def upgrade(self, values: dict[str, Any], folder: Path) -> None:
        path = folder / f"upgrade-{uuid.uuid4().hex[:6]}.json"
        path.write_text(json.dumps(values))
        self.helm("upgrade", self.name, str(CHART), "--reuse-values", "-f", str(path))

    def uninstall(self) -> None:
        if self.installed:
            self.helm("uninstall", self.name, "--wait", "--timeout", "90s")
            self.installed = False

    def hook_manifests(self, hook: str) -> list[dict[str, Any]]:
        """The release's hook objects of one kind of hook (e.g. post-delete), as stored by helm."""
        objects = [o for o in yaml.safe_load_all(self.helm("get", "hooks", self.name)) if o]
        return [
            o for o in objects if o["metadata"].get("annotations", {}).get("helm.sh/hook") == hook
        ]


Installer = Callable[..., Release]
NodeFactory = Callable[..., list[str]]


@pytest.fixture
def install(
    plane: LocalPlane,
    namespace: str,
    tmp_path: Path,
    k8s: ApiClient,
    kwok_nodes: NodeFactory,
    agent_crds: None,  # noqa: F811
) -> Iterator[Installer]:
    """`install(values)`: helm install into the test's namespace; uninstalled after the test.

    A plain (GPU-less) node is there first: the operator's pods and the hook Jobs need one to be
    scheduled on, and a post-delete hook whose pod never runs would hold uninstall to its timeout.
    The CRDs come from crds/ (`crds.enabled=false`): every release on this shared plane would
    otherwise claim them, and Helm refuses a CRD another release (or kubectl) owns.
    test_plane_crds.py installs them with the chart, on a plane of its own.
    """
    made: list[Release] = []
    kwok_nodes(capacity={}, prefix="plain")

    def run(values: dict[str, Any] | None = None) -> Release:
        webhook_port, metrics_port = free_port(), free_port()
        base: dict[str, Any] = {
            "listenHost": "127.0.0.1",
            "operator": {"webhookPort": webhook_port, "metricsPort": metrics_port},
            "webhook": {"url": f"https://127.0.0.1:{webhook_port}/mutate"},
            "crds": {"enabled": False},
        }
        merged = _merge(base, values or {})
        release = Release(
            name=f"mt{uuid.uuid4().hex[:6]}",
            namespace=namespace,
            kubeconfig=plane.kubeconfig,
            values=merged,
            webhook_port=webhook_port,
            metrics_port=metrics_port,
        )
        path = tmp_path / f"{release.name}.json"
        path.write_text(json.dumps(merged))
        made.append(release)
        release.notes = release.helm("install", release.name, str(CHART), "-f", str(path))
        _wait_crds(k8s)
        return release

    yield run
    for release in made:
        release.uninstall()


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _wait_crds(k8s: ApiClient) -> None:
    ext = kapi("ApiextensionsV1Api", k8s)

    def established() -> bool:
        for name in ("gpunodeprofiles.maxtune.io", "autotunepolicies.maxtune.io"):
            crd = ext.read_custom_resource_definition(name)
            conditions = (crd.status.conditions or []) if crd.status else []
            if not any(c.type == "Established" and c.status == "True" for c in conditions):
                return False
        return True

    wait_for(established, timeout_s=60, what="maxtune CRDs Established")
