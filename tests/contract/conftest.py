"""Fixtures for contract tests on the real plane."""

from __future__ import annotations

import pytest
from kubernetes.client import ApiClient

from maxtune.kube import Kube
from maxtune_dev.testkit.cluster import apply_crds


@pytest.fixture(scope="session")
def crds(k8s: ApiClient) -> None:
    """The generated CRDs, applied and Established."""
    kube = Kube(k8s.configuration)
    try:
        apply_crds(kube)
    finally:
        kube.close()
