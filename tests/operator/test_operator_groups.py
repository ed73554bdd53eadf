"""FleetState's node groups give the webhook exactly the buckets a plain loop over nodes gives.

The groups are kept up to date incrementally (nodes relabelled, profiles
changed, heartbeats arriving or going stale, nodes and profiles deleted,
policies changing), so the property is checked after every step of random
sequences of such changes, for several pod shapes and candidate sets.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable, Sequence
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from maxtune.contract.models import AutotunePolicy
from maxtune.contract.names import LABEL_CLASS, LABEL_MODE
from maxtune.operator.decision import _buckets
from maxtune.operator.fleet import Bucket, FleetState, Ranks
from maxtune.operator.gpurequests import GpuContainer, gpu_containers
from maxtune.operator.records import read_node
from maxtune_dev import testkit
from maxtune_dev.testkit import A100, H100, RTX3070, T4, Fleet, gpu_container, pod, stale

PRODUCTS = [
    (H100, 8, None, 0.08),
    (A100, 8, None, 0.05),
    (T4, 4, None, None),
    (RTX3070, 2, None, None),
]
PRODUCTS += [(H100, 1, ["1g.10gb"] * 7, None), (A100, 8, None, -0.05)]


def plain_buckets(
    names: Iterable[str],
    containers: Sequence[GpuContainer],
    fleet: FleetState,
    policy: AutotunePolicy,
    now: float,
) -> dict[Bucket, set[str]]:
    """The loop over every candidate node that node groups replaced (the reference)."""
    oldest = now - policy.spec.stale_after_seconds
    wanted = [tuple(c.requests) for c in containers]
    found: dict[Bucket, set[str]] = {}
    for name in names:
        ranks: Ranks = None
        heartbeat = fleet.heartbeats.get(name)
        if heartbeat is not None and heartbeat >= oldest:
            table = fleet.mode_ranks(name, policy)
            got = tuple(min(table.get(r, -1) for r in rs) for rs in wanted)
            ranks = None if min(got) < 0 else got
        labels = fleet.nodes[name].labels
        found.setdefault((labels.get(LABEL_CLASS), labels.get(LABEL_MODE), ranks), set()).add(name)
    return found


def policy(min_gain: float, rv: int) -> AutotunePolicy:
    return AutotunePolicy.model_validate(
        {
            "metadata": {"name": "strict", "resourceVersion": str(rv)},
            "spec": {"namespaces": ["team"], "minMeasuredGain": min_gain},
        }
    )


SHAPES = [
    pod(),
    pod(gpu_container(resource="nvidia.com/mig-1g.10gb")),
    pod(gpu_container(), gpu_container(name="b", resource="nvidia.com/mig-1g.10gb")),
    pod(gpu_container(count="8")),
]

op_st = st.tuples(
    st.sampled_from(
        ["add", "relabel", "heartbeat", "stale", "drop-profile", "drop-node", "policy"]
    ),
    st.integers(0, 11),
    st.integers(0, len(PRODUCTS) - 1),
)


def apply(fleet: Fleet, op: tuple[str, int, int], step: int) -> None:
    kind, n, p = op
    name = f"n{n}"
    product, count, mig, gain = PRODUCTS[p]
    state = fleet.state
    if kind == "add":
        fleet.add(name, product, count, mig=mig, gain=gain, synced=n % 2 == 0)
    elif kind == "bare":  # a node without a profile (no agent yet)
        fleet.add(name, product, count, mig=mig, with_profile=False)
    elif kind == "heartbeat" and name in state.profiles:
        fleet.add(name, product, count, mig=mig, gain=gain, synced=False)
    elif kind == "stale":
        fleet.add(name, product, count, mig=mig, gain=gain, heartbeat=stale(), synced=False)
    elif kind == "relabel":  # the labeller (or a person) wrote labels; a new node if absent
        body = testkit.node(name, rv=str(10_000 + step))
        body["metadata"]["labels"].update(
            {LABEL_CLASS: f"class-{p % 3}", LABEL_MODE: ["default", "max-autotune"][p % 2]}
        )
        body["status"]["allocatable"].update(testkit.allocatable(product, count, mig))
        record = read_node(body)
        assert record is not None
        state.upsert_node(record)
    elif kind == "drop-profile":
        state.delete_profile(name)
    elif kind == "drop-node":
        state.delete_node(name)
    elif kind == "policy":
        state.upsert_policy(policy(0.02 * p, step))


def check(fleet: Fleet, rng: random.Random) -> None:
    state = fleet.state
    now = time.time()
    for obj in SHAPES:
        containers = gpu_containers(obj["spec"])
        for namespace in ("team", "other"):
            chosen = state.policy_for(namespace)
            names = set(state.nodes)
            subsets = [names, {n for n in names if rng.random() < 0.5}, set()]
            for subset in subsets:
                plain = plain_buckets(subset, containers, state, chosen, now)
                # A frozenset (what selection.candidates hands out) is answered from what
                # was kept for an equal one, until a node changes bucket: never stale.
                for asked in (subset, frozenset(subset)):
                    got, members = _buckets(asked, containers, state, chosen, now)
                    assert got == set(plain)
                    assert {b: set(m) for b, m in members.items()} == plain


@settings(max_examples=300, deadline=None)
@given(ops=st.lists(op_st, max_size=30), seed=st.integers(0, 1000))
def test_groups_equal_a_plain_loop_after_any_changes(ops: list[Any], seed: int) -> None:
    fleet = Fleet()
    rng = random.Random(seed)
    check(fleet, rng)
    for step, op in enumerate(ops):
        apply(fleet, op, step)
        check(fleet, rng)


def test_more_pod_shapes_than_are_kept_still_get_right_buckets() -> None:
    """Kept answers are few (OVERLAPS_KEPT over all groups): asking for many more candidate
    sets, twice round, evicts and recomputes, and every answer still equals the plain loop."""
    fleet = Fleet()
    for n in range(12):
        product, count, mig, gain = PRODUCTS[n % len(PRODUCTS)]
        fleet.add(f"n{n}", product, count, mig=mig, gain=gain, synced=n % 2 == 0)
    state, now = fleet.state, time.time()
    rng = random.Random(7)
    subsets = [frozenset(n for n in state.nodes if rng.random() < 0.5) for _ in range(3 * 32)]
    for _ in range(2):
        for subset in subsets:
            for obj in SHAPES[:2]:
                containers = gpu_containers(obj["spec"])
                chosen = state.policy_for("team")
                got, members = _buckets(subset, containers, state, chosen, now)
                plain = plain_buckets(subset, containers, state, chosen, now)
                assert got == set(plain)
                assert {b: set(m) for b, m in members.items()} == plain
