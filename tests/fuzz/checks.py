"""What every answer of the webhook must satisfy, whatever it was sent.

Shared by the in-process fuzzing (volume) and the fuzzing over TLS of the running operator:
- a well-formed AdmissionReview that allows the request, echoing `request.uid` when the request
  carried a usable one (a string of up to 128 characters without quotes or backslashes can be
  salvaged even from a body that does not parse);
- a patch only as a JSON patch of `add` operations, at the places the webhook owns (env of a
  container, node affinity, its annotation), that applies to the object it was computed for;
- the user's variables untouched, containers that request no GPU untouched, ephemeral
  containers untouched;
- idempotent: the webhook over its own output adds nothing.
"""

from __future__ import annotations

import base64
import copy
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

import jsonpatch

from tests.fuzz.strategies import review

Ask = Callable[[bytes], bytes]
ALLOWED_PATHS = re.compile(
    r"^/(spec/(containers|initContainers)/\d+/env(/-)?"
    r"|spec/affinity(/nodeAffinity(/requiredDuringSchedulingIgnoredDuringExecution"
    r"(/nodeSelectorTerms(/-|/\d+(/matchExpressions(/-)?)?)?)?)?)?"
    r"|metadata/annotations(/maxtune.io~1decision)?)$"
)


def parse_answer(raw: bytes) -> dict[str, Any]:
    answer = json.loads(raw)
    assert answer["kind"] == "AdmissionReview", answer
    assert answer["apiVersion"] in ("admission.k8s.io/v1", "admission.k8s.io/v1beta1"), answer
    response = answer["response"]
    assert response["allowed"] is True, answer
    assert isinstance(response["uid"], str), answer
    return dict(answer)


def patch_ops(answer: Mapping[str, Any]) -> list[dict[str, Any]]:
    response = answer["response"]
    if "patch" not in response:
        assert "patchType" not in response
        return []
    assert response["patchType"] == "JSONPatch"
    ops = json.loads(base64.b64decode(response["patch"], validate=True))
    assert isinstance(ops, list) and ops, ops
    return ops


def _env_of(container: Any) -> dict[str, Any]:
    """The first entry per variable name (what a container sees), for well-formed entries."""
    found: dict[str, Any] = {}
    if isinstance(container, Mapping) and isinstance(container.get("env"), list):
        for entry in container["env"]:
            if isinstance(entry, Mapping) and isinstance(entry.get("name"), str):
                found.setdefault(entry["name"], dict(entry))
    return found


def _mentions_gpu(container: Any) -> bool:
    text = json.dumps(container.get("resources") if isinstance(container, Mapping) else None)
    return "nvidia.com/" in text


def same_json(a: Any, b: Any) -> bool:
    """Equal as JSON text: a NaN left alone is the same NaN, though NaN != NaN; and 1, 1.0 and
    True differ, though Python's == takes them for equal."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def check_patch(obj: Any, ops: list[dict[str, Any]]) -> Any:
    """Apply `ops` to `obj` (it must fit) and check they stay in the webhook's own places."""
    for op in ops:
        assert op["op"] == "add", op
        assert ALLOWED_PATHS.match(op["path"]), op["path"]
    patched = jsonpatch.apply_patch(copy.deepcopy(obj), ops)
    spec, after = obj.get("spec"), patched.get("spec")
    if isinstance(spec, Mapping):
        for kind in ("containers", "initContainers"):
            before_list, after_list = spec.get(kind), after.get(kind)
            if not isinstance(before_list, list):
                continue
            for old, new in zip(before_list, after_list, strict=True):
                if not _mentions_gpu(old):
                    assert same_json(new, old), f"a container without GPUs was changed: {kind}"
                env_after = _env_of(new)
                for name, entry in _env_of(old).items():
                    assert env_after[name] == entry, f"user variable {name} was changed"
        assert same_json(after.get("ephemeralContainers"), spec.get("ephemeralContainers"))
    return patched


def expected_uid(body: bytes) -> str | None:
    """request.uid when the body is a JSON object whose request carries a non-empty string uid;
    else, for a body too broken to parse, the uid that can be salvaged from its text."""
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        match = re.search(rb'"uid"\s*:\s*"([^"\\]{1,128})"', body[:65536])
        return match.group(1).decode("ascii", "replace") if match else None
    request = parsed.get("request") if isinstance(parsed, Mapping) else None
    uid = request.get("uid") if isinstance(request, Mapping) else None
    return uid if isinstance(uid, str) and uid else None


def check_review(body: bytes, uid: Any, obj: Any, ask: Ask, namespace: Any = "team") -> str:
    """Send `body`, check the answer; if it patched, check the patch and a second pass."""
    answer = parse_answer(ask(body))
    if expected_uid(body) is not None:
        assert answer["response"]["uid"] == expected_uid(body), (answer["response"]["uid"], uid)
    ops = patch_ops(answer)
    if not ops:
        return "no patch"
    patched = check_patch(obj, ops)
    again = parse_answer(ask(json.dumps(review(patched, uid=uid, namespace=namespace)).encode()))
    assert patch_ops(again) == [], "a second pass over the webhook's own output must add nothing"
    return "patched"
