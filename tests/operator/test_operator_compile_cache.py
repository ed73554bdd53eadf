"""The webhook hands opted-in GPU containers their namespace's compile cache (issue 12).

The directory comes from the chart (templates/cache/directory.yaml): per member namespace its
sharing group's Redis and the Secret in the namespace that holds the password. The password
never lands in the pod's manifest: a secretKeyRef, and a URL that refers to it as
$(MAXTUNE_CACHE_PASSWORD) for the kubelet to expand.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jsonpatch

from maxtune.contract.models import AutotunePolicy
from maxtune.operator.cachedir import PASSWORD_VAR, DirectoryFile, parse
from maxtune.operator.decision import Decision, decide
from maxtune.operator.patch import build
from maxtune_dev.testkit import H100, T4, Fleet, gpu_container, mixed_fleet, pod

H100_CLASS = "nvidia-h100-80gb-hbm3-132sm"
URL = (
    "redis://ns-team:$(MAXTUNE_CACHE_PASSWORD)@mt-cache-research.maxtune-system.svc:6379/0"
    "?socket_connect_timeout=2&socket_timeout=5"
)
DIRECTORY = {
    "version": 1,
    "namespaces": {
        "team": {
            "group": "research",
            "host": "mt-cache-research.maxtune-system.svc",
            "port": 6379,
            "username": "ns-team",
            "readOnly": False,
            "secretName": "maxtune-compile-cache",
            "passwordKey": "password",
            "urlKey": "url",
            "urlTemplate": URL,
        }
    },
}


def with_cache(fleet: Fleet) -> Fleet:
    fleet.state.set_cache_directory(parse(json.dumps(DIRECTORY)))
    return fleet


def decided(fleet: Fleet, obj: dict[str, Any], namespace: str = "team") -> Decision:
    got = decide(
        obj,
        namespace=namespace,
        fleet=fleet.state,
        own_namespace="maxtune-system",
        now=time.time(),
        version="t",
    )
    assert isinstance(got, Decision), got
    return got


def env(obj: dict[str, Any], decision: Decision) -> list[dict[str, Any]]:
    patched = jsonpatch.apply_patch(obj, build(obj, decision))
    found: list[dict[str, Any]] = patched["spec"]["containers"][0].get("env", [])
    return found


def note(obj: dict[str, Any], decision: Decision) -> dict[str, Any]:
    patched = jsonpatch.apply_patch(obj, build(obj, decision))
    parsed: dict[str, Any] = json.loads(patched["metadata"]["annotations"]["maxtune.io/decision"])
    return parsed


def test_a_member_namespace_gets_its_groups_cache_without_the_password_in_the_manifest() -> None:
    fleet = with_cache(mixed_fleet())
    obj = pod(gpu_container(env=[{"name": "A", "value": "b"}]))
    decision = decided(fleet, obj)
    got = env(obj, decision)
    names = [e["name"] for e in got]
    assert names == [
        "A",
        PASSWORD_VAR,
        "TORCHINDUCTOR_REDIS_URL",
        "TORCHINDUCTOR_FX_GRAPH_REMOTE_CACHE",
    ]
    password, url, switch = got[1], got[2], got[3]
    assert password == {
        "name": PASSWORD_VAR,
        "valueFrom": {"secretKeyRef": {"name": "maxtune-compile-cache", "key": "password"}},
    }
    # Defined before the URL that refers to it, so the kubelet expands $(...).
    assert url["value"] == URL and "$(MAXTUNE_CACHE_PASSWORD)" in url["value"]
    assert switch == {"name": "TORCHINDUCTOR_FX_GRAPH_REMOTE_CACHE", "value": "1"}
    assert "value" not in password  # no secret value anywhere in the patch
    assert note(obj, decision)["compileCache"] == {"group": "research", "readOnly": False}


def test_other_namespaces_and_user_choices_get_no_cache() -> None:
    fleet = with_cache(mixed_fleet())
    elsewhere = pod()
    decision = decided(fleet, elsewhere, namespace="other")
    assert all(
        not e["name"].startswith(("TORCHINDUCTOR_", "MAXTUNE_")) for e in env(elsewhere, decision)
    )
    assert "compileCache" not in note(elsewhere, decision)
    # A container that set TORCHINDUCTOR_* itself made its choice: nothing added, the cache too.
    own = pod(gpu_container(env=[{"name": "TORCHINDUCTOR_FX_GRAPH_CACHE", "value": "0"}]))
    decision = decided(fleet, own)
    assert env(own, decision) == [{"name": "TORCHINDUCTOR_FX_GRAPH_CACHE", "value": "0"}]
    assert note(own, decision)["compileCache"] == {
        "off": "no GPU container takes settings from maxtune"
    }


def test_a_policy_turns_the_cache_off_or_limits_it_to_classes() -> None:
    fleet = with_cache(mixed_fleet())

    def policy(rule: dict[str, Any], rv: str) -> None:
        fleet.state.upsert_policy(
            AutotunePolicy.model_validate(
                {
                    "metadata": {"name": "default", "resourceVersion": rv},
                    "spec": {"compileCache": rule},
                }
            )
        )

    policy({"enabled": False}, "2")
    obj = pod()
    decision = decided(fleet, obj)
    assert PASSWORD_VAR not in [e["name"] for e in env(obj, decision)]
    assert note(obj, decision)["compileCache"] == {
        "off": "policy default turns the compile cache off"
    }
    policy({"classes": [H100_CLASS]}, "3")
    decision = decided(fleet, obj)  # RTX, T4 and A100 nodes are candidates too
    assert "not for every candidate class" in note(obj, decision)["compileCache"]["off"]
    pinned = pod(spec={"nodeSelector": {"maxtune.io/gpu-class": H100_CLASS}})
    decision = decided(fleet, pinned)
    assert PASSWORD_VAR in [e["name"] for e in env(pinned, decision)]


def test_the_directory_file_is_read_again_when_it_changes_and_never_trusted_blindly(
    tmp_path: Path,
) -> None:
    path = tmp_path / "directory.json"
    watched = DirectoryFile(path)
    assert watched.changed() == {}  # missing: nobody has a cache
    assert watched.changed() is None  # unchanged
    path.write_text(json.dumps(DIRECTORY))
    got = watched.changed()
    assert got is not None and set(got) == {"team"} and got["team"].group == "research"
    broken = json.loads(json.dumps(DIRECTORY))
    broken["namespaces"]["team"]["urlTemplate"] = "redis://ns-team:hunter2@host:6379"
    broken["namespaces"]["bad"] = {"group": "x"}
    path.write_text(json.dumps(broken))
    assert watched.changed() == {}  # a literal password, or an entry without its fields: out
    path.write_text("{not json")
    assert watched.changed() == {}


def test_a_t4_only_fleet_still_gets_the_cache_in_default_mode() -> None:
    """The cache serves default-mode compiles too (decision 0030: default 2.8 -> 1.2 s)."""
    fleet = Fleet()
    fleet.add("t4", T4, 4)
    fleet.add("h100", H100, gain=0.0)
    with_cache(fleet)
    obj = pod()
    decision = decided(fleet, obj)
    assert decision.mode is not None and decision.mode.value == "default"
    assert [e["name"] for e in env(obj, decision)] == [
        PASSWORD_VAR,
        "TORCHINDUCTOR_REDIS_URL",
        "TORCHINDUCTOR_FX_GRAPH_REMOTE_CACHE",
    ]
