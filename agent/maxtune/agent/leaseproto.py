"""An agent's heartbeat Lease in Kubernetes' protobuf encoding, to and from its JSON form.

A renewal is the one write every node sends every minute; in protobuf the API server
spends less CPU decoding it and encoding its answer than in JSON
(docs/benchmarks/heartbeatcost.md). The rest of the agent keeps the Lease as the
JSON-shaped dict maxtune.agent.lease builds and reads, so this converts exactly that
form, field by field (coordination/v1 and meta/v1 generated.proto):

- `encode` refuses (`NotEncodable`) a Lease holding anything it does not know, field
  tracking records included, rather than drop it: the caller sends that one as JSON.
- `decode` reads the API server's answer back into the JSON form, the empty values
  Go's encoder always writes left out as JSON leaves them out; a field it does not know
  is a `ProtobufError`, again so that nothing is lost by a PUT of what it read.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from maxtune.kube import protobuf
from maxtune.kube.protobuf import ProtobufError, field, fields, int64, message, number, text

API_VERSION: Final = "coordination.k8s.io/v1"
KIND: Final = "Lease"
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_META_STRINGS: Final = {
    1: "name",
    2: "generateName",
    3: "namespace",
    4: "selfLink",
    5: "uid",
    6: "resourceVersion",
}


class NotEncodable(ValueError):
    """A Lease (or a value in it) this codec does not carry: send it as JSON instead."""


# ------------------------------------------------------------------ times


def _parse_time(value: object) -> datetime:
    if not isinstance(value, str):
        raise NotEncodable(f"a time that is not a string: {value!r}")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise NotEncodable(f"not an RFC 3339 time: {value!r}") from None
    if moment.tzinfo is None:
        raise NotEncodable(f"a time without a zone: {value!r}")
    return moment


def _time(value: object) -> bytes:
    """metav1.Time and MicroTime alike: {seconds, nanos} since the epoch."""
    moment = _parse_time(value)
    seconds = (moment - _EPOCH) // timedelta(seconds=1)
    return field(1, seconds) + field(2, moment.microsecond * 1000)


def _read_time(data: bytes, micro: bool) -> str | None:
    seconds, nanos = 0, 0
    for num, value in fields(data):
        if num == 1:
            seconds = int64(number(value))
        elif num == 2:
            nanos = number(value)
    if not data:  # Go writes a zero time as an empty message
        return None
    try:
        moment = _EPOCH + timedelta(seconds=seconds, microseconds=nanos // 1000)
    except OverflowError:
        raise ProtobufError(f"a time out of range: {seconds} s, {nanos} ns") from None
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ")


# ------------------------------------------------------------------ encoding


def _string(value: object) -> str:
    if not isinstance(value, str):
        raise NotEncodable(f"a string field holds {value!r}")
    return value


def _integer(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise NotEncodable(f"an integer field holds {value!r}")
    return value


def _boolean(value: object) -> int:
    if not isinstance(value, bool):
        raise NotEncodable(f"a boolean field holds {value!r}")
    return int(value)


def _string_map(value: object) -> list[bytes]:
    if not isinstance(value, Mapping):
        raise NotEncodable(f"a map field holds {value!r}")
    return [field(1, _string(k)) + field(2, _string(v)) for k, v in sorted(value.items())]


def _strings(value: object) -> list[bytes]:
    if not isinstance(value, list):
        raise NotEncodable(f"a list field holds {value!r}")
    return [_string(item).encode() for item in value]


_OWNER: Final[dict[str, tuple[int, Callable[[object], int | str | bytes]]]] = {
    "kind": (1, _string),
    "name": (3, _string),
    "uid": (4, _string),
    "apiVersion": (5, _string),
    "controller": (6, _boolean),
    "blockOwnerDeletion": (7, _boolean),
}


def _message(value: object, schema: Mapping[str, tuple[int, Any]], what: str) -> bytes:
    if not isinstance(value, Mapping):
        raise NotEncodable(f"{what} is not an object: {value!r}")
    out = bytearray()
    for key, item in value.items():
        if item is None:
            continue
        if key not in schema:
            raise NotEncodable(f"{what}.{key} is not carried in protobuf here")
        num, encode = schema[key]
        encoded = encode(item)
        for part in encoded if isinstance(encoded, list) else [encoded]:
            out += field(num, part)
    return bytes(out)


def _owners(value: object) -> list[bytes]:
    if not isinstance(value, list):
        raise NotEncodable(f"ownerReferences holds {value!r}")
    return [_message(owner, _OWNER, "ownerReference") for owner in value]


def _managed_fields(value: object) -> list[bytes]:
    """Only the empty entry that clears the record (maxtune.agent.lease.CLEAR_MANAGED_FIELDS)."""
    if value != [{}]:
        raise NotEncodable("a field-tracking record (managedFields) is not carried here")
    return [b""]


_METADATA: Final[dict[str, tuple[int, Callable[[object], Any]]]] = {
    "name": (1, _string),
    "generateName": (2, _string),
    "namespace": (3, _string),
    "selfLink": (4, _string),
    "uid": (5, _string),
    "resourceVersion": (6, _string),
    "generation": (7, _integer),
    "creationTimestamp": (8, _time),
    "deletionTimestamp": (9, _time),
    "deletionGracePeriodSeconds": (10, _integer),
    "labels": (11, _string_map),
    "annotations": (12, _string_map),
    "ownerReferences": (13, _owners),
    "finalizers": (14, _strings),
    "managedFields": (17, _managed_fields),
}

_SPEC: Final[dict[str, tuple[int, Callable[[object], Any]]]] = {
    "holderIdentity": (1, _string),
    "leaseDurationSeconds": (2, _integer),
    "acquireTime": (3, _time),
    "renewTime": (4, _time),
    "leaseTransitions": (5, _integer),
    "strategy": (6, _string),
    "preferredHolder": (7, _string),
}


def encode(lease: Mapping[str, Any]) -> bytes:
    """The Lease's JSON form as the body of a protobuf request; NotEncodable if it holds
    anything this does not carry."""
    if lease.get("apiVersion", API_VERSION) != API_VERSION or lease.get("kind", KIND) != KIND:
        raise NotEncodable(f"not a {API_VERSION} {KIND}")
    extra = set(lease) - {"apiVersion", "kind", "metadata", "spec"}
    if extra:
        raise NotEncodable(f"Lease fields not carried here: {sorted(extra)}")
    raw = field(1, _message(lease.get("metadata") or {}, _METADATA, "metadata"))
    raw += field(2, _message(lease.get("spec") or {}, _SPEC, "spec"))
    return protobuf.envelope(API_VERSION, KIND, raw)


# ------------------------------------------------------------------ decoding


def _pair(data: bytes) -> tuple[str, str]:
    key, value = "", ""
    for num, item in fields(data):
        if num == 1:
            key = text(item)
        elif num == 2:
            value = text(item)
    return key, value


def _read_owner(data: bytes) -> dict[str, Any]:
    names = {num: key for key, (num, _) in _OWNER.items()}
    owner: dict[str, Any] = {}
    for num, value in fields(data):
        key = names.get(num)
        if key is None:
            raise ProtobufError(f"ownerReference field {num} is not known here")
        owner[key] = bool(number(value)) if num in (6, 7) else text(value)
    return owner


def _read_metadata(data: bytes) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for num, value in fields(data):
        if num in _META_STRINGS:
            if said := text(value):  # Go writes empty strings, JSON leaves them out
                meta[_META_STRINGS[num]] = said
        elif num == 7:
            if generation := int64(number(value)):
                meta["generation"] = generation
        elif num in (8, 9):
            moment = _read_time(message(value), micro=False)
            if moment is not None:
                meta["creationTimestamp" if num == 8 else "deletionTimestamp"] = moment
        elif num == 10:
            meta["deletionGracePeriodSeconds"] = int64(number(value))
        elif num in (11, 12):
            key, item = _pair(message(value))
            meta.setdefault("labels" if num == 11 else "annotations", {})[key] = item
        elif num == 13:
            meta.setdefault("ownerReferences", []).append(_read_owner(message(value)))
        elif num == 14:
            meta.setdefault("finalizers", []).append(text(value))
        elif num == 17:
            # Kept only as present: a renewal clears the record (maxtune.agent.lease.renewal)
            # and `encode` carries nothing else of it.
            meta.setdefault("managedFields", []).append({"recorded": True})
        else:
            raise ProtobufError(f"metadata field {num} is not known here")
    return meta


def _read_spec(data: bytes) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    for num, value in fields(data):
        if num in (1, 6, 7):
            spec[{1: "holderIdentity", 6: "strategy", 7: "preferredHolder"}[num]] = text(value)
        elif num in (2, 5):
            spec["leaseDurationSeconds" if num == 2 else "leaseTransitions"] = int64(number(value))
        elif num in (3, 4):
            moment = _read_time(message(value), micro=True)
            if moment is not None:
                spec["acquireTime" if num == 3 else "renewTime"] = moment
        else:
            raise ProtobufError(f"Lease spec field {num} is not known here")
    return spec


def decode(data: bytes) -> dict[str, Any]:
    """The API server's protobuf answer as the Lease's JSON form."""
    api_version, kind, raw = protobuf.unwrap(data)
    if (api_version, kind) != (API_VERSION, KIND):
        raise ProtobufError(f"an answer of {api_version} {kind}, not a {API_VERSION} {KIND}")
    lease: dict[str, Any] = {"apiVersion": API_VERSION, "kind": KIND, "metadata": {}, "spec": {}}
    for num, value in fields(raw):
        if num == 1:
            lease["metadata"] = _read_metadata(message(value))
        elif num == 2:
            lease["spec"] = _read_spec(message(value))
        else:
            raise ProtobufError(f"Lease field {num} is not known here")
    return lease
