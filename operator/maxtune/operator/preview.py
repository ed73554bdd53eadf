"""`maxtune mutate`: the webhook's answer for one pod manifest, before anything is applied.

Besides the patched pod and the decision it says what it decided from (how many
profiles and nodes, read from where, judged as of when) and, when no node remains
for the pod or none has a current profile, what excluded them (exclusion.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import jsonpatch
import yaml

from maxtune.cli.version import VERSION
from maxtune.kube import Kube
from maxtune.operator.decision import Decision, decide
from maxtune.operator.exclusion import Explanation, explain
from maxtune.operator.fleet import FleetState
from maxtune.operator.gpurequests import gpu_containers, pod_needs
from maxtune.operator.offline import (
    USER_AGENT,
    ManifestError,
    documents,
    fleet_from_cluster,
    fleet_from_profiles,
    iso,
    parse_as_of,
)
from maxtune.operator.patch import build
from maxtune.operator.records import as_dict
from maxtune.operator.selection import read_placement


class MutateError(Exception):
    """Bad input to `maxtune mutate`; the message says what to fix."""


def parse_labels(text: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise MutateError(f"--namespace-labels: {part!r} is not key=value")
        labels[key] = value
    return labels


def _load_pod(path: Path) -> dict[str, Any]:
    if str(path) == "-":
        docs = [d for d in yaml.safe_load_all(sys.stdin.read()) if d is not None]
    else:
        try:
            docs = list(documents(path))
        except ManifestError as exc:
            raise MutateError(str(exc)) from None
    pods = [d for d in docs if isinstance(d, dict) and d.get("kind") == "Pod"]
    if len(pods) != 1:
        raise MutateError(f"{path}: expected exactly one Pod manifest, found {len(pods)}")
    return pods[0]


@dataclass(frozen=True, slots=True)
class Preview:
    """The fleet a preview decides against, the time it judges profiles at, and its source."""

    fleet: FleetState
    now: float
    source: dict[str, Any] = field(default_factory=dict)
    header: str = ""


def _cluster_source(fleet: FleetState, as_of: float | None) -> dict[str, Any]:
    return {
        "kind": "cluster",
        "profiles": len(fleet.profiles),
        "nodes": len(fleet.nodes),
        "asOf": iso(as_of) if as_of is not None else None,
    }


def _cluster_header(source: dict[str, Any]) -> str:
    when = f"judged as of {source['asOf']}" if source["asOf"] else "judged as of now"
    return (
        f"read {source['profiles']} GPUNodeProfile(s) and {source['nodes']} node(s) "
        f"from the cluster; {when}"
    )


def mutate_command(args: argparse.Namespace, out: IO[str]) -> int:
    from maxtune.contract.names import LABEL_INJECT  # noqa: PLC0415
    from maxtune.operator.records import namespace_opted_in  # noqa: PLC0415

    pod = _load_pod(args.pod)
    try:
        as_of = parse_as_of(args.as_of) if args.as_of is not None else None
        if args.profiles is not None:
            fleet, read = fleet_from_profiles(args.profiles, args.policy, as_of=as_of)
            source, header = read.wire(), read.header()
        else:
            fleet = fleet_from_cluster(
                Kube.connect(args.kubeconfig, user_agent=USER_AGENT), args.policy
            )
            source = _cluster_source(fleet, as_of)
            header = _cluster_header(source)
    except ManifestError as exc:
        raise MutateError(str(exc)) from None
    namespace = args.namespace or (pod.get("metadata") or {}).get("namespace") or "default"
    labels = parse_labels(args.namespace_labels)
    if args.namespace_labels or args.profiles is not None:
        fleet.set_namespace(namespace, opted_in=namespace_opted_in(labels))
    preview = Preview(
        fleet=fleet,
        now=as_of if as_of is not None else time.time(),
        source=source,
        header=header,
    )
    return render(pod, namespace, preview, out, as_json=args.json, inject_key=LABEL_INJECT)


def placement_of(pod: dict[str, Any], namespace: str, preview: Preview) -> Explanation | None:
    """Where the pod may land and what excluded the rest; None for a pod without GPUs."""
    spec = as_dict(pod.get("spec"))
    containers = gpu_containers(spec)
    if not containers:
        return None
    policy = preview.fleet.policy_for(namespace)
    return explain(
        preview.fleet,
        read_placement(spec),
        pod_needs(containers),
        now=preview.now,
        stale_after_seconds=policy.spec.stale_after_seconds,
    )


def render(
    pod: dict[str, Any],
    namespace: str,
    preview: Preview,
    out: IO[str],
    *,
    as_json: bool,
    inject_key: str,
) -> int:
    fleet = preview.fleet
    result = decide(
        pod, namespace=namespace, fleet=fleet, own_namespace=None, now=preview.now, version=VERSION
    )
    placement = placement_of(pod, namespace, preview) if isinstance(result, Decision) else None
    if isinstance(result, Decision):
        ops = build(pod, result)
        patched = jsonpatch.apply_patch(pod, ops)  # RFC 6902, as the API server applies it
        decision: dict[str, Any] = json.loads(result.annotation())
    else:
        ops, patched = [], pod
        decision = {"mutated": False, "reason": result.reason}
    if as_json:
        body: dict[str, Any] = {"pod": patched, "patch": ops, "decision": decision}
        if preview.source:
            body["source"] = preview.source
        if placement is not None:
            body["placement"] = placement.wire()
        json.dump(body, out, indent=2)
        out.write("\n")
        return 0
    if preview.header:
        out.write(f"# maxtune mutate: {preview.header}\n")
    yaml.safe_dump(patched, out, sort_keys=False)
    out.write(f"# maxtune decision: {json.dumps(decision, sort_keys=True)}\n")
    if placement is not None and (not placement.remaining or _none_current(placement)):
        out.write(f"# placement: {placement.text}\n")
    out.write(f"# {len(ops)} JSON patch operation(s)")
    if not isinstance(result, Decision) and result.reason == "not opted in":
        out.write(f" (label the pod {inject_key}=true, or its namespace {inject_key}=enabled)")
    out.write("\n")
    return 0


def _none_current(placement: Explanation) -> bool:
    return placement.profiles is not None and placement.profiles.current == 0
