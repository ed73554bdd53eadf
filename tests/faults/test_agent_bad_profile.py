"""An agent whose stored profile it cannot read must overwrite it, not crash-loop.

The agent reads its own profile back at start-up (to keep its measurements). The API server
stores some statuses the contract model rejects: on Kubernetes 1.36.3 a JSON array passes as a
`format: date-time` string (found by tests/fuzz/test_crd_inputs_on_plane.py), and a profile
from another agent version or a hand edit may not fit either. Such a profile belongs to the
agent's node: the agent must publish over it.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from maxtune.contract.models import GPUNodeProfile
from maxtune.kube import Kube
from maxtune_dev import testkit
from maxtune_dev.testkit import cluster
from tests.faults.procs import AgentProcess, write_fleet

pytestmark = [pytest.mark.plane]


def test_an_unreadable_stored_profile_is_overwritten(
    kube: Kube, kubeconfig: Path, agent_crds: None, tmp_path: Path
) -> None:
    node = f"bad-{uuid.uuid4().hex[:8]}"
    cluster.put_profile(kube, testkit.profile(node, testkit.H100, 2))
    stored = kube.request("GET", f"{cluster.PROFILES}/{node}")
    stored["status"]["heartbeatTime"] = []  # accepted by the API server, not by the model
    kube.request("PUT", f"{cluster.PROFILES}/{node}/status", body=stored)
    assert kube.request("GET", f"{cluster.PROFILES}/{node}")["status"]["heartbeatTime"] == []

    agent = AgentProcess(
        node, write_fleet(tmp_path / "fleet.yaml", {node: "big"}), kubeconfig, tmp_path
    )
    agent.start()
    try:
        agent.wait_ready(timeout_s=30)
        profile = GPUNodeProfile.model_validate(kube.request("GET", f"{cluster.PROFILES}/{node}"))
        assert profile.status is not None and profile.status.summary.gpus == 2
        assert agent.alive()
    finally:
        agent.stop()
        cluster.delete_quietly(kube, f"{cluster.PROFILES}/{node}")
