"""AdmissionReview parsing: every body gets a valid, allowing answer; patches apply cleanly."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jsonpatch
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from maxtune.operator import admission
from maxtune.operator.fleet import FleetState
from maxtune_dev.testkit import gpu_container, mixed_fleet, pod, review

FLEET = mixed_fleet()


def answer(
    body: bytes, fleet: FleetState | None = None, **kw: Any
) -> tuple[dict[str, Any], admission.Outcome]:
    if fleet is None:
        fleet = FLEET.state
        kw.setdefault("now", FLEET.clock)
    outcome = admission.review(
        body, fleet=fleet, own_namespace="maxtune-system", version="test", **kw
    )
    parsed = json.loads(outcome.body)
    assert parsed["kind"] == "AdmissionReview"
    assert parsed["apiVersion"] in ("admission.k8s.io/v1", "admission.k8s.io/v1beta1")
    assert parsed["response"]["allowed"] is True
    assert isinstance(parsed["response"]["uid"], str)
    return parsed, outcome


def patch_of(parsed: dict[str, Any]) -> list[dict[str, Any]]:
    raw = parsed["response"].get("patch")
    if raw is None:
        return []
    assert parsed["response"]["patchType"] == "JSONPatch"
    ops: list[dict[str, Any]] = json.loads(base64.b64decode(raw))
    return ops


def test_opted_in_pod_is_patched_and_uid_echoed() -> None:
    parsed, outcome = answer(review(pod()))
    assert outcome.result == "patched"
    assert parsed["response"]["uid"] == "705ab4f5-6393-11e8-b7cc-42010a800002"
    result = jsonpatch.apply_patch(pod(), patch_of(parsed))
    assert "maxtune.io/decision" in result["metadata"]["annotations"]


@pytest.mark.parametrize(
    ("body", "result"),
    [
        (b"", "invalid"),
        (b"not json", "invalid"),
        (b"[]", "invalid"),
        (b"null", "invalid"),
        (b'{"request": 5}', "invalid"),
        (b'{"request": {}}', "invalid"),
        (b'{"request": {"uid": "u1"}}', "skipped"),
        (b'{"request": {"uid": "u1", "kind": {"kind": "Pod"}, "operation": "CREATE"}}', "invalid"),
        (
            b'{"request": {"uid": "u1", "kind": {"kind": "Pod"}, "operation": "CREATE", '
            b'"object": {}}}',
            "invalid",
        ),
        (b"\xff\xfe\x00garbage", "invalid"),
        (b"[" * 100_000 + b"]" * 100_000, "invalid"),
        (
            b'{"request": {"uid": "u2", "kind": {"kind": "Deployment", "group": "apps"}, '
            b'"operation": "CREATE"}}',
            "skipped",
        ),
    ],
)
def test_malformed_reviews_get_valid_answers(body: bytes, result: str) -> None:
    _, outcome = answer(body)
    assert outcome.result == result


def test_uid_is_salvaged_from_a_broken_body() -> None:
    body = b'{"apiVersion":"admission.k8s.io/v1","request":{"uid":"abc-123","object":{'
    parsed, outcome = answer(body)
    assert outcome.result == "invalid" and parsed["response"]["uid"] == "abc-123"


def test_update_and_subresources_are_skipped() -> None:
    _, outcome = answer(review(pod(), operation="UPDATE"))
    assert outcome.result == "skipped"
    raw = json.loads(review(pod()))
    raw["request"]["subResource"] = "ephemeralcontainers"
    _, outcome = answer(json.dumps(raw).encode())
    assert outcome.result == "skipped"


def test_v1beta1_is_answered_in_kind() -> None:
    raw = json.loads(review(pod()))
    raw["apiVersion"] = "admission.k8s.io/v1beta1"
    parsed, _ = answer(json.dumps(raw).encode())
    assert parsed["apiVersion"] == "admission.k8s.io/v1beta1"


def test_not_ready_fails_open() -> None:
    parsed, outcome = answer(review(pod()), ready=False)
    assert outcome.result == "not_ready" and "patch" not in parsed["response"]


def test_internal_error_fails_open(monkeypatch: pytest.MonkeyPatch) -> None:
    fleet = mixed_fleet().state

    def boom(namespace: str) -> Any:
        raise RuntimeError("policy store broken")

    monkeypatch.setattr(fleet, "policy_for", boom)
    parsed, outcome = answer(review(pod()), fleet=fleet)
    assert outcome.result == "error" and "patch" not in parsed["response"]


def test_huge_env_list_and_existing_inductor_variables() -> None:
    env = [{"name": f"V{i}", "value": "x" * 20} for i in range(5000)]
    env.append({"name": "TORCHINDUCTOR_MAX_AUTOTUNE", "value": "0"})
    obj = pod(gpu_container(env=env))
    parsed, outcome = answer(review(obj))
    assert outcome.result == "patched"
    result = jsonpatch.apply_patch(obj, patch_of(parsed))
    names = [e["name"] for e in result["spec"]["containers"][0]["env"]]
    # The container set TORCHINDUCTOR_MAX_AUTOTUNE itself: its choice, nothing added.
    assert names.count("TORCHINDUCTOR_MAX_AUTOTUNE") == 1 and len(names) == 5001
    assert "TORCHINDUCTOR" in outcome.decision.containers[0].untouched  # type: ignore[union-attr,operator]


@pytest.mark.parametrize(
    "quantity", ["1", 1, "1k", "500m", "1e0", "two", "", -1, None, [], {"a": 1}, 1.5, "0x10"]
)
def test_strange_quantities_never_crash(quantity: Any) -> None:
    obj = pod({"name": "c", "resources": {"limits": {"nvidia.com/gpu": quantity}}})
    parsed, outcome = answer(review(obj))
    assert outcome.result in ("patched", "unchanged")
    jsonpatch.apply_patch(obj, patch_of(parsed))


# ---------------------------------------------------------------- properties

names = st.sampled_from(["main", "a/b", "x~y", "", "init"])
resource_names = st.sampled_from(
    [
        "nvidia.com/gpu",
        "nvidia.com/mig-1g.10gb",
        "nvidia.com/mig-3g.20gb",
        "nvidia.com/mig-9g.9gb",
        "amd.com/gpu",
        "cpu",
        "nvidia.com/mig-",
    ]
)
quantities = st.one_of(
    st.sampled_from(["1", "2", "8", "0", "16", "1k", "abc", "", "-1"]),
    st.integers(-3, 20),
    st.none(),
    st.floats(allow_nan=True),
)
json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5))
env_entry = st.one_of(
    st.fixed_dictionaries(
        {
            "name": st.sampled_from(
                ["TORCHINDUCTOR_MAX_AUTOTUNE", "TORCHINDUCTOR_CUDAGRAPHS", "A", "B"]
            ),
            "value": st.one_of(st.text(max_size=3), st.none()),
        }
    ),
    json_leaf,
)
container = st.fixed_dictionaries(
    {"name": names},
    optional={
        "resources": st.one_of(
            st.fixed_dictionaries(
                {},
                optional={
                    "limits": st.dictionaries(resource_names, quantities, max_size=3),
                    "requests": st.dictionaries(resource_names, quantities, max_size=3),
                },
            ),
            json_leaf,
        ),
        "env": st.one_of(st.lists(env_entry, max_size=4), json_leaf),
        "envFrom": st.one_of(
            st.lists(st.just({"configMapRef": {"name": "c"}}), max_size=1), json_leaf
        ),
        "restartPolicy": st.sampled_from(["Always", "Never"]),
    },
)
label_keys = st.sampled_from(
    [
        "maxtune.io/gpu-class",
        "maxtune.io/recommended-mode",
        "kubernetes.io/hostname",
        "zone",
        "maxtune.io/sm-count",
    ]
)
label_values = st.sampled_from(
    [
        "nvidia-h100-80gb-hbm3-132sm",
        "nvidia-a100-sxm4-40gb-108sm",
        "max-autotune",
        "default",
        "h100-a",
        "t4-a",
        "132",
        "50",
        "x",
    ]
)
requirement = st.fixed_dictionaries(
    {
        "key": label_keys,
        "operator": st.sampled_from(["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt", "Bogus"]),
    },
    optional={"values": st.lists(label_values, max_size=3)},
)
field_req = st.fixed_dictionaries(
    {
        "key": st.sampled_from(["metadata.name", "spec.x"]),
        "operator": st.sampled_from(["In", "NotIn"]),
        "values": st.lists(st.sampled_from(["h100-a", "h100-b", "t4-a"]), max_size=2),
    }
)
term = st.fixed_dictionaries(
    {},
    optional={
        "matchExpressions": st.one_of(st.lists(requirement, max_size=3), json_leaf),
        "matchFields": st.lists(field_req, max_size=1),
    },
)
affinity = st.one_of(
    json_leaf,
    st.fixed_dictionaries(
        {},
        optional={
            "nodeAffinity": st.one_of(
                json_leaf,
                st.fixed_dictionaries(
                    {},
                    optional={
                        "requiredDuringSchedulingIgnoredDuringExecution": st.one_of(
                            json_leaf,
                            st.fixed_dictionaries(
                                {},
                                optional={
                                    "nodeSelectorTerms": st.one_of(
                                        st.lists(term, max_size=3), json_leaf
                                    )
                                },
                            ),
                        )
                    },
                ),
            )
        },
    ),
)
toleration = st.fixed_dictionaries(
    {},
    optional={
        "key": st.sampled_from(["dedicated", ""]),
        "operator": st.sampled_from(["Exists", "Equal", "", "Odd"]),
        "value": st.sampled_from(["infer", ""]),
        "effect": st.sampled_from(["NoSchedule", "NoExecute", ""]),
    },
)
spec_optional = {
    "initContainers": st.one_of(st.lists(container, max_size=2), json_leaf),
    "ephemeralContainers": st.lists(container, max_size=1),
    "nodeSelector": st.one_of(st.dictionaries(label_keys, label_values, max_size=2), json_leaf),
    "affinity": affinity,
    "tolerations": st.one_of(st.lists(toleration, max_size=2), json_leaf),
    "nodeName": st.sampled_from(["h100-a", "gone", ""]),
}
spec = st.fixed_dictionaries(
    {"containers": st.one_of(st.lists(container, max_size=3), json_leaf)}, optional=spec_optional
)
opted_in = st.fixed_dictionaries(
    {"labels": st.just({"maxtune.io/inject": "true"})},
    optional={
        "annotations": st.one_of(
            st.dictionaries(
                st.sampled_from(["a/b", "maxtune.io/decision", "x~y"]), st.text(max_size=4)
            ),
            json_leaf,
        )
    },
)
odd_meta = st.one_of(
    st.fixed_dictionaries(
        {
            "labels": st.one_of(
                st.dictionaries(
                    st.just("maxtune.io/inject"), st.sampled_from(["true", "false", "x"])
                ),
                json_leaf,
            )
        }
    ),
    json_leaf,
)
gpu_spec = st.fixed_dictionaries(
    {
        "containers": st.lists(container, min_size=1, max_size=3).map(
            lambda cs: [*cs, {"name": "gpu", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]
        )
    },
    optional=spec_optional,
)
pods = st.fixed_dictionaries(
    {
        "metadata": st.integers(0, 4).flatmap(lambda i: odd_meta if i == 0 else opted_in),
        "spec": st.integers(0, 5).flatmap(lambda i: (json_leaf, spec)[i] if i < 2 else gpu_spec),
    }
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(obj=pods)
def test_any_pod_gets_a_valid_answer_and_an_applicable_idempotent_patch(
    obj: dict[str, Any],
) -> None:
    parsed, outcome = answer(review(obj))
    assert outcome.result != "error", outcome.reason
    event(f"result={outcome.result} {outcome.reason[:40]}")
    ops = patch_of(parsed)
    result = jsonpatch.apply_patch(obj, ops)  # raises when an operation does not fit the object
    again, _ = answer(review(result))
    assert patch_of(again) == [], "a second pass over the webhook's own output must be empty"


@settings(max_examples=200, deadline=None)
@given(
    body=st.one_of(
        st.binary(max_size=200),
        st.recursive(
            json_leaf,
            lambda c: (
                st.lists(c, max_size=3)
                | st.dictionaries(
                    st.sampled_from(
                        ["request", "uid", "kind", "object", "operation", "namespace", "apiVersion"]
                    ),
                    c,
                    max_size=4,
                )
            ),
            max_leaves=20,
        ).map(lambda v: json.dumps(v).encode()),
    )
)
def test_any_body_gets_an_allowing_answer(body: bytes) -> None:
    _, outcome = answer(body)
    assert outcome.result != "error", outcome.reason


def test_now_parameter_controls_staleness() -> None:
    _, outcome = answer(review(pod()), now=time.time() + 10 * 3600)
    assert outcome.decision is not None and outcome.decision.mode is None
