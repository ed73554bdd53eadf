"""The generated CRDs on the real API server: bad objects are refused, and say why."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from maxtune.contract import names

pytestmark = pytest.mark.plane

NOW = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _profile(name: str, node: str | None = None) -> dict[str, Any]:
    return {
        "apiVersion": names.API_VERSION,
        "kind": names.PROFILE_KIND,
        "metadata": {"name": name},
        "spec": {"nodeName": node or name},
    }


def _status(**summary: Any) -> dict[str, Any]:
    return {
        "source": "simulation",
        "level": "inventory",
        "heartbeatTime": NOW,
        "fingerprint": "f",
        "software": {"agentVersion": "test"},
        "gpus": [
            {
                "index": 0,
                "uuid": "GPU-0",
                "product": "NVIDIA H100 80GB HBM3",
                "memoryMib": 81559,
                "computeCapability": "9.0",
                "smCount": summary.pop("gpuSmCount", 132),
                "resource": "nvidia.com/gpu",
                "gpuClass": "nvidia-h100-80gb-hbm3-132sm",
                "verdict": {"capable": True, "rule": "SMs: 132 >= 68", "torchVersion": "2.11"},
            }
        ],
        "summary": {"gpus": 1, "capable": True, "recommendedMode": "default", **summary},
    }


@pytest.fixture
def custom(k8s: ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(k8s)


@pytest.fixture
def profile_name(custom: client.CustomObjectsApi, crds: None) -> Iterator[str]:
    name = f"node-{datetime.now(UTC).strftime('%H%M%S%f')}"
    yield name
    try:
        custom.delete_cluster_custom_object(names.GROUP, names.VERSION, names.PROFILE_PLURAL, name)
    except ApiException as exc:
        if exc.status != 404:
            raise


def _rejected(call: Callable[[], object]) -> str:
    with pytest.raises(ApiException) as info:
        call()
    assert info.value.status == 422, info.value.body
    return str(info.value.body)


def test_valid_profile_and_status_are_accepted(
    custom: client.CustomObjectsApi, profile_name: str
) -> None:
    custom.create_cluster_custom_object(
        names.GROUP, names.VERSION, names.PROFILE_PLURAL, _profile(profile_name)
    )
    obj = custom.get_cluster_custom_object(
        names.GROUP, names.VERSION, names.PROFILE_PLURAL, profile_name
    )
    obj["status"] = _status(smCount=132)
    custom.replace_cluster_custom_object_status(
        names.GROUP, names.VERSION, names.PROFILE_PLURAL, profile_name, obj
    )
    stored = custom.get_cluster_custom_object(
        names.GROUP, names.VERSION, names.PROFILE_PLURAL, profile_name
    )
    assert stored["status"]["summary"]["smCount"] == 132


@pytest.mark.parametrize(
    ("summary", "fragment"),
    [
        ({"gpuSmCount": -4}, "status.gpus[0].smCount"),
        ({"smCount": 0}, "status.summary.smCount"),
        ({"recommendedMode": "turbo"}, 'Unsupported value: \\"turbo\\"'),
    ],
)
def test_bad_status_is_rejected_with_the_field_named(
    custom: client.CustomObjectsApi, profile_name: str, summary: dict[str, Any], fragment: str
) -> None:
    custom.create_cluster_custom_object(
        names.GROUP, names.VERSION, names.PROFILE_PLURAL, _profile(profile_name)
    )
    obj = custom.get_cluster_custom_object(
        names.GROUP, names.VERSION, names.PROFILE_PLURAL, profile_name
    )
    obj["status"] = _status(**summary)
    body = _rejected(
        lambda: custom.replace_cluster_custom_object_status(
            names.GROUP, names.VERSION, names.PROFILE_PLURAL, profile_name, obj
        )
    )
    assert fragment in body


def test_profile_must_be_named_after_its_node(
    custom: client.CustomObjectsApi, profile_name: str
) -> None:
    body = _rejected(
        lambda: custom.create_cluster_custom_object(
            names.GROUP, names.VERSION, names.PROFILE_PLURAL, _profile(profile_name, "other")
        )
    )
    assert "metadata.name must equal spec.nodeName" in body


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ({"torch": {"version": "2.x"}}, "spec.torch.version"),
        ({"steering": "sometimes"}, "spec.steering"),
        ({"minMeasuredGain": -0.1}, "spec.minMeasuredGain"),
        ({"staleAfterSeconds": 5}, "spec.staleAfterSeconds"),
        ({"recipes": {"turbo": {"env": {}}}}, "recipes keys must be torch.compile modes"),
        (
            {"recipes": {"max-autotune": {"env": {"lower_case": "1"}}}},
            "recipe env names must be environment variable names",
        ),
    ],
)
def test_invalid_policies_say_what_to_fix(
    custom: client.CustomObjectsApi, crds: None, spec: dict[str, Any], fragment: str
) -> None:
    policy = {
        "apiVersion": names.API_VERSION,
        "kind": names.POLICY_KIND,
        "metadata": {"name": "bad-policy"},
        "spec": spec,
    }
    body = _rejected(
        lambda: custom.create_cluster_custom_object(
            names.GROUP, names.VERSION, names.POLICY_PLURAL, policy
        )
    )
    assert fragment in body


def test_policy_defaults_are_applied_by_the_server(
    custom: client.CustomObjectsApi, crds: None
) -> None:
    policy = {
        "apiVersion": names.API_VERSION,
        "kind": names.POLICY_KIND,
        "metadata": {"name": "defaults-check"},
        "spec": {},
    }
    created = custom.create_cluster_custom_object(
        names.GROUP, names.VERSION, names.POLICY_PLURAL, policy
    )
    try:
        assert created["spec"]["steering"] == "none"  # never narrow unless asked (0008)
        assert created["spec"]["speedTolerance"] == 0.05
        assert created["spec"]["minCapacityShare"] == 0.5
        assert created["spec"]["minMeasuredGain"] == 0.03
        assert created["spec"]["staleAfterSeconds"] == 300
    finally:
        custom.delete_cluster_custom_object(
            names.GROUP, names.VERSION, names.POLICY_PLURAL, "defaults-check"
        )


def test_printer_columns_show_gpus_sms_capable_mode(
    k8s: ApiClient, custom: client.CustomObjectsApi, profile_name: str
) -> None:
    custom.create_cluster_custom_object(
        names.GROUP, names.VERSION, names.PROFILE_PLURAL, _profile(profile_name)
    )
    obj = custom.get_cluster_custom_object(
        names.GROUP, names.VERSION, names.PROFILE_PLURAL, profile_name
    )
    obj["status"] = _status(smCount=132)
    custom.replace_cluster_custom_object_status(
        names.GROUP, names.VERSION, names.PROFILE_PLURAL, profile_name, obj
    )
    # What `kubectl get gpunodeprofiles` asks for: a server-side Table.
    method, url, headers, body, _ = k8s.param_serialize(
        "GET",
        f"/apis/{names.GROUP}/{names.VERSION}/{names.PROFILE_PLURAL}/{profile_name}",
        header_params={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"},
        auth_settings=["BearerToken"],
    )
    raw = k8s.call_api(method, url, header_params=headers, body=body)
    raw.read()
    response = json.loads(raw.data)
    columns = [c["name"] for c in response["columnDefinitions"]]
    row = dict(zip(columns, response["rows"][0]["cells"], strict=True))
    assert row["GPUs"] == 1
    assert row["SMs"] == 132
    assert row["Capable"] is True
    assert row["Mode"] == "default"
