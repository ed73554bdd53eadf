"""The webhook's rule on many shapes of pods, against a mixed fleet (pure, no cluster)."""

from __future__ import annotations

import copy
import json
import time
from typing import Any

import jsonpatch
import pytest

from maxtune.contract.models import AutotunePolicy
from maxtune.contract.names import ANNOTATION_DECISION, LABEL_CLASS, LABEL_MODE
from maxtune.operator.decision import Decision, Skip, decide
from maxtune.operator.patch import build, escape
from maxtune_dev import testkit
from maxtune_dev.testkit import H100, RTX3070, T4, Fleet, gpu_container, mixed_fleet, pod

H100_CLASS = "nvidia-h100-80gb-hbm3-132sm"
A100_CLASS = "nvidia-a100-sxm4-40gb-108sm"
MAX = {
    "TORCHINDUCTOR_MAX_AUTOTUNE": "1",
    "TORCHINDUCTOR_COORDINATE_DESCENT_TUNING": "1",
    "TORCHINDUCTOR_CUDAGRAPHS": "1",
}


def run(fleet: Fleet, obj: dict[str, Any], namespace: str = "team") -> Decision | Skip:
    return decide(
        obj,
        namespace=namespace,
        fleet=fleet.state,
        own_namespace="maxtune-system",
        now=time.time(),
        version="test",
    )


def mutate(
    fleet: Fleet, obj: dict[str, Any], namespace: str = "team"
) -> tuple[dict[str, Any], Decision]:
    """Decide, patch, apply with the jsonpatch library, and check the second pass is a no-op."""
    decision = run(fleet, obj, namespace)
    assert isinstance(decision, Decision), decision
    ops = build(obj, decision)
    result: dict[str, Any] = jsonpatch.apply_patch(obj, ops)
    again = run(fleet, result, namespace)
    # A second pass over the webhook's own output changes nothing: a decided pod is left alone.
    assert isinstance(again, Skip) and again.result == "unchanged", again
    return result, decision


REQUIRE = {"maxtune.io/steering": "require"}


def steered_pod(*containers: dict[str, Any], **kw: Any) -> dict[str, Any]:
    """A pod that asks to be narrowed to where a stronger mode holds (its own annotation)."""
    return pod(*containers, annotations={**kw.pop("annotations", {}), **REQUIRE}, **kw)


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def annotation(obj: dict[str, Any]) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(obj["metadata"]["annotations"][ANNOTATION_DECISION])
    return parsed


def required_terms(obj: dict[str, Any]) -> list[dict[str, Any]]:
    terms: list[dict[str, Any]] = obj["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]["nodeSelectorTerms"]
    return terms


# ---------------------------------------------------------------- opt-in


@pytest.mark.parametrize(
    ("labels", "ns_enabled", "namespace", "expected"),
    [
        ({}, False, "team", "not opted in"),
        ({"maxtune.io/inject": "false"}, True, "team", "pod opted out"),
        (
            {"maxtune.io/inject": "true"},
            False,
            "kube-system",
            "namespace kube-system is never mutated",
        ),
        (
            {"maxtune.io/inject": "true"},
            False,
            "maxtune-system",
            "namespace maxtune-system is never mutated",
        ),
        ({"maxtune.io/inject": "yes"}, False, "team", "not opted in"),
    ],
)
def test_opt_in_rules_leave_pods_alone(
    labels: dict[str, str], ns_enabled: bool, namespace: str, expected: str
) -> None:
    fleet = mixed_fleet()
    fleet.state.set_namespace(namespace, opted_in=ns_enabled)
    obj = pod()
    obj["metadata"]["labels"] = labels
    result = run(fleet, obj, namespace)
    assert isinstance(result, Skip)
    assert result.reason == expected


def test_namespace_label_opts_pods_in() -> None:
    fleet = mixed_fleet()
    fleet.state.set_namespace("ml", opted_in=True)
    obj = pod()
    del obj["metadata"]["labels"]["maxtune.io/inject"]
    assert isinstance(run(fleet, obj, "ml"), Decision)


def test_pod_without_gpu_gets_no_patch() -> None:
    result = run(mixed_fleet(), pod({"name": "cpu", "resources": {"limits": {"cpu": "2"}}}))
    assert isinstance(result, Skip) and result.result == "unchanged"


# ---------------------------------------------------------------- steering require


def test_the_builtin_policy_never_narrows_placement() -> None:
    """Without a policy or a pod asking, the settings hold on every candidate node (default
    here: RTX and T4 nodes can take the pod too) and placement is left as it was."""
    result, decision = mutate(mixed_fleet(), pod())
    assert not decision.steered and "affinity" not in result["spec"]
    assert decision.mode is not None and decision.mode.value == "default"
    note = annotation(result)
    assert note["steering"] == "none" and note["policy"] == "builtin" and "speeds" not in note


def test_a_pod_that_asks_is_steered_by_measured_speed_with_the_numbers() -> None:
    """Max-autotune holds on both H100s (+9%, +13%: 0.991 ms) and one A100 (+6%: 2.45 ms, more
    than twice the H100s'): only the H100 class is fast, and it holds 16 of the 38 candidate
    GPUs. Under the default 50% capacity guard the pod is not narrowed; a namespace policy
    that accepts 40% confines it to the H100s."""
    result, decision = mutate(mixed_fleet(), steered_pod())
    assert not decision.steered and "affinity" not in result["spec"]
    assert "hold 42% of the candidate GPUs, < 50%" in decision.reason
    note = annotation(result)
    assert note["steering"] == "require (pod)" and note["mode"] == "default"
    speeds = note["speeds"]
    assert speeds["classes"][H100_CLASS] == ["max-autotune", 0.991, round(16 / 38, 3)]
    assert speeds["classes"][A100_CLASS] == ["default", 2.6, round(16 / 38, 3)]
    assert speeds["fastestMs"] == 0.991 and speeds["minCapacityShare"] == 0.5

    fleet = share_policy(mixed_fleet(), 0.4)
    result, decision = mutate(fleet, steered_pod())
    assert decision.steered and decision.classes == (H100_CLASS,)
    assert env_of(result["spec"]["containers"][0]) == MAX
    assert required_terms(result) == [
        {"matchExpressions": [{"key": LABEL_CLASS, "operator": "In", "values": [H100_CLASS]}]}
    ]
    note = annotation(result)
    assert note["mode"] == "max-autotune" and note["steered"] is True
    assert note["containers"] == {"main": "max-autotune"}
    assert "42% of the candidate GPUs" in decision.reason


def share_policy(fleet: Fleet, share: float, steering: str | None = None) -> Fleet:
    """The cluster policy with another capacity guard (and steering, when given)."""
    spec: dict[str, Any] = {"minCapacityShare": share}
    if steering is not None:
        spec["steering"] = steering
    fleet.state.upsert_policy(
        AutotunePolicy.model_validate(
            {"metadata": {"name": "default", "resourceVersion": "8"}, "spec": spec}
        )
    )
    return fleet


def test_require_uses_mode_label_when_a_class_is_mixed() -> None:
    """Two A100 nodes: one measured faster with max-autotune, one slower."""
    fleet = mixed_fleet()
    obj = steered_pod(spec={"nodeSelector": {LABEL_CLASS: A100_CLASS}})
    result, decision = mutate(fleet, obj)
    assert decision.steered
    assert required_terms(result)[0]["matchExpressions"] == [
        {"key": LABEL_CLASS, "operator": "In", "values": [A100_CLASS]},
        {"key": LABEL_MODE, "operator": "In", "values": ["max-autotune"]},
    ]
    assert env_of(result["spec"]["containers"][0]) == MAX


def test_require_ands_into_every_existing_term_and_skips_empty_ones() -> None:
    fleet = mixed_fleet()
    terms = [
        {
            "matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": ["h100-a", "t4-a"]}
            ]
        },
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["h100-b"]}]},
        {},
    ]
    obj = steered_pod(
        spec={
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}
                }
            }
        }
    )
    result, _decision = mutate(fleet, obj)
    expr = {"key": LABEL_CLASS, "operator": "In", "values": [H100_CLASS]}
    got = required_terms(result)
    assert got[0]["matchExpressions"][-1] == expr
    assert got[1]["matchExpressions"] == [expr] and got[1]["matchFields"] == terms[1]["matchFields"]
    assert got[2] == {}


def test_default_best_means_no_steering_and_no_env() -> None:
    fleet = Fleet()
    fleet.add("rtx", RTX3070, 2)
    fleet.add("t4", T4, 4)
    result, decision = mutate(fleet, steered_pod())
    assert not decision.steered and decision.mode is not None and decision.mode.value == "default"
    assert "env" not in result["spec"]["containers"][0]
    assert "affinity" not in result["spec"]
    assert "default is the strongest mode" in decision.reason


def test_mig_pod_gets_default_on_mig_nodes() -> None:
    fleet = mixed_fleet()
    result, decision = mutate(fleet, pod(gpu_container(resource="nvidia.com/mig-1g.10gb")))
    assert decision.mode is not None and decision.mode.value == "default"
    assert not decision.steered and "env" not in result["spec"]["containers"][0]
    assert decision.classes == ("nvidia-h100-80gb-hbm3-mig-1g.10gb-16sm",)


def test_unknown_resource_has_no_candidates() -> None:
    result, decision = mutate(mixed_fleet(), pod(gpu_container(resource="nvidia.com/mig-9g.999gb")))
    assert decision.mode is None
    assert decision.reason == "no node the pod may land on offers nvidia.com/mig-9g.999gb"
    assert annotation(result)["mode"] is None
    assert "env" not in result["spec"]["containers"][0]


def test_too_many_gpus_for_any_node_has_no_candidates() -> None:
    _, decision = mutate(mixed_fleet(), pod(gpu_container(count="16")))
    assert decision.mode is None


# ---------------------------------------------------------------- steering none


def test_steering_none_keeps_placement_and_takes_weakest() -> None:
    fleet = mixed_fleet()
    fleet.state.upsert_policy(
        AutotunePolicy.model_validate(
            {"metadata": {"name": "default", "resourceVersion": "5"}, "spec": {"steering": "none"}}
        )
    )
    result, decision = mutate(fleet, pod())
    assert not decision.steered and "affinity" not in result["spec"]
    assert decision.mode is not None and decision.mode.value == "default"
    # Restricted by the pod's own selector to H100s, the weakest is max-autotune.
    result, decision = mutate(fleet, pod(spec={"nodeSelector": {LABEL_CLASS: H100_CLASS}}))
    assert env_of(result["spec"]["containers"][0]) == MAX and not decision.steered


def test_a_pods_own_none_wins_over_a_policy_that_narrows() -> None:
    fleet = mixed_fleet()
    narrowing = {"steering": "require", "minCapacityShare": 0.1}
    fleet.state.upsert_policy(
        AutotunePolicy.model_validate(
            {"metadata": {"name": "default", "resourceVersion": "6"}, "spec": narrowing}
        )
    )
    _, decision = mutate(fleet, pod())
    assert decision.steered and decision.steering == "require" and decision.asked_by == "policy"
    result, decision = mutate(fleet, pod(annotations={"maxtune.io/steering": "none"}))
    assert not decision.steered and "affinity" not in result["spec"]
    assert annotation(result)["steering"] == "none (pod)"


def strict_policy(min_gain: float, rv: str = "7") -> AutotunePolicy:
    return AutotunePolicy.model_validate(
        {
            "metadata": {"name": "strict", "resourceVersion": rv},
            "spec": {
                "namespaces": ["team"],
                "steering": "require",
                "minCapacityShare": 0.4,
                "minMeasuredGain": min_gain,
                "recipes": {"max-autotune": {"env": {"TORCHINDUCTOR_MAX_AUTOTUNE": "1"}}},
            },
        }
    )


def test_namespace_policy_recipes_and_min_gain_apply() -> None:
    fleet = mixed_fleet()
    # A 7% bar: both H100s still pay, the good A100 (5-6%) no longer does.
    fleet.state.upsert_policy(strict_policy(0.07))
    result, decision = mutate(fleet, pod(spec={"nodeSelector": {"kubernetes.io/arch": "amd64"}}))
    assert decision.mode is None  # no node carries that label in this fleet
    result, decision = mutate(fleet, pod())
    assert decision.policy == "strict" and decision.steered and decision.classes == (H100_CLASS,)
    assert env_of(result["spec"]["containers"][0]) == {"TORCHINDUCTOR_MAX_AUTOTUNE": "1"}
    # Another namespace keeps the cluster's (built-in) policy: no narrowing, default here.
    other, decision = mutate(fleet, pod(), namespace="elsewhere")
    assert decision.policy == "builtin" and not decision.steered
    assert "env" not in other["spec"]["containers"][0]


def test_policy_labels_cannot_express_falls_back_to_weakest() -> None:
    """A 10% bar splits the H100 class (8% vs 12%) where node labels (cluster policy) cannot."""
    fleet = mixed_fleet()
    fleet.state.upsert_policy(strict_policy(0.10))
    result, decision = mutate(fleet, pod())
    assert not decision.steered and decision.mode is not None and decision.mode.value == "default"
    assert "not narrowed" in decision.reason and "affinity" not in result["spec"]


# ---------------------------------------------------------------- user settings


def test_a_container_that_sets_torchinductor_itself_is_left_to_its_choice() -> None:
    """MAX_AUTOTUNE=0: no coordinate descent or CUDA graphs added, and no narrowing for it."""
    fleet = mixed_fleet()
    c = gpu_container(
        env=[{"name": "TORCHINDUCTOR_MAX_AUTOTUNE", "value": "0"}, {"name": "X", "value": "y"}]
    )
    result, decision = mutate(fleet, steered_pod(c))
    assert env_of(result["spec"]["containers"][0]) == {"TORCHINDUCTOR_MAX_AUTOTUNE": "0", "X": "y"}
    assert not decision.steered and "affinity" not in result["spec"]
    note = annotation(result)
    assert "TORCHINDUCTOR" in note["untouched"]["main"] and note["containers"]["main"] is None
    assert "every GPU container sets TORCHINDUCTOR_* itself" in decision.reason


def test_user_variables_outside_inductor_are_never_overridden() -> None:
    fleet = mixed_fleet()
    c = gpu_container(env=[{"name": "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE", "value": "0"}])
    policy = AutotunePolicy.model_validate(
        {
            "metadata": {"name": "tf32", "resourceVersion": "3"},
            "spec": {
                "namespaces": ["team"],
                "recipes": {"default": {"env": {"TORCH_ALLOW_TF32_CUBLAS_OVERRIDE": "1"}}},
            },
        }
    )
    fleet.state.upsert_policy(policy)
    result, _decision = mutate(fleet, pod(c))
    assert env_of(result["spec"]["containers"][0]) == {"TORCH_ALLOW_TF32_CUBLAS_OVERRIDE": "0"}
    assert annotation(result)["userSet"] == ["TORCH_ALLOW_TF32_CUBLAS_OVERRIDE"]


def test_value_from_counts_as_set() -> None:
    c = gpu_container(
        env=[
            {
                "name": "TORCHINDUCTOR_CUDAGRAPHS",
                "valueFrom": {"configMapKeyRef": {"name": "a", "key": "b"}},
            }
        ]
    )
    result, decision = mutate(mixed_fleet(), steered_pod(c))
    assert result["spec"]["containers"][0]["env"] == c["env"]
    assert not decision.steered


def test_env_from_leaves_the_container_untouched() -> None:
    c = gpu_container(envFrom=[{"configMapRef": {"name": "settings"}}])
    result, _ = mutate(mixed_fleet(), pod(c))
    assert "env" not in result["spec"]["containers"][0]
    assert "envFrom" in annotation(result)["untouched"]["main"]


def test_only_gpu_containers_and_gpu_init_containers_get_env() -> None:
    spec = {
        "initContainers": [
            {"name": "warm", "resources": {"limits": {"nvidia.com/gpu": "1"}}},
            {"name": "fetch", "image": "busybox"},
        ]
    }
    obj = steered_pod(
        gpu_container("train", env=[]), {"name": "sidecar", "image": "log"}, spec=spec
    )
    result, decision = mutate(share_policy(mixed_fleet(), 0.4), obj)
    assert env_of(result["spec"]["containers"][0]) == MAX
    assert "env" not in result["spec"]["containers"][1]
    assert env_of(result["spec"]["initContainers"][0]) == MAX
    assert "env" not in result["spec"]["initContainers"][1]
    assert {c.name for c in decision.containers} == {"train", "warm"}


def test_existing_annotations_and_affinity_are_kept() -> None:
    obj = pod(
        annotations={"a/b~c": "1"},
        spec={
            "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}}
        },
    )
    result, _ = mutate(mixed_fleet(), obj)
    assert result["metadata"]["annotations"]["a/b~c"] == "1"
    assert "podAntiAffinity" in result["spec"]["affinity"]
    assert escape("maxtune.io/decision") == "maxtune.io~1decision"
    assert escape("a~/b") == "a~0~1b"


def test_a_decided_pod_is_left_alone() -> None:
    """A decision present (reinvocation, a manifest copied from a decided pod): no second one,
    which would read the webhook's own variables and affinity as the user's."""
    obj = pod(annotations={ANNOTATION_DECISION: '{"mode":"bogus"}'})
    result = run(mixed_fleet(), obj)
    assert isinstance(result, Skip) and result.result == "unchanged"


# ---------------------------------------------------------------- selectors and taints


def test_untolerated_taint_removes_a_node() -> None:
    fleet = Fleet()
    fleet.add(
        "h100-tainted",
        H100,
        taints=[{"key": "dedicated", "value": "infer", "effect": "NoSchedule"}],
    )
    fleet.add("t4", T4, 4)
    _, decision = mutate(fleet, steered_pod())
    assert decision.mode is not None and decision.mode.value == "default"
    tolerating = steered_pod(spec={"tolerations": [{"key": "dedicated", "operator": "Exists"}]})
    _, decision = mutate(fleet, tolerating)
    assert decision.steered and decision.classes == (H100_CLASS,)


def test_prefer_no_schedule_taint_is_ignored() -> None:
    fleet = Fleet()
    fleet.add("h100", H100, taints=[{"key": "x", "value": "", "effect": "PreferNoSchedule"}])
    _, decision = mutate(fleet, steered_pod())
    assert decision.steered


def test_node_name_fixes_the_node_without_affinity() -> None:
    result, decision = mutate(mixed_fleet(), pod(spec={"nodeName": "h100-a"}))
    assert not decision.steered and "affinity" not in result["spec"]
    assert env_of(result["spec"]["containers"][0]) == MAX


# ---------------------------------------------------------------- unknown and stale nodes


def test_stale_profile_counts_as_unknown() -> None:
    fleet = Fleet()
    fleet.add("h100-old", H100, heartbeat=testkit.stale())
    _, decision = mutate(fleet, pod())
    assert decision.mode is None and "current profile" in decision.reason


def test_node_without_profile_steers_away_under_require_and_forces_default_under_none() -> None:
    """The unknown node's 8 GPUs count against the capacity guard: exactly 50% remain."""
    fleet = Fleet()
    fleet.add("h100", H100)
    fleet.add("mystery", H100, with_profile=False)
    _, decision = mutate(fleet, steered_pod())
    assert decision.steered and decision.mode is not None and decision.mode.value == "max-autotune"
    fleet.state.upsert_policy(
        AutotunePolicy.model_validate(
            {"metadata": {"name": "default", "resourceVersion": "2"}, "spec": {"steering": "none"}}
        )
    )
    _, decision = mutate(fleet, pod())
    assert decision.mode is not None and decision.mode.value == "default"
    assert "no current profile" in decision.reason


def test_labels_not_yet_written_mean_no_steering() -> None:
    fleet = Fleet()
    fleet.add("h100", H100, synced=False)
    fleet.add("t4", T4, synced=False)
    result, decision = mutate(fleet, steered_pod())
    assert not decision.steered and "affinity" not in result["spec"]
    assert "labels" in decision.reason


def test_patch_is_valid_for_odd_but_accepted_shapes() -> None:
    # Steering from the policy: the pod carries annotations: null.
    fleet = share_policy(mixed_fleet(), 0.4, steering="require")
    obj = pod(gpu_container(env=None))
    obj["metadata"]["annotations"] = None
    obj["spec"]["affinity"] = {
        "nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}
    }
    result, _ = mutate(fleet, copy.deepcopy(obj))
    assert env_of(result["spec"]["containers"][0]) == MAX
    assert (
        "preferredDuringSchedulingIgnoredDuringExecution"
        in result["spec"]["affinity"]["nodeAffinity"]
    )


# ---------------------------------------------------------------- speed and capacity guards


def fast_and_slow(fast: int = 20, slow: int = 2) -> Fleet:
    """Fast H100s where max-autotune does not pay (default, 1.0 ms), and slower A100s where it
    gains 10-11% (4.0 ms in default, 3.6 ms with max-autotune): the issue's fleet."""
    fleet = Fleet()
    for i in range(fast):
        fleet.add(f"h100-{i}", H100, 8, gain=0.0, default_step=0.0010)
    for i in range(slow):
        fleet.add(f"a100-{i}", testkit.A100, 8, gain=0.10, default_step=0.0040)
    return fleet


def test_the_builtin_policy_never_narrows_to_slower_gpus_that_gain() -> None:
    fleet = fast_and_slow()
    result, decision = mutate(fleet, pod())
    assert not decision.steered and "affinity" not in result["spec"]
    assert decision.mode is not None and decision.mode.value == "default"
    assert "env" not in result["spec"]["containers"][0]


def test_asked_to_steer_a_pod_is_never_confined_to_the_slower_class() -> None:
    fleet = fast_and_slow()
    result, decision = mutate(fleet, steered_pod())
    assert not decision.steered and "affinity" not in result["spec"]
    assert "slower than the fastest candidate class" in decision.reason
    classes = annotation(result)["speeds"]["classes"]
    assert classes[A100_CLASS] == ["max-autotune", 3.604, round(16 / 176, 3)]
    assert classes[H100_CLASS] == ["default", 1.0, round(160 / 176, 3)]
    # Even with no capacity guard and a wide tolerance short of 3.6x, never the slow class.
    fleet.state.upsert_policy(
        AutotunePolicy.model_validate(
            {
                "metadata": {"name": "default", "resourceVersion": "4"},
                "spec": {"steering": "require", "minCapacityShare": 0, "speedTolerance": 2.5},
            }
        )
    )
    _, decision = mutate(fleet, pod())
    assert not decision.steered


def test_a_class_that_is_fast_and_gains_is_chosen_only_with_enough_capacity() -> None:
    """Two H100 nodes gain 10% with max-autotune (0.91 ms); eight of the same speed in default
    (1.0 ms) do not: 16 of 80 GPUs (20%) is too small a share by default, enough at 15%."""
    fleet = Fleet()
    for i in range(2):
        fleet.add(f"fast-{i}", H100, 8, gain=0.10, default_step=0.0010, labels={"pool": "a"})
    for i in range(8):
        fleet.add(f"plain-{i}", testkit.A100, 8, gain=0.0, default_step=0.00095)
    _, decision = mutate(fleet, steered_pod())
    assert not decision.steered and "hold 20% of the candidate GPUs, < 50%" in decision.reason
    fleet.state.upsert_policy(
        AutotunePolicy.model_validate(
            {
                "metadata": {"name": "default", "resourceVersion": "4"},
                "spec": {"minCapacityShare": 0.15},
            }
        )
    )
    result, decision = mutate(fleet, steered_pod())
    assert decision.steered and decision.classes == (H100_CLASS,)
    assert env_of(result["spec"]["containers"][0]) == MAX
    assert "20% of the candidate GPUs" in decision.reason
