"""Kubernetes' protobuf encoding as far as maxtune speaks it: wire format, envelope, Status.

The API server takes and gives built-in kinds (a Lease) as protobuf as well as JSON, and
decodes and encodes protobuf for a fraction of JSON's CPU: under agents' Lease renewals,
decoding the JSON request and encoding the JSON answer were about 8% of kube-apiserver's
samples (docs/benchmarks/heartbeatcost.md), on the one write every node sends every minute.
The `kubernetes` package has no protobuf models, and the `protobuf` runtime plus generated
code for a 600-byte message would be far more than the wire format needs: varints and
length-delimited fields, written and read here directly.

Bodies are `MAGIC` followed by a runtime.Unknown: the object's apiVersion and kind, and its
own message as `raw` (k8s.io/apimachinery/pkg/runtime/serializer/protobuf).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

MEDIA_TYPE: Final = "application/vnd.kubernetes.protobuf"
MAGIC: Final = b"k8s\x00"
_VARINT: Final = 0
_FIXED64: Final = 1
_BYTES: Final = 2
_FIXED32: Final = 5
_WIDTHS: Final = {_FIXED64: 8, _FIXED32: 4}


class ProtobufError(ValueError):
    """Bytes that are not the protobuf they should be (truncated, wrong magic, bad wire type)."""


def varint(number: int) -> bytes:
    """An unsigned varint; a negative int64 as its 64-bit two's complement, as protobuf does."""
    if number < 0:
        number += 1 << 64
    out = bytearray()
    while True:
        low, number = number & 0x7F, number >> 7
        if number:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def field(number: int, value: int | bytes | str) -> bytes:
    """One field: an int as a varint, bytes and str (UTF-8) length-delimited."""
    if isinstance(value, int):
        return varint(number << 3 | _VARINT) + varint(value)
    data = value.encode() if isinstance(value, str) else value
    return varint(number << 3 | _BYTES) + varint(len(data)) + data


def _read_varint(data: bytes, at: int) -> tuple[int, int]:
    number, shift = 0, 0
    while True:
        if at >= len(data) or shift > 63:
            raise ProtobufError("truncated or overlong varint")
        byte = data[at]
        number |= (byte & 0x7F) << shift
        at, shift = at + 1, shift + 7
        if not byte & 0x80:
            return number, at


def fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """Every field of one message in order: (number, int for varints, bytes otherwise)."""
    at = 0
    while at < len(data):
        key, at = _read_varint(data, at)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ProtobufError("field number 0")
        if wire == _VARINT:
            value, at = _read_varint(data, at)
            yield number, value
        elif wire == _BYTES:
            size, at = _read_varint(data, at)
            if at + size > len(data):
                raise ProtobufError(f"field {number} runs past the end of its message")
            yield number, data[at : at + size]
            at += size
        elif wire in _WIDTHS:
            width = _WIDTHS[wire]
            if at + width > len(data):
                raise ProtobufError(f"field {number} runs past the end of its message")
            yield number, data[at : at + width]
            at += width
        else:
            raise ProtobufError(f"field {number} has wire type {wire} (groups are not used)")


def int64(value: int) -> int:
    """A varint read back as the signed int64 it was written as."""
    return value - (1 << 64) if value >= 1 << 63 else value


def text(value: int | bytes) -> str:
    if not isinstance(value, bytes):
        raise ProtobufError("a string field holds a varint")
    try:
        return value.decode()
    except UnicodeDecodeError as exc:
        raise ProtobufError(f"a string field is not UTF-8: {exc}") from None


def message(value: int | bytes) -> bytes:
    if not isinstance(value, bytes):
        raise ProtobufError("a message field holds a varint")
    return value


def number(value: int | bytes) -> int:
    if not isinstance(value, int):
        raise ProtobufError("a number field holds bytes")
    return value


def envelope(api_version: str, kind: str, raw: bytes) -> bytes:
    """An object's message as the API server takes it: magic, then a runtime.Unknown."""
    type_meta = field(1, api_version) + field(2, kind)
    return MAGIC + field(1, type_meta) + field(2, raw)


def unwrap(data: bytes) -> tuple[str, str, bytes]:
    """(apiVersion, kind, the object's message) of a body the API server sent."""
    if not data.startswith(MAGIC):
        raise ProtobufError("not Kubernetes protobuf (no k8s magic)")
    api_version, kind, raw = "", "", b""
    for number, value in fields(data[len(MAGIC) :]):
        if number == 1:
            for inner, part in fields(message(value)):
                if inner == 1:
                    api_version = text(part)
                elif inner == 2:
                    kind = text(part)
        elif number == 2:
            raw = message(value)
    return api_version, kind, raw


def status(data: bytes) -> tuple[str, str]:
    """(reason, message) of a metav1.Status body: what an error answer says, in protobuf."""
    _, kind, raw = unwrap(data)
    if kind != "Status":
        raise ProtobufError(f"an error answer of kind {kind or '(none)'}, not Status")
    reason, said = "", ""
    for number, value in fields(raw):
        if number == 3:
            said = text(value)
        elif number == 4:
            reason = text(value)
    return reason, said
