"""The few facts the operator keeps about each cluster object, read from raw API bodies.

Watch events carry whole objects; a 2,000-node fleet must not keep 2,000 full
Node bodies (status images, conditions, addresses) in memory. Each reader here
keeps exactly what the labeller and the webhook decide from, as small frozen
records, and never raises on odd input: a malformed object yields a record
that simply offers nothing.
"""

from __future__ import annotations

import hashlib
import logging
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from pydantic import TypeAdapter, ValidationError

from maxtune.contract.models import AutotunePolicy, Gpu, ProfileStatus
from maxtune.contract.names import INJECT_NAMESPACE_ON, LABEL_INJECT, PREFIX, is_gpu_resource
from maxtune.operator.quantity import parse_count

log = logging.getLogger(__name__)

# Taints that keep pods away at scheduling time; PreferNoSchedule is only a preference.
HARD_EFFECTS: Final = frozenset({"NoSchedule", "NoExecute"})
UNSCHEDULABLE_TAINT: Final = "node.kubernetes.io/unschedulable"
_GPUS: Final = TypeAdapter(list[Gpu])


def as_dict(value: object) -> Mapping[str, Any]:
    """`value` if it is a JSON object, else an empty one (odd input never raises)."""
    if type(value) is dict:  # what a JSON parser returns: skips the ABC check (hot path)
        return value
    return value if isinstance(value, Mapping) else {}


def as_list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def resource_version_number(rv: str) -> int | None:
    """etcd-backed API servers issue increasing integers; None when this one does not."""
    return int(rv) if rv.isdigit() else None


@dataclass(frozen=True, slots=True)
class Taint:
    key: str
    value: str
    effect: str


@dataclass(frozen=True, slots=True)
class NodeRecord:
    name: str
    uid: str
    resource_version: str
    labels: Mapping[str, str]
    taints: tuple[Taint, ...]  # NoSchedule/NoExecute only (cordon included)
    gpus: Mapping[str, int]  # allocatable GPU resources with a positive count

    def maxtune_labels(self) -> dict[str, str]:
        return {k: v for k, v in self.labels.items() if k.startswith(PREFIX)}

    def same_shape(self, other: NodeRecord) -> bool:
        """Equal in everything the operator decides from (resourceVersion aside)."""
        return (
            self.labels == other.labels
            and self.taints == other.taints
            and self.gpus == other.gpus
            and self.uid == other.uid
        )


def read_node(body: Mapping[str, Any]) -> NodeRecord | None:
    meta = as_dict(body.get("metadata"))
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        return None
    labels = {k: v for k, v in as_dict(meta.get("labels")).items() if isinstance(v, str)}
    spec = as_dict(body.get("spec"))
    taints: list[Taint] = []
    for raw in as_list(spec.get("taints")):
        taint = as_dict(raw)
        effect = taint.get("effect")
        if effect in HARD_EFFECTS:
            taints.append(
                Taint(str(taint.get("key") or ""), str(taint.get("value") or ""), str(effect))
            )
    if spec.get("unschedulable") is True and not any(t.key == UNSCHEDULABLE_TAINT for t in taints):
        taints.append(Taint(UNSCHEDULABLE_TAINT, "", "NoSchedule"))
    gpus: dict[str, int] = {}
    for resource, quantity in as_dict(as_dict(body.get("status")).get("allocatable")).items():
        if isinstance(resource, str) and is_gpu_resource(resource):
            count = parse_count(quantity)
            if count:
                gpus[resource] = count
    return NodeRecord(
        name=name,
        uid=str(meta.get("uid") or ""),
        resource_version=str(meta.get("resourceVersion") or ""),
        labels=labels,
        taints=tuple(sorted(taints, key=lambda t: (t.key, t.value, t.effect))),
        gpus=gpus,
    )


@dataclass(frozen=True, slots=True)
class ProfileRecord:
    """A profile, with its validated status kept packed.

    A validated `ProfileStatus` of 8 measured GPUs is ~50 KB of Python objects;
    2,000 of them would be the largest thing in the operator. Everything the
    hot paths need is derived once and cached in FleetState, so the status is
    kept as compressed canonical JSON (~3 KB) and parsed again only when a
    derivation is missing (a new policy, a device change).
    """

    name: str
    uid: str
    resource_version: str
    node_name: str
    packed: bytes | None  # zlib(JSON of the validated status); None: no usable status
    devices: str  # digest of the GPUs and their measurements: equal means nothing derived changes
    heartbeat: float | None  # POSIX seconds of status.heartbeatTime
    problem: str | None  # why the status could not be used, for `maxtune status`

    @property
    def has_status(self) -> bool:
        return self.packed is not None

    @property
    def status(self) -> ProfileStatus | None:
        if self.packed is None:
            return None
        return ProfileStatus.model_validate_json(zlib.decompress(self.packed))


def read_profile(body: Mapping[str, Any]) -> ProfileRecord | None:
    meta = as_dict(body.get("metadata"))
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        return None
    node_name = as_dict(body.get("spec")).get("nodeName")
    raw_status = body.get("status")
    status: ProfileStatus | None = None
    problem: str | None = None
    if raw_status is None:
        problem = "no status yet"
    else:
        try:
            status = ProfileStatus.model_validate(raw_status)
        except ValidationError as exc:
            problem = f"status does not validate: {exc.error_count()} error(s)"
            log.warning("GPUNodeProfile %s: %s", name, problem)
    packed, devices = None, ""
    if status is not None:
        packed = zlib.compress(status.model_dump_json(by_alias=True, exclude_none=True).encode(), 1)
        # pydantic's own encoder (its field order is fixed): a tenth of the CPU of json.dumps
        # over each GPU's wire() dict, the largest cost of reading a profile before.
        gpus = _GPUS.dump_json(status.gpus, by_alias=True, exclude_none=True)
        devices = hashlib.blake2b(gpus, digest_size=16).hexdigest()
    return ProfileRecord(
        name=name,
        uid=str(meta.get("uid") or ""),
        resource_version=str(meta.get("resourceVersion") or ""),
        node_name=node_name if isinstance(node_name, str) and node_name else name,
        packed=packed,
        devices=devices,
        heartbeat=status.heartbeat_time.timestamp() if status is not None else None,
        problem=problem,
    )


def read_policy(body: Mapping[str, Any]) -> AutotunePolicy | None:
    try:
        return AutotunePolicy.model_validate(dict(body))
    except ValidationError as exc:
        name = as_dict(body.get("metadata")).get("name")
        log.warning("AutotunePolicy %s ignored: %s", name, exc)
        return None


def namespace_opted_in(labels: Mapping[str, Any]) -> bool:
    return labels.get(LABEL_INJECT) == INJECT_NAMESPACE_ON


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """An agent's heartbeat Lease: named after its node, renewed every agent interval."""

    node_name: str
    renewed: float | None  # POSIX seconds of spec.renewTime; None: never renewed


def read_lease(body: Mapping[str, Any]) -> LeaseRecord | None:
    meta = as_dict(body.get("metadata"))
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        return None
    raw = as_dict(body.get("spec")).get("renewTime")
    renewed: float | None = None
    if isinstance(raw, str):
        try:
            renewed = datetime.fromisoformat(raw).timestamp()
        except ValueError:
            log.warning("Lease %s: renewTime %r is not a date-time", name, raw[:64])
    return LeaseRecord(node_name=name, renewed=renewed)
