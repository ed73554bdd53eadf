"""The fake-node manifest convention (no cluster needed)."""

from __future__ import annotations

import pytest
import yaml

from maxtune_dev.localplane import KWOK_ANNOTATION, kwok_node
from maxtune_dev.localplane.kwok import stages_file


def test_node_is_marked_for_kwok_and_carries_gpu_capacity() -> None:
    node = kwok_node("gpu-a", capacity={"nvidia.com/gpu": 8, "nvidia.com/mig-1g.10gb": 7})
    assert node["metadata"]["annotations"][KWOK_ANNOTATION] == "fake"
    capacity = node["status"]["capacity"]
    assert capacity["nvidia.com/gpu"] == "8"
    assert capacity["nvidia.com/mig-1g.10gb"] == "7"
    assert capacity["pods"] == "110"  # room for pods beside the GPUs
    assert node["status"]["allocatable"] == capacity
    assert node["metadata"]["labels"]["kubernetes.io/hostname"] == "gpu-a"
    assert "taints" not in node["spec"]


def test_allocatable_labels_and_taints_are_the_callers() -> None:
    node = kwok_node(
        "gpu-b",
        capacity={"nvidia.com/gpu": 8},
        allocatable={"nvidia.com/gpu": 6},
        labels={"maxtune.io/gpu-class": "h100-132"},
        taints=[{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}],
    )
    assert node["status"]["allocatable"]["nvidia.com/gpu"] == "6"
    assert node["status"]["capacity"]["nvidia.com/gpu"] == "8"
    assert node["metadata"]["labels"]["maxtune.io/gpu-class"] == "h100-132"
    assert node["spec"]["taints"][0]["effect"] == "NoSchedule"
    with pytest.raises(ValueError, match="key"):
        kwok_node("bad", taints=[{"effect": "NoSchedule"}])


def test_packaged_stages_cover_nodes_and_pods() -> None:
    stages = list(yaml.safe_load_all(stages_file().read_text()))
    names = {stage["metadata"]["name"] for stage in stages}
    assert {"node-initialize", "node-heartbeat-with-lease", "pod-ready", "pod-delete"} <= names
    assert all(stage["kind"] == "Stage" for stage in stages)
