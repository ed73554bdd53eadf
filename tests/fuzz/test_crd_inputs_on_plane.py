"""What the API server accepts, maxtune reads; what it refuses, it refuses saying what to fix.

Profiles and policies reach the agent and the operator only through the API server, so the
CRD schemas are the first line against bad input. Spoiled statuses and policy specs are sent as
dry-run writes (validated in full, nothing stored) to the real API server:
- accepted: the stored form must validate against the contract models the operator and the agent
  read it with (the agent reads its own profile back at start-up). One known exception: the API
  server (1.36.3) stores a JSON array for a `format: date-time` string; for those the readers
  must cope (found here; the agent crash-looped on it until ba3501b);
- refused: HTTP 422 whose message names the field (`status.…` / `spec.…`).
tests/contract/test_crds_on_plane.py holds the hand-picked cases; this adds the volume.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from maxtune.agent.publish import readable_profile
from maxtune.contract.models import AutotunePolicy, GPUNodeProfile, ProfileStatus
from maxtune.contract.modes import Mode
from maxtune.contract.policy import recipe, torch_rule
from maxtune.kube import Kube, KubeError
from maxtune.operator.records import read_profile
from maxtune_dev import testkit
from maxtune_dev.testkit import cluster
from tests.fuzz.budget import count, examples
from tests.fuzz.strategies import finite_json_values, parent_of, paths, texts

pytestmark = [pytest.mark.plane]

DRY_RUN = {"dryRun": "All"}
DATE_TIMES = {"heartbeatTime", "measuredTime", "lastTransitionTime"}
VALID_STATUS = testkit.profile("x", testkit.H100, 2, mig=None)["status"]
MIG_STATUS = testkit.profile("x", testkit.A100, 1, mig=["3g.20gb", "3g.20gb"])["status"]
VALID_SPEC: dict[str, Any] = {
    "torch": {"version": "2.11"},
    "steering": "require",
    "minMeasuredGain": 0.05,
    "namespaces": ["team-a"],
    "staleAfterSeconds": 600,
    "recipes": {"max-autotune": {"env": {"TORCHINDUCTOR_MAX_AUTOTUNE": "1"}}},
}
edge_values = st.one_of(
    finite_json_values,  # the API server parses strict JSON: NaN would be refused as unparseable
    st.sampled_from(
        [
            -1,
            0,
            10**12,
            1.5,
            -0.0,
            "",
            "x" * 5000,
            "2026-11-25t10:00:00z",
            "2026-11-25T10:00:00.123456789Z",
            "2026-11-25T10:00:00",
            "max-autotune",
            "turbo",
            "nvidia.com/mig-1g.5gb",
            "nvidia.com/gpu",
            "9.0",
            "nine",
            "True",
            [],
            {},
        ]
    ),
    texts,
)


@st.composite
def spoiled(draw: st.DrawFn, base: Any) -> Any:
    """`base` with one to three values replaced, or removed, or a key added."""
    value = copy.deepcopy(draw(st.sampled_from(base)) if isinstance(base, list) else base)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths(value, items=3)))
        parent = parent_of(value, path)
        action = draw(st.integers(0, 9))
        if action == 0 and isinstance(parent, dict):
            del parent[path[-1]]
        elif action == 1 and isinstance(parent, dict):
            parent[draw(texts)] = draw(edge_values)
        else:
            parent[path[-1]] = draw(edge_values)
    return value


def budget(default: int) -> settings:
    return settings(
        max_examples=examples(default),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


@pytest.fixture(scope="module")
def stored_profile(kube: Kube, agent_crds: None) -> Iterator[dict[str, Any]]:
    """One real profile whose status the tests try to replace (dry run: it never changes)."""
    name = f"fuzz-{uuid.uuid4().hex[:8]}"
    cluster.put_profile(kube, testkit.profile(name, testkit.H100, 2))
    yield dict(kube.request("GET", f"{cluster.PROFILES}/{name}"))
    cluster.delete_quietly(kube, f"{cluster.PROFILES}/{name}")


def _refusal_names_a_field(exc: KubeError, root: str) -> None:
    assert exc.status == 422, (exc.status, str(exc)[:400])
    assert f"{root}." in str(exc) or f"{root}:" in str(exc), str(exc)[:400]


@budget(80)
@given(status=spoiled([VALID_STATUS, MIG_STATUS]))
@example(status={**VALID_STATUS, "heartbeatTime": []})  # what the campaign found: always tried
@example(status={**VALID_STATUS, "measuredTime": [1]})
def test_profile_statuses_accepted_are_readable_refused_are_explained(
    kube: Kube, stored_profile: dict[str, Any], status: Any
) -> None:
    body = {**stored_profile, "status": status}
    name = stored_profile["metadata"]["name"]
    try:
        stored = kube.request("PUT", f"{cluster.PROFILES}/{name}/status", query=DRY_RUN, body=body)
    except KubeError as exc:
        _refusal_names_a_field(exc, "status")
        event("refused")
        count("plane: profile statuses refused")
        return
    record = read_profile(stored)  # what the operator reads: never raises
    assert record is not None
    try:
        ProfileStatus.model_validate(stored["status"])
    except ValidationError as exc:
        # Kubernetes 1.36.3 stores a JSON array for a `format: date-time` string. Nothing
        # else may differ between the schema and the model; this may, and the readers cope:
        # the operator drops the node's labels, the agent publishes over it.
        for error in exc.errors():
            assert error["loc"][-1] in DATE_TIMES and not isinstance(error["input"], str), error
        assert record.problem is not None
        assert readable_profile(stored, "fuzzed profile") is None
        event("accepted, date-time not a string")
        count("plane: profile statuses accepted with a non-string date-time")
        return
    event("accepted")
    count("plane: profile statuses accepted")
    assert record.problem is None, record
    GPUNodeProfile.model_validate(stored)  # what the agent reads back at start-up


@budget(80)
@given(spec=spoiled(VALID_SPEC))
def test_policies_accepted_are_readable_refused_are_explained(
    kube: Kube, agent_crds: None, spec: Any
) -> None:
    body = {
        "apiVersion": "maxtune.io/v1alpha1",
        "kind": "AutotunePolicy",
        "metadata": {"name": f"fuzz-{uuid.uuid4().hex[:8]}"},
        "spec": spec,
    }
    try:
        stored = kube.request("POST", cluster.POLICIES, query=DRY_RUN, body=body)
    except KubeError as exc:
        _refusal_names_a_field(exc, "spec")
        event("refused")
        count("plane: policies refused")
        return
    event("accepted")
    count("plane: policies accepted")
    policy = AutotunePolicy.model_validate(stored)
    torch_rule(policy.spec)
    for mode in Mode:
        recipe(policy.spec, mode)
