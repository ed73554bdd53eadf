"""Why no node remains: each node's first rejecting rule, grouped; the rest are the candidates."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from maxtune.operator.exclusion import explain, reject
from maxtune.operator.fleet import FleetState
from maxtune.operator.records import read_node
from maxtune.operator.selection import candidates, read_placement
from maxtune_dev.testkit import A100, H100, T4, Fleet, node, stale
from tests.operator.test_operator_selection import needs_st, node_st, spec_st

GPU = "nvidia.com/gpu"


def fleet() -> Fleet:
    f = Fleet()
    f.add("h100-a", H100, 8, labels={"pool": "train"})
    f.add("h100-b", H100, 8, labels={"pool": "train"})
    f.add("a100-a", A100, 4, labels={"pool": "batch"})
    f.add("t4-a", T4, 4, taints=[{"key": "dedicated", "value": "infer", "effect": "NoSchedule"}])
    f.add("cpu-a", None)
    return f


def test_a_node_selector_that_matches_nothing_is_named_with_the_nodes_it_excludes() -> None:
    f = fleet()
    why = explain(f.state, read_placement({"nodeSelector": {"pool": "gpu-xl"}}), {GPU: 1})
    assert not why.remaining
    # The scheduler's order: the T4's taint rejects it before the selector is looked at.
    assert [(g.rule, g.subject, len(g.nodes)) for g in why.groups] == [
        ("taint", "dedicated=infer:NoSchedule", 1),
        ("nodeSelector", "pool=gpu-xl", 4),
    ]
    assert why.text == (
        "none of 5 node(s) remains: taint dedicated=infer:NoSchedule not tolerated on 1 node(s) "
        "(t4-a); nodeSelector pool=gpu-xl excludes 4 node(s) (a100-a, cpu-a, h100-a and 1 more)"
    )
    assert why.wire()["excluded"][1] == {
        "rule": "nodeSelector",
        "subject": "pool=gpu-xl",
        "nodes": 4,
        "examples": ["a100-a", "cpu-a", "h100-a"],
    }


def test_resources_the_nodes_do_not_offer_say_how_many_were_wanted_and_offered() -> None:
    f = fleet()
    tolerant = {"tolerations": [{"key": "dedicated", "operator": "Exists"}]}
    why = explain(f.state, read_placement(tolerant), {GPU: 16})
    assert [(g.rule, g.subject, g.wanted, g.offered) for g in why.groups] == [
        ("resource", GPU, 16, (0, 4, 8))
    ]
    assert "nvidia.com/gpu: 16 wanted, at most 8 offered on 5 node(s)" in why.text
    mig = explain(f.state, read_placement(tolerant), {"nvidia.com/mig-1g.10gb": 1})
    assert "nvidia.com/mig-1g.10gb: 1 wanted, none offered on 5 node(s)" in mig.text


def test_required_node_affinity_names_the_requirement_that_failed() -> None:
    f = fleet()
    spec = {
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["x"]}]}
                    ]
                }
            }
        },
        "tolerations": [{"operator": "Exists"}],
    }
    why = explain(f.state, read_placement(spec), {GPU: 1})
    assert {(g.rule, g.subject) for g in why.groups} == {("nodeAffinity", "pool In [x]")}
    assert "required node affinity pool In [x] excludes 5 node(s)" in why.text
    broken = {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": 3}}}
    assert "cannot be read" in explain(f.state, read_placement(broken), {GPU: 1}).text


def test_spec_node_name_looks_only_at_the_named_node() -> None:
    f = fleet()
    gone = explain(f.state, read_placement({"nodeName": "nope"}), {GPU: 1})
    assert gone.text == "none of 5 node(s) remains: spec.nodeName nope is none of the 5 node(s)"
    small = explain(f.state, read_placement({"nodeName": "a100-a"}), {GPU: 8})
    assert [(g.rule, g.nodes) for g in small.groups] == [("resource", ("a100-a",))]
    # A taint does not keep a pod that names its node (the scheduler is bypassed).
    assert explain(f.state, read_placement({"nodeName": "t4-a"}), {GPU: 1}).remaining == ("t4-a",)


def test_remaining_nodes_without_a_current_profile_are_counted() -> None:
    f = Fleet()
    f.add("h100-old", H100, 8, heartbeat=stale(2))
    f.add("h100-new", H100, 8, with_profile=False)
    why = explain(f.state, read_placement({}), {GPU: 1}, now=f.clock, stale_after_seconds=300)
    assert why.remaining == ("h100-new", "h100-old")
    assert why.profiles is not None and (why.profiles.stale, why.profiles.missing) == (1, 1)
    assert why.text.endswith(
        "none with a current profile (1 stale, 1 without one): only default holds there"
    )
    f.add("h100-live", H100, 8)
    live = explain(f.state, read_placement({}), {GPU: 1}, now=f.clock, stale_after_seconds=300)
    assert live.text == "3 of 3 node(s) remain, 1 with a current profile"


def test_a_value_that_is_not_a_string_is_shown_as_such() -> None:
    f = fleet()
    why = explain(f.state, read_placement({"nodeSelector": {"pool": 3}}), {GPU: 1})
    assert "pool=3 (not a string: matches nothing)" in why.text


@settings(max_examples=300, deadline=None)
@given(nodes=st.lists(node_st, max_size=8), spec=spec_st, needs=needs_st)
def test_the_nodes_left_unexplained_are_exactly_the_candidates(
    nodes: list[Any], spec: dict[str, Any], needs: dict[str, int]
) -> None:
    state = FleetState()
    for i, (labels, taints, gpus, cordoned) in enumerate(nodes):
        rec = read_node(node(f"n{i}", gpus, labels=labels, taints=taints, unschedulable=cordoned))
        assert rec is not None
        state.upsert_node(rec)
    placement = read_placement(spec)
    why = explain(state, placement, needs)
    assert set(why.remaining) == candidates(state, placement, needs)
    if not why.remaining and state.nodes:
        named = placement.node_name
        counted = sum(len(g.nodes) for g in why.groups)
        assert counted == (1 if named in state.nodes else len(state.nodes))
        assert all(
            reject(state.nodes[n], placement, needs) is not None
            for g in why.groups
            for n in g.nodes
            if n in state.nodes
        )
