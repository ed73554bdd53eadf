"""Talking to the test plane the way the operator does: its JSON client, its paths.

Profiles are created the way an agent writes them (spec, then status through
its subresource); waits poll with a deadline and say what they waited for.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

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


def apply_crds(kube: Kube, folder: Path = CRDS, timeout_s: float = 60) -> None:
    """The CRDs of `folder` created or replaced, each Established before this returns: what
    every suite on a fresh plane needs first (a replace keeps a plane shared by modules)."""
    path_of = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    for path in sorted(folder.glob("*.yaml")):
        body = yaml.safe_load(path.read_text())
        name = body["metadata"]["name"]
        try:
            kube.request("POST", path_of, body=body)
        except KubeError as exc:
            if exc.status != 409:
                raise
            current = kube.request("GET", f"{path_of}/{name}")
            body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            kube.request("PUT", f"{path_of}/{name}", body=body)

        def established(name: str = name) -> bool:
            crd = kube.request("GET", f"{path_of}/{name}")
            conditions = (crd.get("status") or {}).get("conditions") or []
            return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

        wait_for(established, timeout_s=timeout_s, what=f"CRD {name} Established")


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


def count_becomes(read: Callable[[], float], want: float, what: str, settle_s: float = 1.0) -> None:
    """A counter reaches `want` and stays there for `settle_s`.

    The operator counts a write after the API server answered it, so a test that saw the
    write's effect (a label) can read the counter a moment too early; and a counter that
    passed `want` right after must still fail the test (one write per change)."""
    eventually(lambda: read() >= want, f"{what} >= {want:g}")
    settle(settle_s)
    got = read()
    assert got == want, f"{what}: {got:g}, expected exactly {want:g}"
