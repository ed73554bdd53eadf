"""The admission handler in process, for volume: any body, any pod, every answer valid.

The same checks run over TLS against the running operator in test_webhook_wire_fuzz.py; here
there is no network in the way, so a campaign can try tens of thousands of inputs per minute.
`outcome.result == "error"` would still be an allowed answer (fail open), but it means an
exception inside maxtune: the tests treat it as a finding.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from maxtune.operator import admission
from maxtune_dev import testkit
from tests.fuzz.budget import count, examples
from tests.fuzz.checks import check_review, expected_uid, parse_answer
from tests.fuzz.strategies import raw_bodies, review, reviews, spoiled

MIXED = testkit.mixed_fleet()
FLEET = MIXED.state


def budget(default: int, share: float = 1.0) -> settings:
    """No deadline (huge inputs take their time), the campaign's example count if set."""
    return settings(
        max_examples=examples(default, share=share),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def ask(body: bytes) -> bytes:
    outcome = admission.review(
        body, fleet=FLEET, own_namespace="maxtune-system", version="fuzz", now=MIXED.clock
    )
    assert outcome.result != "error", outcome.reason
    return outcome.body


@budget(300)
@given(case=reviews())
def test_any_pod_in_a_review_gets_a_valid_answer_and_a_sound_patch(
    case: tuple[dict[str, Any], Any],
) -> None:
    body, uid = case
    obj = body["request"]["object"]
    outcome = check_review(
        json.dumps(body).encode(), uid, obj, ask, namespace=body["request"]["namespace"]
    )
    count("handler: pods in reviews")
    event(outcome)


# Found by CI on 2026-12-02: a NaN the patch leaves alone is not "changed", though
# NaN != NaN (the check compared containers, and ephemeralContainers, by ==).
INJECT = {"labels": {"maxtune.io/inject": "true"}}
GPU_LIMIT = {"limits": {"nvidia.com/gpu": "1"}}
NAN_CONTAINER = review(
    {
        "metadata": INJECT,
        "spec": {
            "containers": [float("nan")],
            "initContainers": [{"name": "train", "resources": GPU_LIMIT}],
        },
    },
    uid="e3e70682-c209-4cac-629f-6fbed82c07cd",
)
NAN_EPHEMERAL = review(
    {
        "metadata": INJECT,
        "spec": {
            "containers": [{"name": "train", "resources": GPU_LIMIT}],
            "ephemeralContainers": float("nan"),
        },
    }
)


@budget(300)
@given(body=spoiled())
@example(body=NAN_CONTAINER)
@example(body=NAN_EPHEMERAL)
def test_a_review_spoiled_anywhere_gets_a_valid_answer(body: dict[str, Any]) -> None:
    request = body.get("request")
    obj = request.get("object") if isinstance(request, dict) else None
    namespace = request.get("namespace") if isinstance(request, dict) else None
    uid = request.get("uid") if isinstance(request, dict) else None
    check_review(json.dumps(body).encode(), uid, obj, ask, namespace=namespace)
    count("handler: spoiled reviews")


@budget(300)
@given(body=raw_bodies)
def test_any_bytes_get_an_allowing_answer(body: bytes) -> None:
    answer = parse_answer(ask(body))
    want = expected_uid(body)
    if want is not None:
        assert answer["response"]["uid"] == want
    count("handler: raw bodies")


@budget(100, share=0.1)  # up to 20,000 variables each: a tenth of a campaign's count
@given(n=st.integers(min_value=0, max_value=20_000), preset=st.booleans())
def test_huge_env_lists_keep_every_user_variable(n: int, preset: bool) -> None:
    env = [{"name": f"V{i}", "value": str(i)} for i in range(n)]
    if preset:
        env.insert(n // 2, {"name": "TORCHINDUCTOR_MAX_AUTOTUNE", "value": "0"})
    obj = testkit.pod(testkit.gpu_container(env=env))
    outcome = check_review(json.dumps(review(obj)).encode(), "uid-1", obj, ask)
    assert outcome == "patched"
    count("handler: huge env lists")
