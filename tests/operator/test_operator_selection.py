"""Node selection: the indexed fleet search equals the plain per-node rules; those match k8s."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maxtune.operator.fleet import FleetState
from maxtune.operator.quantity import parse_count
from maxtune.operator.records import Taint, read_node
from maxtune.operator.selection import (
    Requirement,
    Toleration,
    candidates,
    node_matches,
    read_placement,
    requirement_matches,
    tolerates,
)
from maxtune_dev.testkit import node


@pytest.mark.parametrize(
    ("op", "values", "labels", "expected"),
    [
        ("In", ("a",), {"k": "a"}, True),
        ("In", ("a",), {}, False),
        ("NotIn", ("a",), {}, True),
        ("NotIn", ("a",), {"k": "a"}, False),
        ("Exists", (), {"k": ""}, True),
        ("DoesNotExist", (), {"k": "x"}, False),
        ("Gt", ("67",), {"k": "68"}, True),
        ("Gt", ("68",), {"k": "68"}, False),
        ("Lt", ("68",), {"k": "46"}, True),
        ("Lt", ("x",), {"k": "46"}, False),
        ("Gt", ("1", "2"), {"k": "5"}, False),
        ("Weird", ("a",), {"k": "a"}, False),
    ],
)
def test_requirement_semantics(
    op: str, values: tuple[str, ...], labels: dict[str, str], expected: bool
) -> None:
    assert requirement_matches(Requirement("k", op, values), labels) is expected


@pytest.mark.parametrize(
    ("tol", "taint", "expected"),
    [
        (Toleration("k", "Exists", "", ""), Taint("k", "v", "NoSchedule"), True),
        (Toleration("", "Exists", "", ""), Taint("any", "v", "NoExecute"), True),
        (Toleration("k", "Equal", "v", "NoSchedule"), Taint("k", "v", "NoSchedule"), True),
        (Toleration("k", "", "v", ""), Taint("k", "v", "NoSchedule"), True),
        (Toleration("k", "Equal", "w", ""), Taint("k", "v", "NoSchedule"), False),
        (Toleration("k", "Exists", "", "NoExecute"), Taint("k", "v", "NoSchedule"), False),
        (Toleration("k", "Lt", "5", ""), Taint("k", "3", "NoSchedule"), False),
    ],
)
def test_toleration_semantics(tol: Toleration, taint: Taint, expected: bool) -> None:
    assert tolerates(tol, taint) is expected


def test_cordoned_node_is_excluded_unless_tolerated() -> None:
    rec = read_node(node("n", {"nvidia.com/gpu": "8"}, unschedulable=True))
    assert rec is not None
    assert not node_matches(rec, read_placement({}))
    tol = {"tolerations": [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists"}]}
    assert node_matches(rec, read_placement(tol))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("8", 8),
        (8, 8),
        ("1k", 1000),
        ("2Ki", 2048),
        ("500m", 1),
        ("1e2", 100),
        ("0", 0),
        ("-1", 0),
        ("x", None),
        ("", None),
        (True, None),
        (2.5, 3),
        (float("inf"), None),
        ("1E3", 1000),
        ("1e999999999", 1 << 31),  # bounded: never a million-digit integer
        ("NaN", None),
        ("Infinity", None),
        (" 1", None),
        (-3, 0),
        (8, 8),
        ("007", 7),
        ("99999999999999999999", 1 << 31),
    ],
)
def test_quantities(value: Any, expected: int | None) -> None:
    assert parse_count(value) == expected


# ---------------------------------------------------------------- indexed == plain

KEYS = ["zone", "maxtune.io/gpu-class", "maxtune.io/sm-count", "pool"]
VALUES = ["a", "b", "46", "132", "h100"]

labels_st = st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=4)
taint_st = st.fixed_dictionaries(
    {
        "key": st.sampled_from(["dedicated", "gpu", "node.kubernetes.io/unschedulable"]),
        "value": st.sampled_from(["", "x"]),
        "effect": st.sampled_from(["NoSchedule", "NoExecute", "PreferNoSchedule"]),
    }
)
node_st = st.tuples(
    labels_st,
    st.lists(taint_st, max_size=2),
    st.dictionaries(
        st.sampled_from(["nvidia.com/gpu", "nvidia.com/mig-1g.10gb"]),
        st.sampled_from(["0", "1", "4", "8"]),
        max_size=2,
    ),
    st.booleans(),
)
req_st = st.fixed_dictionaries(
    {
        "key": st.sampled_from(KEYS),
        "operator": st.sampled_from(["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]),
        "values": st.lists(st.sampled_from(VALUES), max_size=2),
    }
)
field_st = st.fixed_dictionaries(
    {
        "key": st.sampled_from(["metadata.name", "metadata.uid"]),
        "operator": st.sampled_from(["In", "NotIn"]),
        "values": st.lists(st.sampled_from(["n0", "n1", "n2"]), max_size=2),
    }
)
term_st = st.fixed_dictionaries(
    {},
    optional={
        "matchExpressions": st.lists(req_st, max_size=3),
        "matchFields": st.lists(field_st, max_size=1),
    },
)
spec_st = st.fixed_dictionaries(
    {},
    optional={
        "nodeSelector": st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=2),
        "affinity": st.just(None)
        | st.builds(
            lambda terms: {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}
                }
            },
            st.lists(term_st, max_size=3),
        ),
        "tolerations": st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "key": st.sampled_from(["dedicated", "gpu", ""]),
                    "operator": st.sampled_from(["Exists", "Equal"]),
                    "value": st.sampled_from(["", "x"]),
                    "effect": st.sampled_from(["NoSchedule", "NoExecute", ""]),
                },
            ),
            max_size=2,
        ),
        "nodeName": st.sampled_from(["n0", "n9"]),
    },
)
needs_st = st.dictionaries(
    st.sampled_from(["nvidia.com/gpu", "nvidia.com/mig-1g.10gb"]), st.integers(1, 8), max_size=2
)


@settings(max_examples=400, deadline=None)
@given(nodes=st.lists(node_st, max_size=8), spec=spec_st, needs=needs_st)
def test_indexed_candidates_equal_plain_rules(
    nodes: list[Any], spec: dict[str, Any], needs: dict[str, int]
) -> None:
    fleet = FleetState()
    for i, (labels, taints, gpus, cordoned) in enumerate(nodes):
        rec = read_node(node(f"n{i}", gpus, labels=labels, taints=taints, unschedulable=cordoned))
        assert rec is not None
        fleet.upsert_node(rec)
    placement = read_placement(spec)
    plain = {
        n.name
        for n in fleet.nodes.values()
        if node_matches(n, placement) and all(n.gpus.get(r, 0) >= c for r, c in needs.items())
    }
    assert candidates(fleet, placement, needs) == plain


def test_indexes_follow_label_changes_and_deletes() -> None:
    fleet = FleetState()
    a = read_node(node("a", {"nvidia.com/gpu": "1"}, labels={"zone": "x"}, rv="1"))
    b = read_node(node("a", {"nvidia.com/gpu": "1"}, labels={"zone": "y"}, rv="2"))
    assert a and b
    fleet.upsert_node(a)
    fleet.upsert_node(b)
    sel = read_placement({"nodeSelector": {"zone": "x"}})
    assert candidates(fleet, sel, {}) == set()
    assert candidates(fleet, read_placement({"nodeSelector": {"zone": "y"}}), {}) == {"a"}
    # An older event arriving late does not roll the record back.
    assert not fleet.upsert_node(a)
    assert fleet.nodes["a"].labels["zone"] == "y"
    fleet.delete_node("a")
    assert fleet.all_nodes() == set() and fleet.with_key("zone") == frozenset()


def test_gpu_count_index_follows_node_changes() -> None:
    fleet = FleetState()
    four = read_node(node("a", {"nvidia.com/gpu": "4"}, rv="1"))
    eight = read_node(node("a", {"nvidia.com/gpu": "8"}, rv="2"))
    assert four and eight
    fleet.upsert_node(four)
    assert candidates(fleet, read_placement({}), {"nvidia.com/gpu": 8}) == set()
    assert candidates(fleet, read_placement({}), {"nvidia.com/gpu": 4}) == {"a"}
    fleet.upsert_node(eight)
    assert candidates(fleet, read_placement({}), {"nvidia.com/gpu": 8}) == {"a"}
    fleet.delete_node("a")
    assert candidates(fleet, read_placement({}), {"nvidia.com/gpu": 8}) == set()
