"""The Lease's protobuf codec and the wire format under it (pure; test_leaseproto_plane.py holds
it against the API server's own encoding)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from maxtune.agent import leaseproto
from maxtune.agent.lease import micro_time, new_lease, node_owner, renewal
from maxtune.kube import protobuf
from maxtune.kube.client import _error
from maxtune.kube.protobuf import ProtobufError

NOW = datetime(2026, 12, 2, 14, 0, 0, 250001, tzinfo=UTC)


def test_varints_round_trip_including_negative_int64() -> None:
    for value in (0, 1, 127, 128, 300, 2**31, 2**63 - 1, -1, -(2**63), -62135596800):
        encoded = protobuf.field(7, value)
        [(num, read)] = list(protobuf.fields(encoded))
        assert num == 7
        assert isinstance(read, int)
        assert protobuf.int64(read) == value
    assert protobuf.varint(300) == b"\xac\x02"  # the protobuf documentation's example
    assert protobuf.varint(-1) == b"\xff" * 9 + b"\x01"  # ten bytes, as Go writes it


@pytest.mark.parametrize(
    "data, says",
    [
        (b"\x0a\x05ab", "runs past the end"),
        (b"\x08\xff\xff", "truncated"),
        (b"\x08" + b"\xff" * 11, "overlong"),
        (b"\x00\x01", "field number 0"),
        (b"\x0b", "wire type 3"),
    ],
)
def test_malformed_messages_are_errors_not_guesses(data: bytes, says: str) -> None:
    with pytest.raises(ProtobufError, match=says):
        list(protobuf.fields(data))


def test_fixed_width_fields_are_skipped_whole() -> None:
    data = b"\x09" + b"\x01" * 8 + b"\x15" + b"\x02" * 4 + protobuf.field(3, "x")
    assert list(protobuf.fields(data)) == [(1, b"\x01" * 8), (2, b"\x02" * 4), (3, b"x")]


def test_a_protobuf_status_is_read_as_an_error_message() -> None:
    raw = protobuf.field(2, "Failure") + protobuf.field(3, 'leases "n1" conflict')
    raw += protobuf.field(4, "Conflict") + protobuf.field(6, 409)
    body = protobuf.envelope("v1", "Status", raw)
    assert protobuf.status(body) == ("Conflict", 'leases "n1" conflict')
    error = _error(409, "Conflict", body)
    assert (error.status, error.reason, error.message) == (409, "Conflict", 'leases "n1" conflict')
    garbled = _error(500, "Internal Server Error", protobuf.MAGIC + b"\x0a\xff")
    assert garbled.reason == "Internal Server Error"
    assert "not a Status" in garbled.message
    with pytest.raises(ProtobufError, match="no k8s magic"):
        protobuf.unwrap(b'{"kind": "Status"}')


def test_the_first_lease_and_a_renewal_round_trip() -> None:
    first = new_lease("maxtune", "gpu-1", node_owner("gpu-1", "u-1"), 180, NOW)
    assert leaseproto.decode(leaseproto.encode(first)) == first
    answer = {
        **first,
        "metadata": {
            **first["metadata"],
            "uid": "l-1",
            "resourceVersion": "812",
            "creationTimestamp": "2026-12-02T13:59:00Z",
        },
    }
    body = renewal(answer, "gpu-1", 180, NOW + timedelta(seconds=60))
    decoded = leaseproto.decode(leaseproto.encode(body))
    assert decoded == body
    assert decoded["metadata"]["resourceVersion"] == "812"
    assert decoded["spec"]["renewTime"] == micro_time(NOW + timedelta(seconds=60))
    assert len(leaseproto.encode(body)) < len(str(body)) / 2


def test_clearing_the_field_record_is_carried_and_a_record_read_is_cleared_next() -> None:
    answer = new_lease("maxtune", "gpu-1", None, 180, NOW)
    answer["metadata"]["managedFields"] = [{"manager": "kubectl", "operation": "Apply"}]
    with pytest.raises(leaseproto.NotEncodable, match="managedFields"):
        leaseproto.encode(answer)  # a record is not dropped silently
    body = renewal(answer, "gpu-1", 180, NOW)
    assert body["metadata"]["managedFields"] == [{}]
    data = leaseproto.encode(body)
    raw = protobuf.unwrap(data)[2]
    metadata = protobuf.message(dict(protobuf.fields(raw))[1])
    assert (17, b"") in list(protobuf.fields(metadata))  # one empty entry: "clear the record"
    # A record in an answer is read as present, so the next renewal clears it.
    read = leaseproto.decode(data)
    assert read["metadata"]["managedFields"]
    assert renewal(read, "gpu-1", 180, NOW)["metadata"]["managedFields"] == [{}]


@pytest.mark.parametrize(
    "change, says",
    [
        ({"status": {}}, "not carried"),
        ({"apiVersion": "coordination.k8s.io/v2"}, r"not a coordination\.k8s\.io/v1 Lease"),
        ({"metadata": {"name": "n", "future": 1}}, r"metadata\.future"),
        ({"spec": {"renewTime": "yesterday"}}, "RFC 3339"),
        ({"spec": {"renewTime": "2026-12-02T14:00:00"}}, "without a zone"),
        ({"spec": {"leaseDurationSeconds": "180"}}, "integer"),
        ({"spec": {"leaseDurationSeconds": True}}, "integer"),
        ({"metadata": {"labels": {"a": 1}}}, "string"),
        ({"metadata": {"ownerReferences": [{"controller": "yes"}]}}, "boolean"),
        ({"metadata": {"finalizers": "one"}}, "list"),
    ],
)
def test_what_the_codec_does_not_carry_is_refused_for_json_to_send(
    change: dict[str, Any], says: str
) -> None:
    lease = {**new_lease("maxtune", "gpu-1", None, 180, NOW), **change}
    with pytest.raises(leaseproto.NotEncodable, match=says):
        leaseproto.encode(lease)


def test_an_answer_with_a_field_not_known_here_is_an_error() -> None:
    body = leaseproto.encode(new_lease("maxtune", "gpu-1", None, 180, NOW))
    _, _, raw = protobuf.unwrap(body)
    for extra, says in (
        (protobuf.field(3, b"status"), "Lease field 3"),
        (protobuf.field(1, protobuf.field(16, "x")), "metadata field 16"),
        (protobuf.field(2, protobuf.field(9, 1)), "spec field 9"),
    ):
        with pytest.raises(ProtobufError, match=says):
            leaseproto.decode(protobuf.envelope("coordination.k8s.io/v1", "Lease", raw + extra))
    with pytest.raises(ProtobufError, match=r"not a coordination\.k8s\.io/v1 Lease"):
        leaseproto.decode(protobuf.envelope("v1", "ConfigMap", raw))


def test_go_zero_values_read_as_json_leaves_them() -> None:
    """Go writes empty strings, a zero generation and a zero time (as an empty message);
    JSON leaves each out, and so does the decoder."""
    metadata = protobuf.field(1, "gpu-1") + protobuf.field(2, "") + protobuf.field(7, 0)
    metadata += protobuf.field(8, b"") + protobuf.field(5, "u-1")
    raw = protobuf.field(1, metadata) + protobuf.field(2, b"")
    lease = leaseproto.decode(protobuf.envelope("coordination.k8s.io/v1", "Lease", raw))
    assert lease["metadata"] == {"name": "gpu-1", "uid": "u-1"}
    assert lease["spec"] == {}


_names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
_times = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)


@given(
    name=_names,
    labels=st.dictionaries(_names, _names, max_size=4),
    annotations=st.dictionaries(_names, _names, max_size=3),
    finalizers=st.lists(_names, max_size=3),
    renew=_times,
    created=_times,
    seconds=st.integers(min_value=1, max_value=2**31 - 1),
    transitions=st.integers(min_value=0, max_value=2**31 - 1),
    controller=st.booleans(),
)
def test_every_lease_of_the_fields_carried_round_trips(
    name: str,
    labels: dict[str, str],
    annotations: dict[str, str],
    finalizers: list[str],
    renew: datetime,
    created: datetime,
    seconds: int,
    transitions: int,
    controller: bool,
) -> None:
    metadata: dict[str, Any] = {
        "name": name or "n",
        "namespace": "maxtune",
        "uid": "u",
        "resourceVersion": "9",
        "generation": 3,
        "creationTimestamp": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "ownerReferences": [
            {"apiVersion": "v1", "kind": "Node", "name": "n", "uid": "x", "controller": controller}
        ],
    }
    for key, value in (
        ("labels", labels),
        ("annotations", annotations),
        ("finalizers", finalizers),
    ):
        if value:
            metadata[key] = value
    lease = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": metadata,
        "spec": {
            "holderIdentity": name,
            "leaseDurationSeconds": seconds,
            "renewTime": micro_time(renew),
            "acquireTime": micro_time(created),
            "leaseTransitions": transitions,
        },
    }
    assert leaseproto.decode(leaseproto.encode(lease)) == lease


@given(
    tail=st.binary(max_size=200),
    prefix=st.sampled_from(
        [b"", protobuf.MAGIC, leaseproto.encode(new_lease("m", "g", None, 180, NOW))[:60]]
    ),
)
def test_any_bytes_decode_to_a_lease_or_a_protobuf_error(prefix: bytes, tail: bytes) -> None:
    """An answer the codec cannot read is one error the agent handles (back to JSON), never
    an exception of another kind from deep inside the decoder."""
    try:
        lease = leaseproto.decode(prefix + tail)
    except ProtobufError:
        return
    assert lease["kind"] == "Lease"


def test_a_time_out_of_range_is_a_protobuf_error() -> None:
    spec = protobuf.field(4, protobuf.field(1, 2**62))
    raw = protobuf.field(2, spec)
    with pytest.raises(ProtobufError, match="out of range"):
        leaseproto.decode(protobuf.envelope("coordination.k8s.io/v1", "Lease", raw))
