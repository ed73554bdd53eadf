"""AdmissionReview in, AdmissionReview out: the webhook without the network.

Whatever arrives, the answer is a well-formed `admission.k8s.io/v1`
AdmissionReview that allows the request: a malformed review, a request that
is not a pod CREATE, a pod that is not opted in, or an error inside maxtune
all end in `allowed: true` without a patch (fail open). Only a pod that the
rule applies to gets a JSON patch. The result label says which case it was,
for the `maxtune_operator_admission_requests_total` counter.
"""

from __future__ import annotations

import base64
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from maxtune.operator.decision import Decision, decide
from maxtune.operator.fleet import FleetState
from maxtune.operator.patch import build
from maxtune.operator.records import as_dict
from maxtune.operator.wirejson import dumps, loads

log = logging.getLogger(__name__)

Result = Literal["patched", "unchanged", "skipped", "invalid", "error", "not_ready"]
RESULTS: Final[tuple[Result, ...]] = (
    "patched",
    "unchanged",
    "skipped",
    "invalid",
    "error",
    "not_ready",
)
API_VERSIONS: Final = frozenset({"admission.k8s.io/v1", "admission.k8s.io/v1beta1"})
# Enough to find request.uid in a body too large or too broken to parse: the API
# server writes it first inside `request`.
_UID: Final = re.compile(rb'"uid"\s*:\s*"([^"\\]{1,128})"')


@dataclass(frozen=True, slots=True)
class Outcome:
    body: bytes
    result: Result
    decision: Decision | None = None
    reason: str = ""


def _response(
    uid: str, api_version: str, *, patch: list[dict[str, Any]] | None = None, warning: str = ""
) -> bytes:
    response: dict[str, Any] = {"uid": uid, "allowed": True}
    if patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(dumps(patch)).decode("ascii")
    if warning:
        response["warnings"] = [warning]
    return dumps({"apiVersion": api_version, "kind": "AdmissionReview", "response": response})


def salvage_uid(body: bytes) -> str:
    """request.uid from a body that cannot be parsed, so the API server can match the answer."""
    match = _UID.search(body[:65536])
    return match.group(1).decode("ascii", "replace") if match else ""


def allow(body: bytes, result: Result, reason: str) -> Outcome:
    """The fail-open answer to any body, for errors raised before or outside `review`."""
    return Outcome(_response(salvage_uid(body), "admission.k8s.io/v1"), result, reason=reason)


def review(
    body: bytes,
    *,
    fleet: FleetState,
    own_namespace: str | None,
    version: str,
    ready: bool = True,
    now: float | None = None,
) -> Outcome:
    """Answer one AdmissionReview; never raises for anything inside the body."""
    try:
        raw = loads(body)
    except (ValueError, RecursionError):
        return allow(body, "invalid", "body is not JSON")
    if not isinstance(raw, Mapping):
        return allow(body, "invalid", "body is not a JSON object")
    api_version = raw.get("apiVersion")
    if not isinstance(api_version, str) or api_version not in API_VERSIONS:
        api_version = "admission.k8s.io/v1"
    request = raw.get("request")
    if not isinstance(request, Mapping):
        return Outcome(_response("", api_version), "invalid", reason="no request")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        return Outcome(_response("", api_version), "invalid", reason="no request.uid")
    try:
        return _review_request(
            request,
            uid=uid,
            api_version=api_version,
            fleet=fleet,
            own_namespace=own_namespace,
            version=version,
            ready=ready,
            now=time.time() if now is None else now,
        )
    except Exception as exc:  # fail open: an error in maxtune must never block a pod
        log.exception("admission of request %s failed; allowing it unchanged", uid)
        return Outcome(_response(uid, api_version), "error", reason=f"internal error: {exc!r}")


def _review_request(
    request: Mapping[str, Any],
    *,
    uid: str,
    api_version: str,
    fleet: FleetState,
    own_namespace: str | None,
    version: str,
    ready: bool,
    now: float,
) -> Outcome:
    kind = as_dict(request.get("kind"))
    if (
        kind.get("kind") != "Pod"
        or kind.get("group", "") != ""
        or request.get("operation") != "CREATE"
        or request.get("subResource")
    ):
        return Outcome(_response(uid, api_version), "skipped", reason="not a pod CREATE")
    pod = request.get("object")
    if not isinstance(pod, Mapping):
        return Outcome(_response(uid, api_version), "invalid", reason="no request.object")
    namespace = request.get("namespace") or as_dict(pod.get("metadata")).get("namespace")
    if not isinstance(namespace, str) or not namespace:
        return Outcome(_response(uid, api_version), "invalid", reason="no namespace")
    if not ready:
        return Outcome(
            _response(uid, api_version), "not_ready", reason="cluster state not loaded yet"
        )
    decision = decide(
        pod,
        namespace=namespace,
        fleet=fleet,
        own_namespace=own_namespace,
        now=now,
        version=version,
    )
    if not isinstance(decision, Decision):
        return Outcome(_response(uid, api_version), decision.result, reason=decision.reason)
    ops = build(pod, decision)
    result: Result = "patched" if ops else "unchanged"
    return Outcome(_response(uid, api_version, patch=ops), result, decision, decision.reason)
