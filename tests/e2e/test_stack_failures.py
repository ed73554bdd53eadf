"""A stack that cannot start takes back what it added, and says why it could not start."""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from maxtune_dev.demo.cluster import Cluster
from maxtune_dev.demo.fleet import FLEET_LABEL
from maxtune_dev.demo.release import HelmError
from maxtune_dev.demo.stack import Stack, StackOptions
from maxtune_dev.localplane import LocalPlane
from maxtune_dev.localrun import kapi
from tests.agent.conftest import agent_crds  # noqa: F401 - the CRDs from crds/, as a fixture
from tests.e2e.conftest import FLEET

pytestmark = [pytest.mark.plane]


def test_values_the_schema_refuses_fail_the_start_and_leave_nothing(
    plane: LocalPlane, k8s: ApiClient, tmp_path: Path
) -> None:
    options = StackOptions(
        fleet_file=FLEET,
        release="mtbad",
        namespace="maxtune-bad",
        extra_values={"webhook": {"timeoutSeconds": 30}},
    )
    stack = Stack(Cluster.of_plane(plane), options, tmp_path, progress=lambda _: None)
    with pytest.raises(HelmError, match="timeoutSeconds"):
        stack.__enter__()
    core = kapi("CoreV1Api", k8s)
    ours = [
        n.metadata.name
        for n in core.list_node(label_selector=FLEET_LABEL).items
        if n.metadata.deletion_timestamp is None
    ]
    assert ours == []
    try:
        namespace = core.read_namespace("maxtune-bad")
    except ApiException as exc:
        assert exc.status == 404
    else:
        assert namespace.status.phase == "Terminating"
    assert stack.prometheus is not None and stack.prometheus.proc is None


@pytest.mark.usefixtures("agent_crds")
def test_crds_someone_else_installed_are_left_to_them(plane: LocalPlane, tmp_path: Path) -> None:
    """On a cluster whose CRDs came from `kubectl apply -f crds/` (here: the session plane's),
    the demo's release must not install its own: Helm would refuse to take them over."""
    options = StackOptions(fleet_file=FLEET, release="mtcrds", namespace="maxtune-crds")
    stack = Stack(Cluster.of_plane(plane), options, tmp_path, progress=lambda _: None)
    try:
        assert stack.release.values["crds"] == {"enabled": False}
    finally:
        stack.api.close()  # type: ignore[no-untyped-call]
