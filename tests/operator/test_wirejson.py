"""The webhook's JSON codec reads and writes what the standard library does, only faster.

msgspec refuses inputs `json` accepts (NaN, numbers past a double, lone surrogates, a
byte-order mark, UTF-16); the codec must give `json`'s answer for each, or a review would
be read differently depending on which parser took it. Each case below is one msgspec
refuses.
"""

from __future__ import annotations

import json
import math
from typing import Any

import msgspec
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from maxtune.operator import wirejson
from tests.fuzz.checks import same_json
from tests.fuzz.strategies import finite_json_values, json_values

# Inputs msgspec alone refuses and `json` reads: each must read as `json` reads it.
MSGSPEC_REFUSES = [
    b'{"a": NaN}',
    b'{"a": [Infinity, -Infinity]}',
    b"[1.7976931348623159e308]",
    b'{"s": "\\ud800"}',
    b'"\\udc00\\ud800"',
    b"\xef\xbb\xbf[1]",
    '{"a": "名前"}'.encode("utf-16"),
]


@pytest.mark.parametrize("body", MSGSPEC_REFUSES, ids=range(len(MSGSPEC_REFUSES)))
def test_what_msgspec_refuses_reads_as_json_reads_it(body: bytes) -> None:
    with pytest.raises(msgspec.DecodeError):
        msgspec.json.decode(body)  # the case is real: msgspec alone would refuse it
    assert same_json(wirejson.loads(body), json.loads(body))


def test_integers_of_any_size_stay_integers() -> None:
    """orjson reads integers past 64 bits as floats, silently: why msgspec was taken."""
    body = b'{"n": 123456789012345678901234567890, "m": -18446744073709551617}'
    assert wirejson.loads(body) == {"n": 123456789012345678901234567890, "m": -(2**64) - 1}


def test_nan_reads_as_a_float_nan() -> None:
    assert math.isnan(wirejson.loads(b'{"a": NaN}')["a"])


@pytest.mark.parametrize("body", [b"", b"{", b'{"a": }', b"\xff\xfe", b'{"a": 1} x'])
def test_broken_json_raises_what_json_raises(body: bytes) -> None:
    with pytest.raises(ValueError):
        json.loads(body)
    with pytest.raises(ValueError):
        wirejson.loads(body)


def test_nesting_too_deep_for_json_too_raises_recursion_error() -> None:
    body = b"[" * 200_000 + b"]" * 200_000
    with pytest.raises(RecursionError):
        json.loads(body)
    with pytest.raises(RecursionError):
        wirejson.loads(body)


@given(value=json_values, ascii_only=st.booleans())
def test_any_json_text_reads_the_same(value: Any, ascii_only: bool) -> None:
    """Escaped text, and raw UTF-8 as the API server writes it (Go's encoder escapes only
    <, >, & and line separators); a lone surrogate written raw is not UTF-8, which `json`
    still reads (it decodes bytes with surrogatepass) and msgspec refuses."""
    text = json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    assert same_json(wirejson.loads(text), json.loads(text))


# Found by CI on 2026-12-02: a Python string holding a surrogate pair as two code points
# is written as two escapes, which any JSON reader joins into one character. `json` does
# the same, so the oracle is what `json` writes, read back, not the value itself.
@given(value=finite_json_values, sort_keys=st.booleans())
@example(value={"\ud801": None, "\ud800\udc00": None}, sort_keys=False)
def test_what_it_writes_reads_as_what_json_writes(value: Any, sort_keys: bool) -> None:
    written = wirejson.dumps(value, sort_keys=sort_keys)
    expected = json.dumps(value, separators=(",", ":"), sort_keys=sort_keys)
    assert same_json(json.loads(written), json.loads(expected))


def test_writes_compact_sorted_utf8() -> None:
    value = {"b": [1, 2], "a": "名前", "c": {"y": None, "x": True}}
    assert wirejson.dumps(value, sort_keys=True) == (
        '{"a":"名前","b":[1,2],"c":{"x":true,"y":null}}'.encode()
    )
    assert wirejson.dumps(value) == '{"b":[1,2],"a":"名前","c":{"y":null,"x":true}}'.encode()


def test_what_msgspec_cannot_write_is_written_by_json() -> None:
    value = {"s": "\ud800"}
    with pytest.raises(UnicodeEncodeError):
        msgspec.json.encode(value)
    assert wirejson.dumps(value) == b'{"s":"\\ud800"}'
    assert json.loads(wirejson.dumps(value)) == value


def test_nan_is_written_as_null_not_as_invalid_json() -> None:
    assert wirejson.dumps({"a": float("nan"), "b": float("inf")}) == b'{"a":null,"b":null}'


def test_what_neither_can_write_raises() -> None:
    with pytest.raises(TypeError):
        wirejson.dumps({"a": object()})
