"""`maxtune mutate`: the webhook's answer for one pod manifest, before anything is applied."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import IO, Any

import jsonpatch
import yaml

from maxtune.cli.version import VERSION
from maxtune.kube import Kube
from maxtune.operator.decision import Decision, decide
from maxtune.operator.fleet import FleetState
from maxtune.operator.offline import (
    USER_AGENT,
    ManifestError,
    documents,
    fleet_from_cluster,
    fleet_from_profiles,
)
from maxtune.operator.patch import build


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


def mutate_command(args: argparse.Namespace, out: IO[str]) -> int:
    from maxtune.contract.names import LABEL_INJECT  # noqa: PLC0415
    from maxtune.operator.records import namespace_opted_in  # noqa: PLC0415

    pod = _load_pod(args.pod)
    try:
        if args.profiles is not None:
            fleet = fleet_from_profiles(args.profiles, args.policy)
        else:
            fleet = fleet_from_cluster(
                Kube.connect(args.kubeconfig, user_agent=USER_AGENT), args.policy
            )
    except ManifestError as exc:
        raise MutateError(str(exc)) from None
    namespace = args.namespace or (pod.get("metadata") or {}).get("namespace") or "default"
    labels = parse_labels(args.namespace_labels)
    if args.namespace_labels or args.profiles is not None:
        fleet.set_namespace(namespace, opted_in=namespace_opted_in(labels))
    return render(pod, namespace, fleet, out, as_json=args.json, inject_key=LABEL_INJECT)


def render(
    pod: dict[str, Any],
    namespace: str,
    fleet: FleetState,
    out: IO[str],
    *,
    as_json: bool,
    inject_key: str,
) -> int:
    result = decide(
        pod, namespace=namespace, fleet=fleet, own_namespace=None, now=time.time(), version=VERSION
    )
    if isinstance(result, Decision):
        ops = build(pod, result)
        patched = jsonpatch.apply_patch(pod, ops)  # RFC 6902, as the API server applies it
        decision: dict[str, Any] = json.loads(result.annotation())
    else:
        ops, patched = [], pod
        decision = {"mutated": False, "reason": result.reason}
    if as_json:
        json.dump({"pod": patched, "patch": ops, "decision": decision}, out, indent=2)
        out.write("\n")
        return 0
    yaml.safe_dump(patched, out, sort_keys=False)
    out.write(f"# maxtune decision: {json.dumps(decision, sort_keys=True)}\n")
    out.write(f"# {len(ops)} JSON patch operation(s)")
    if not isinstance(result, Decision) and result.reason == "not opted in":
        out.write(f" (label the pod {inject_key}=true, or its namespace {inject_key}=enabled)")
    out.write("\n")
    return 0
