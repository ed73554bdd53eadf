"""Talking to the test plane the way the operator does: its JSON client, its paths.

Profiles are created the way an agent writes them (spec, then status through
its subresource); waits poll with a deadline and say what they waited for.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from maxtune.kube import Kube, KubeError
from maxtune_dev.localplane.waits import wait_for

ROOT = Path(__file__).resolve().parents[3]
CRDS = ROOT / "crds"
PROFILES = "/apis/maxtune.io/v1alpha1/gpunodeprofiles"
POLICIES = "/apis/maxtune.io/v1alpha1/autotunepolicies"

T = TypeVar("T")


def put_profile(kube: Kube, body: dict[str, Any]) -> dict[str, Any]:
    """Create or update a GPUNodeProfile (spec, then status through its subresource)."""
    name = body["metadata"]["name"]
    try:
        current = kube.request(
            "POST",
            PROFILES,
            body={
                "apiVersion": body["apiVersion"],
                "kind": body["kind"],
                "metadata": {"name": name},
                "spec": body["spec"],
            },
        )
    except KubeError as exc:
        if exc.status != 409:
            raise
        current = kube.request("GET", f"{PROFILES}/{name}")
    if "status" in body:
        current = kube.request(
            "PATCH",
            f"{PROFILES}/{name}/status",
            body={"status": body["status"]},
            content_type="application/merge-patch+json",
        )
    return dict(current)


def delete_quietly(kube: Kube, path: str) -> None:
    """DELETE `path`; already gone is fine."""
    try:
        kube.request("DELETE", path)
    except KubeError as exc:
        if exc.status != 404:
            raise


def node_labels(kube: Kube, name: str) -> dict[str, str]:
    return dict(kube.request("GET", f"/api/v1/nodes/{name}")["metadata"].get("labels") or {})


def maxtune_labels(kube: Kube, name: str) -> dict[str, str]:
    return {k: v for k, v in node_labels(kube, name).items() if k.startswith("maxtune.io/")}


def eventually(probe: Callable[[], T], what: str, timeout_s: float = 30) -> T:
    return wait_for(probe, timeout_s=timeout_s, interval_s=0.2, what=what)


def settle(seconds: float) -> None:
    """Let a change that should NOT happen have its chance to (negative tests)."""
    time.sleep(seconds)
