"""Liveness across a rolling upgrade of the agents (decision 0007, 'Agents of two versions').

An operator of this version judges a node's agent alive by the newer of two signs: its
Lease's renewTime (agents from 0.2 on, which write the profile only on change) and its
profile's status.heartbeatTime (agents before 0.2, which heartbeat there). During a rolling
upgrade of the agents' DaemonSet, and after a rollback, a node switches from one sign to the
other; the labels must not notice. These tests drive a FleetState through the same readers
the informers use (watch events of Leases and profiles), minute by minute of simulated
time, and check what the labeller would compute: the desired labels of every node, which
must stay the same (no write) until a node's agent really stops.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from maxtune.operator.events import apply_event
from maxtune.operator.fleet import FleetState
from maxtune_dev.testkit import H100, Fleet
from maxtune_dev.testkit.profiles import profile

STALE_AFTER = 300  # the default policy's staleAfterSeconds
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _lease(node: str, renewed: datetime, rv: int) -> dict[str, Any]:
    """A Lease as agents of this version write it (maxtune.agent.kube.KubeSink._renew)."""
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": node,
            "namespace": "maxtune-system",
            "resourceVersion": str(rv),
            "labels": {"maxtune.io/agent-heartbeat": "true"},
        },
        "spec": {
            "holderIdentity": node,
            "leaseDurationSeconds": 180,
            "renewTime": renewed.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        },
    }


def _profile_beat(node: str, beat: datetime, rv: int) -> dict[str, Any]:
    """The profile as an agent before 0.2 leaves it after a heartbeat (status.heartbeatTime)."""
    body = profile(node, H100, heartbeat=beat)
    body["metadata"].update(uid=f"puid-{node}", resourceVersion=str(rv))
    return body


class Upgrade:
    """Three nodes of one fleet, each with an agent whose version changes mid-way."""

    def __init__(self) -> None:
        fleet = Fleet()
        for name in ("old", "upgraded", "rolled-back"):
            fleet.add(name, H100, 8, gain=0.08, heartbeat=T0)
        self.state: FleetState = fleet.state
        self.rv = 1000

    def beat_profile(self, node: str, at: datetime) -> None:
        self.rv += 1
        apply_event(self.state, "profile", "MODIFIED", _profile_beat(node, at, self.rv))

    def renew_lease(self, node: str, at: datetime, *, first: bool = False) -> None:
        self.rv += 1
        event = "ADDED" if first else "MODIFIED"
        apply_event(self.state, "lease", event, _lease(node, at, self.rv))

    def desired(self, at: datetime) -> dict[str, dict[str, str]]:
        now = at.timestamp()
        return {n: dict(self.state.desired_labels(n, now)) for n in self.state.nodes}


def test_agents_switching_between_profile_and_lease_heartbeats_change_no_label() -> None:
    """Minute by minute for half an hour: one agent never upgrades (profile heartbeats), one
    upgrades at minute 10 (Lease from then on, its profile left alone), one upgrades at
    minute 5 and is rolled back at minute 15 (Lease stops, profile heartbeats resume). No
    node's desired labels change, and none is ever stale."""
    fleet = Upgrade()
    before = fleet.desired(T0)
    assert all(before.values()), before  # every node labelled to begin with
    for minute in range(1, 31):
        now = T0 + timedelta(minutes=minute)
        fleet.beat_profile("old", now)
        if minute < 10:
            fleet.beat_profile("upgraded", now)
        else:
            fleet.renew_lease("upgraded", now, first=minute == 10)
        if 5 <= minute < 15:
            fleet.renew_lease("rolled-back", now, first=minute == 5)
        else:
            fleet.beat_profile("rolled-back", now)
        # The labeller looks at any moment between two rounds, up to just before the next.
        for second in (0, 30, 59):
            at = now + timedelta(seconds=second)
            assert fleet.desired(at) == before, (minute, second)
            assert not any(fleet.state.is_stale(n, at.timestamp()) for n in fleet.state.nodes)


def test_liveness_is_the_newer_of_the_two_signs() -> None:
    """An old Lease left behind by a rollback does not hide fresh profile heartbeats, an old
    profile heartbeat does not hide a fresh Lease, and a node goes stale only
    staleAfterSeconds after the newer of the two."""
    fleet = Upgrade()
    fleet.renew_lease("rolled-back", T0 + timedelta(minutes=1), first=True)
    fleet.beat_profile("rolled-back", T0 + timedelta(minutes=20))  # the rollback's heartbeat
    fleet.renew_lease("upgraded", T0 + timedelta(minutes=20), first=True)
    at = T0 + timedelta(minutes=20, seconds=STALE_AFTER - 1)
    assert not fleet.state.is_stale("rolled-back", at.timestamp())
    assert not fleet.state.is_stale("upgraded", at.timestamp())
    assert fleet.state.is_stale("old", at.timestamp())  # its last sign was at T0
    assert fleet.desired(at)["old"] == {}
    later = T0 + timedelta(minutes=20, seconds=STALE_AFTER + 1)
    assert fleet.state.is_stale("rolled-back", later.timestamp())
    assert fleet.state.is_stale("upgraded", later.timestamp())
    # An older Lease event after a newer profile heartbeat does not move liveness back.
    fleet.beat_profile("old", later)
    fleet.renew_lease("old", T0, first=True)
    assert fleet.state.heartbeats["old"] == later.timestamp()


def test_a_deleted_lease_falls_back_to_the_profile_heartbeat() -> None:
    """A downgraded agent's Lease may be deleted by hand; the profile heartbeat still counts."""
    fleet = Upgrade()
    fleet.renew_lease("upgraded", T0 + timedelta(minutes=2), first=True)
    assert fleet.state.heartbeats["upgraded"] == (T0 + timedelta(minutes=2)).timestamp()
    apply_event(fleet.state, "lease", "DELETED", _lease("upgraded", T0, fleet.rv))
    assert fleet.state.heartbeats["upgraded"] == T0.timestamp()
    fleet.beat_profile("upgraded", T0 + timedelta(minutes=3))
    assert fleet.state.heartbeats["upgraded"] == (T0 + timedelta(minutes=3)).timestamp()


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(["renew", "drop", "ask"]),
            st.integers(0, 5),
            st.integers(1, 40).map(float),
        ),
        max_size=40,
    )
)
def test_stale_nodes_follow_every_renewal_and_every_clock(steps: list[Any]) -> None:
    """The stale set is kept between admissions (it only changes when an agent's liveness
    does, or the clock passes a beat); whatever the order of renewals, Leases going and
    cut-offs asked for (earlier ones too), it equals a scan of every node's last beat."""
    state = FleetState()
    for kind, n, moment in steps:
        if kind == "renew":
            state.set_lease(f"n{n}", moment)
        elif kind == "drop":
            state.delete_lease(f"n{n}")
        beats = state.heartbeats
        assert state.stale_profiles(moment) == {k for k, beat in beats.items() if beat < moment}
