"""JSON for the webhook's hot path: msgspec where it can, the standard library where it cannot.

Every admission decodes a review of a few KB and encodes three small documents (the
decision annotation, the patch, the answer); with the standard library that was a third
of the handler's CPU. msgspec does the same in a fraction of the time, but it is stricter
than `json` on input: it refuses NaN and Infinity literals, numbers beyond a double, lone
UTF-16 surrogates, a byte-order mark and UTF-16/32 text. The API server never sends those
(Go's encoder cannot write them), but the webhook answers whatever reaches it, and a review
must read the same whichever parser took it: anything msgspec refuses is read again by
`json`, with `json`'s meaning and errors. Where msgspec accepts, it reads what `json` reads
(integers of any size stay integers; orjson, which reads those beyond 64 bits as floats,
was not taken for that reason). tests/operator/test_wirejson.py holds both to it.
"""

from __future__ import annotations

import json
from typing import Any, Final

import msgspec

_DECODE: Final = msgspec.json.Decoder()
_ENCODE: Final = msgspec.json.Encoder()
_ENCODE_SORTED: Final = msgspec.json.Encoder(order="sorted")


def loads(body: bytes) -> Any:
    """`json.loads(body)`, faster; raises what `json.loads` raises (ValueError, RecursionError)."""
    try:
        return _DECODE.decode(body)
    except msgspec.DecodeError:
        return json.loads(body)


def dumps(value: Any, *, sort_keys: bool = False) -> bytes:
    """Compact JSON (`separators=(",", ":")`) as UTF-8 bytes, for the webhook's own documents.

    Non-ASCII characters are written as UTF-8, not as `\\u` escapes: the same JSON to any
    reader. A float NaN or infinity is written as `null` (`json` would write `NaN`, which
    no JSON parser, the API server's included, accepts). What msgspec cannot encode (a
    string with a lone surrogate, read from a review by the fallback above) is encoded by
    `json`, which raises for what neither can.
    """
    try:
        return (_ENCODE_SORTED if sort_keys else _ENCODE).encode(value)
    except (TypeError, ValueError):  # UnicodeEncodeError, msgspec.EncodeError
        return json.dumps(value, separators=(",", ":"), sort_keys=sort_keys).encode()


__all__ = ["dumps", "loads"]
