"""Fixtures for the agent on the real local control plane: CRDs, a fleet file per test.

The plane itself comes from tests/conftest.py (`plane`, `k8s`, `kubeconfig`).
Nothing here stands in for the API server.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from maxtune.contract.names import GROUP, PROFILE_PLURAL, VERSION
from maxtune.kube import Kube
from maxtune_dev.testkit.cluster import apply_crds

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "fleets" / "demo.yaml"


@pytest.fixture(scope="session")
def agent_crds(k8s: ApiClient) -> None:
    """The CRDs from crds/ (created or replaced), Established before any test uses them."""
    kube = Kube(k8s.configuration)
    try:
        apply_crds(kube)
    finally:
        kube.close()


@pytest.fixture
def sim_node(tmp_path: Path, k8s: ApiClient, agent_crds: None) -> Iterator[tuple[str, Path]]:
    """A unique node name and a fleet file where it has the demo's MIG layout; the node's
    profile is deleted afterwards."""
    name = f"agent-{uuid.uuid4().hex[:8]}"
    fleet = yaml.safe_load(DEMO.read_text())
    template = next(n for n in fleet["nodes"] if n["name"] == "gpu-mig-0")
    fleet["nodes"] = [{**template, "name": name}]
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(fleet))
    yield name, path
    try:
        client.CustomObjectsApi(k8s).delete_cluster_custom_object(
            GROUP, VERSION, PROFILE_PLURAL, name
        )
    except ApiException as exc:
        if exc.status != 404:
            raise
