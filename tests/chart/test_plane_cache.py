"""compileCache installed by the real helm on the real API server.

What only a cluster can tell: the objects are valid (NetworkPolicy, Secrets in other namespaces,
the Deployment), the pods pass "restricted" Pod Security admission, and the passwords helm
generated survive an upgrade (`lookup`), while a namespace added to a group gets its own.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client import ApiClient

from maxtune_dev.localplane import wait_for
from tests.chart.conftest import Installer
from tests.chart.localrun import kapi

pytestmark = pytest.mark.plane

RESTRICTED = {f"pod-security.kubernetes.io/{m}": "restricted" for m in ("enforce", "warn")}


@pytest.fixture
def member_namespaces(k8s: ApiClient) -> Iterator[Callable[[], str]]:
    core = client.CoreV1Api(k8s)
    made: list[str] = []

    def make() -> str:
        name = f"t-cache-{uuid.uuid4().hex[:8]}"
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        made.append(name)
        return name

    yield make
    for name in made:
        core.delete_namespace(name)


def _secret(k8s: ApiClient, namespace: str, name: str) -> dict[str, str]:
    data = kapi("CoreV1Api", k8s).read_namespaced_secret(name, namespace).data or {}
    return {k: base64.b64decode(v).decode() for k, v in data.items()}


def test_cache_installs_under_restricted_and_keeps_passwords_across_upgrades(
    install: Installer,
    k8s: ApiClient,
    namespace: str,
    member_namespaces: Callable[[], str],
    tmp_path: Path,
) -> None:
    core = kapi("CoreV1Api", k8s)
    core.patch_namespace(namespace, {"metadata": {"labels": RESTRICTED}})
    first, other = member_namespaces(), member_namespaces()
    groups = [
        {"name": "one", "namespaces": [first]},
        {"name": "two", "namespaces": [other]},
    ]
    release = install(
        {"compileCache": {"enabled": True, "groups": groups}, "agent": {"enabled": False}}
    )
    server_name = f"{release.fullname}-cache-one"

    def cache_pods() -> set[str] | None:
        pods = core.list_namespaced_pod(
            namespace, label_selector="app.kubernetes.io/component=compile-cache"
        ).items
        found = {p.metadata.labels["maxtune.io/cache-group"] for p in pods}
        return found if found == {"one", "two"} else None

    wait_for(cache_pods, timeout_s=60, what="one cache pod per group admitted")
    refused = [
        e.message
        for e in core.list_namespaced_event(namespace).items
        if e.reason == "FailedCreate" and "violates PodSecurity" in (e.message or "")
    ]
    assert not refused, refused
    net = kapi("NetworkingV1Api", k8s)
    assert net.read_namespaced_network_policy(server_name, namespace).spec.policy_types == [
        "Ingress",
        "Egress",
    ]

    server = _secret(k8s, namespace, server_name)
    member = _secret(k8s, first, "maxtune-compile-cache")
    assert member["username"] == f"ns-{first}"
    assert member["password"] == server[f"ns-{first}"]
    assert member["url"].startswith(f"redis://ns-{first}:{member['password']}@{server_name}.")

    # An upgrade that adds a namespace: existing passwords stay, the new one gets its own.
    added = member_namespaces()
    groups[0]["namespaces"] = [first, added]
    release.upgrade({"compileCache": {"groups": groups}}, tmp_path)
    after = _secret(k8s, namespace, server_name)
    assert after[f"ns-{first}"] == server[f"ns-{first}"]
    assert after["svc-probe"] == server["svc-probe"]
    assert len(after[f"ns-{added}"]) == 40 and after[f"ns-{added}"] not in server.values()
    assert _secret(k8s, first, "maxtune-compile-cache") == member
    assert _secret(k8s, added, "maxtune-compile-cache")["password"] == after[f"ns-{added}"]

    release.uninstall()
    assert not core.list_namespaced_secret(
        first, label_selector="app.kubernetes.io/component=compile-cache"
    ).items
