"""The operator SIGKILLed in the middle of labelling a few hundred nodes, then started again.

A SIGKILL leaves no chance to finish anything: patches in flight are cut, the Lease is not
released, nothing is flushed. Level-triggered labelling must make that harmless: the new process
recomputes every node's labels from the API and writes exactly the nodes that differ, once each.
Profiles whose node went away while no operator ran are collected after the restart.
"""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from maxtune.kube import Kube
from maxtune_dev.testkit import cluster
from tests.faults.conftest import OperatorFactory
from tests.faults.fleetkit import (
    KINDS,
    Labels,
    all_labels_of,
    create_node,
    delete,
    maxtune_labels_of_all,
    parallel,
    put_kind,
)

pytestmark = [pytest.mark.plane, pytest.mark.slow]

PROFILES = cluster.PROFILES
NODES_WITH_WORK = 260  # groups A, C and D below
STALE: Labels = {  # left behind by an earlier install on nodes that now have no profile
    "maxtune.io/max-autotune-capable": "true",
    "maxtune.io/recommended-mode": "max-autotune",
    "maxtune.io/sm-count": "132",
    "maxtune.io/gpu-class": "nvidia-h100-80gb-hbm3-132sm",
}


@pytest.fixture
def prefix(kube: Kube) -> Iterator[str]:
    """A name prefix for this test's nodes; every node and profile under it is deleted after."""
    value = f"kill-{uuid.uuid4().hex[:6]}-"
    yield value
    names = list(maxtune_labels_of_all(kube, value))
    listed = kube.request("GET", PROFILES)["items"]
    profiles = [p["metadata"]["name"] for p in listed if p["metadata"]["name"].startswith(value)]
    parallel(lambda n: delete(kube, f"/api/v1/nodes/{n}"), names)
    parallel(lambda n: delete(kube, f"{PROFILES}/{n}"), profiles)


def test_sigkill_mid_reconcile_then_restart_ends_right_with_bounded_writes(
    kube: Kube, operators: OperatorFactory, prefix: str
) -> None:
    kinds = list(KINDS)
    # A: 200 nodes with a profile and no labels yet.        -> labelled
    # B: 40 nodes with a profile and already right labels.  -> never written
    # C: 20 nodes with a profile and wrong labels.          -> corrected
    # D: 40 nodes without a profile, carrying stale labels. -> cleared (other labels kept)
    a = {f"{prefix}a{i:03d}": kinds[i % len(kinds)] for i in range(200)}
    b = {f"{prefix}b{i:03d}": kinds[i % len(kinds)] for i in range(40)}
    c = {f"{prefix}c{i:03d}": kinds[i % len(kinds)] for i in range(20)}
    d = [f"{prefix}d{i:03d}" for i in range(40)]
    parallel(lambda n: create_node(kube, n, {}), list(a))
    parallel(lambda n: create_node(kube, n, KINDS[b[n]][2]), list(b))
    parallel(lambda n: create_node(kube, n, {**STALE, "maxtune.io/mode": "x"}), list(c))
    parallel(lambda n: create_node(kube, n, {**STALE, "team": "ml"}), d)
    parallel(lambda n: put_kind(kube, n, {**a, **b, **c}[n]), [*a, *b, *c])

    op = operators(identity="op-killed", lease=f"kill-{uuid.uuid4().hex[:6]}")
    op.start(wait=False)
    # Kill it once it is well into the work, and certainly not done.
    written = cluster.eventually(
        lambda: (
            (w := op.metric("maxtune_operator_label_writes_total") if op.get("/metrics")[0] else 0)
            >= 40
            and w
        ),
        "the operator to be well into labelling",
        timeout_s=90,
    )
    assert op.stop(signal.SIGKILL) == -signal.SIGKILL
    assert written < NODES_WITH_WORK, "the operator finished before it could be killed"
    time.sleep(1)  # let any patch already inside the API server land

    # While no operator runs: nodes go away, profiles go away or change.
    gone_nodes = list(a)[0:10]
    gone_profiles = list(a)[10:20]
    changed = [n for n in list(a)[20:80] if a[n] == "h100"][:10]
    parallel(lambda n: delete(kube, f"/api/v1/nodes/{n}"), gone_nodes)
    parallel(lambda n: delete(kube, f"{PROFILES}/{n}"), gone_profiles)
    parallel(lambda n: put_kind(kube, n, "h100-slow"), changed)

    expected: dict[str, Labels] = {}
    for group in (a, b, c):
        for name, kind in group.items():
            expected[name] = dict(KINDS[kind][2])
    for name in changed:
        expected[name] = dict(KINDS["h100-slow"][2])
    for name in [*gone_profiles, *d]:
        expected[name] = {}
    for name in gone_nodes:
        del expected[name]

    before = maxtune_labels_of_all(kube, prefix)
    assert set(before) == set(expected)
    differing = sorted(n for n in expected if before[n] != expected[n])
    # Half-done work is visible: some nodes right already, some not.
    assert 0 < len(differing) < len(expected)
    assert all(before[n] == expected[n] for n in b), "a node that was right got rewritten"

    restarted = operators(identity="op-killed", lease=op.lease)
    started = time.monotonic()
    restarted.start()

    def converged() -> bool:
        return maxtune_labels_of_all(kube, prefix) == expected

    cluster.eventually(converged, "every label right after the restart", timeout_s=90)
    took = time.monotonic() - started
    # Bounded: one write per node that differed, none for a node that was right.
    time.sleep(1.5)
    assert restarted.metric("maxtune_operator_label_writes_total") == len(differing), (
        restarted.tail()
    )
    assert restarted.metric("maxtune_operator_reconcile_errors_total") == 0
    # No other label was touched.
    for name in d:
        assert all_labels_of(kube, name)["team"] == "ml"

    # Profiles of nodes deleted while no operator ran are collected (grace 2 s in these tests).
    def orphans_left() -> list[str]:
        items: list[dict[str, Any]] = kube.request("GET", PROFILES)["items"]
        return [p["metadata"]["name"] for p in items if p["metadata"]["name"] in gone_nodes]

    cluster.eventually(lambda: orphans_left() == [], "orphaned profiles collected", timeout_s=30)
    # At least ours: the plane is shared, and profiles other modules left without a node are
    # orphans to this operator too (which of them exist depends on the order tests ran in).
    assert restarted.metric("maxtune_operator_orphan_profiles_deleted_total") >= len(gone_nodes)
    print(
        f"killed after {written:.0f} of {NODES_WITH_WORK} writes; {len(differing)} nodes "
        f"differed at restart; converged {took:.1f}s after the restart with "
        f"{len(differing)} writes"
    )
