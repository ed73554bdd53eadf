"""The end-to-end stack: its own control plane, the chart installed by helm, every process running.

The stack gets a plane of its own rather than the session's: other tests leave policies,
profiles and nodes behind on purpose (orphans, stale labels), and here every number Prometheus
reports must be exactly the demo fleet's. Starting one costs about ten seconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from maxtune_dev.demo.cluster import Cluster
from maxtune_dev.demo.stack import Stack, StackOptions
from maxtune_dev.localplane import LocalPlane

ROOT = Path(__file__).resolve().parents[2]
FLEET = ROOT / "examples" / "fleets" / "demo.yaml"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("stack")
    with (
        LocalPlane() as plane,
        Stack(
            Cluster.of_plane(plane), StackOptions(fleet_file=FLEET), folder, progress=print
        ) as running,
    ):
        yield running
