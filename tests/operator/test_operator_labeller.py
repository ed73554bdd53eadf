"""The labeller's diffing and write discipline (pure: a recording stand-in for the API).

The integration tests in test_operator_plane.py run the same labeller against
the real API server; here the point is the arithmetic: which keys, how many
writes, what happens on failure.
"""

from __future__ import annotations

import asyncio
import copy
import time
from dataclasses import replace
from typing import Any

import pytest

from maxtune.contract.names import LABEL_CAPABLE, LABEL_CLASS, LABEL_MODE, LABEL_SM_COUNT
from maxtune.kube import KubeError
from maxtune.operator.labeller import Labeller, label_patch, sweep_interval
from maxtune.operator.metrics import Metrics
from maxtune.operator.records import read_profile
from maxtune_dev import testkit
from maxtune_dev.testkit import H100, T4, Fleet


def test_label_patch_touches_only_maxtune_keys() -> None:
    current = {"maxtune.io/a": "1", "maxtune.io/gone": "x", "team": "ml", "maxtune.iox/b": "y"}
    desired = {"maxtune.io/a": "1", "maxtune.io/new": "2", "not-ours": "z"}
    assert label_patch(current, desired) == {"maxtune.io/new": "2", "maxtune.io/gone": None}
    assert label_patch(desired, desired) == {}
    assert label_patch({"maxtune.io/a": "1"}, {"maxtune.io/a": "1"}) == {}
    assert label_patch({"team": "ml"}, {}) == {}


def test_sweep_interval_follows_stale_after() -> None:
    assert sweep_interval(30) == 3
    assert sweep_interval(300) == 30
    assert sweep_interval(86400) == 30
    assert sweep_interval(5) == 1


def test_desired_labels_from_profiles() -> None:
    f = Fleet()
    f.add("h100", H100, synced=False)
    f.add("t4", T4, 4, synced=False)
    f.add("bare", None)
    now = time.time()
    h = f.state.desired_labels("h100", now)
    assert h == {
        LABEL_CAPABLE: "true",
        LABEL_MODE: "max-autotune",
        LABEL_SM_COUNT: "132",
        LABEL_CLASS: "nvidia-h100-80gb-hbm3-132sm",
    }
    t = f.state.desired_labels("t4", now)
    assert t[LABEL_CAPABLE] == "false" and t[LABEL_MODE] == "default" and t[LABEL_SM_COUNT] == "40"
    assert f.state.desired_labels("bare", now) == {}
    assert f.state.desired_labels("h100", now + 3600) == {}  # stale by then


class RecordingKube:
    """Answers node patches like the API server would (applies the merge patch)."""

    def __init__(self, fleet: Fleet, fail: int = 0) -> None:
        self.fleet = fleet
        self.calls: list[tuple[str, str, Any]] = []
        self.fail = fail

    def request(self, method: str, path: str, *, body: Any = None, **_: Any) -> Any:
        self.calls.append((method, path, copy.deepcopy(body)))
        if self.fail:
            self.fail -= 1
            raise KubeError(500, "InternalError", "etcd timeout")
        if method == "DELETE":
            return {}
        name = path.rsplit("/", 1)[1]
        rec = self.fleet.state.nodes[name]
        labels = dict(rec.labels)
        for k, v in body["metadata"]["labels"].items():
            if v is None:
                labels.pop(k, None)
            else:
                labels[k] = v
        return testkit.node(
            name,
            {k: str(v) for k, v in rec.gpus.items()},
            labels=labels,
            rv=str(int(rec.resource_version) + 100),
        )


async def run_for(labeller: Labeller, seconds: float) -> None:
    task = asyncio.create_task(labeller.run())
    await asyncio.sleep(seconds)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def test_one_write_per_changed_node_then_none() -> None:
    f = Fleet()
    for i in range(5):
        f.add(f"h{i}", H100, synced=False, labels={"team": "ml", "maxtune.io/stale-key": "x"})
    f.add("cpu", None, labels={"maxtune.io/gpu-class": "leftover"})
    kube = RecordingKube(f)
    metrics = Metrics("test", f.state)
    labeller = Labeller(f.state, kube, metrics)  # type: ignore[arg-type]

    async def main() -> None:
        task = asyncio.create_task(labeller.run())
        await asyncio.sleep(0.3)
        assert len(kube.calls) == 6  # five GPU nodes and the CPU node's leftover label
        for method, _path, body in kube.calls:
            assert method == "PATCH"
            assert all(k.startswith("maxtune.io/") for k in body["metadata"]["labels"])
        # Heartbeats and unrelated node updates do not write again.
        for i in range(5):
            prof = testkit.profile(f"h{i}", H100)
            prof["metadata"].update(uid=f"puid-h{i}", resourceVersion="9999")
            rec = read_profile(prof)
            assert rec is not None
            f.state.upsert_profile(rec)
        await asyncio.sleep(0.3)
        assert len(kube.calls) == 6
        assert f.state.nodes["h0"].labels["team"] == "ml"
        assert "maxtune.io/stale-key" not in f.state.nodes["h0"].labels
        assert f.state.nodes["cpu"].maxtune_labels() == {}
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())
    assert metrics.label_writes._value.get() == 6


def test_failed_writes_are_counted_and_retried_with_backoff() -> None:
    f = Fleet()
    f.add("h0", H100, synced=False)
    kube = RecordingKube(f, fail=2)
    metrics = Metrics("test", f.state)
    labeller = Labeller(f.state, kube, metrics)  # type: ignore[arg-type]
    asyncio.run(run_for(labeller, 2.5))  # backoff 0.5 s, then 1 s
    assert len(kube.calls) == 3
    assert metrics.reconcile_errors._value.get() == 2
    assert f.state.nodes["h0"].labels[LABEL_MODE] == "max-autotune"


def test_stale_profile_loses_labels_on_the_sweep() -> None:
    f = Fleet()
    f.add("h0", H100, synced=True)
    kube = RecordingKube(f)
    clock = {"now": time.time()}
    labeller = Labeller(f.state, kube, Metrics("test"), clock=lambda: clock["now"])  # type: ignore[arg-type]

    async def main() -> None:
        task = asyncio.create_task(labeller.run())
        await asyncio.sleep(0.2)
        assert kube.calls == []  # already in sync
        clock["now"] += 301  # past the built-in staleAfterSeconds (300)
        labeller.mark(())  # wake it, as the sweep timer would
        await asyncio.sleep(0.2)
        assert len(kube.calls) == 1
        assert set(kube.calls[0][2]["metadata"]["labels"].values()) == {None}
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())


@pytest.mark.parametrize("grace", [0.0])
def test_orphaned_profile_is_deleted_with_uid_precondition(grace: float) -> None:
    f = Fleet()
    f.add("h0", H100)
    f.state.delete_node("h0")
    kube = RecordingKube(f)
    labeller = Labeller(f.state, kube, Metrics("test"), orphan_grace_seconds=grace)  # type: ignore[arg-type]
    asyncio.run(run_for(labeller, 0.2))
    deletes = [c for c in kube.calls if c[0] == "DELETE"]
    assert len(deletes) == 1
    assert deletes[0][1].endswith("/gpunodeprofiles/h0")
    assert deletes[0][2]["preconditions"] == {"uid": "puid-h0"}


def test_heartbeat_keeps_derived_tables_and_device_change_drops_them() -> None:
    f = Fleet()
    f.add("h0", H100, synced=False)
    policy = f.state.cluster_policy()
    assert f.state.warm(policy) == 1 and f.state.warm(policy) == 0
    table = f.state.mode_ranks("h0", policy)
    beat = testkit.profile("h0", H100)
    beat["metadata"].update(uid="puid-h0", resourceVersion="500")
    rec = read_profile(beat)
    assert rec is not None
    f.state.upsert_profile(rec)
    assert f.state.mode_ranks("h0", policy) is table  # same devices: kept
    assert f.state.heartbeats["h0"] == rec.heartbeat
    slower = testkit.profile("h0", H100, gain=-0.1)
    slower["metadata"].update(uid="puid-h0", resourceVersion="501")
    rec = read_profile(slower)
    assert rec is not None
    f.state.upsert_profile(rec)
    assert f.state.mode_ranks("h0", policy) == {"nvidia.com/gpu": 0}  # recomputed: default


def test_a_relist_prunes_what_was_deleted_while_nobody_watched() -> None:
    f = Fleet()
    for name in ("a", "b", "c"):
        f.add(name, H100)
    assert f.state.prune("node", {"a", "c"}) == ["b"]
    assert set(f.state.nodes) == {"a", "c"}
    assert f.state.prune("profile", {"a"}) == ["b", "c"]
    assert set(f.state.profiles) == {"a"}


def test_a_write_answer_never_brings_back_a_deleted_node_nor_rolls_one_back() -> None:
    f = Fleet()
    f.add("a", H100)
    answered = f.state.nodes["a"]
    f.state.delete_node("a")
    assert not f.state.refresh_node(answered)  # the patch answer came after the DELETED event
    assert "a" not in f.state.nodes
    f.add("b", H100)
    current = f.state.nodes["b"]
    older = replace(current, resource_version="1", labels={**current.labels, "x": "y"})
    assert not f.state.upsert_node(older)  # a list taken before the last write
    assert f.state.nodes["b"] is current
