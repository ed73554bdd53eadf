"""FleetState for the CLI: from profile files (no cluster) or from a cluster, once.

`maxtune mutate --profiles DIR` needs nodes as well as profiles; a profile
says what the node offers (`status.resources`), so each becomes a node with
that allocatable and the labels the labeller would give it. Reading from a
cluster goes through the same listing code the operator primes itself with.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

from maxtune.cli.version import VERSION
from maxtune.kube import Kube
from maxtune.operator.events import sources
from maxtune.operator.fleet import FleetState
from maxtune.operator.informer import list_into
from maxtune.operator.records import read_node, read_policy, read_profile

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


class ManifestError(ValueError):
    """A file that is not the manifest it should be; the message names the file."""


def documents(path: Path) -> Iterator[dict[str, Any]]:
    """Every object in a YAML/JSON file, `List` kinds unpacked."""
    try:
        text = path.read_text()
        loaded = list(yaml.safe_load_all(text)) if path.suffix != ".json" else [json.loads(text)]
    except (OSError, yaml.YAMLError, ValueError) as exc:
        raise ManifestError(f"{path}: {exc}") from None
    for doc in loaded:
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise ManifestError(f"{path}: expected a Kubernetes object, got {type(doc).__name__}")
        if doc.get("kind") == "List" or str(doc.get("kind", "")).endswith("List"):
            yield from (i for i in doc.get("items") or [] if isinstance(i, dict))
        else:
            yield doc


def manifest_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix in MANIFEST_SUFFIXES)
    return [path]


def add_policies(fleet: FleetState, paths: Iterable[Path]) -> int:
    count = 0
    for path in paths:
        for doc in documents(path):
            if doc.get("kind") != "AutotunePolicy":
                continue
            doc.setdefault("metadata", {}).setdefault("resourceVersion", f"file-{count}")
            policy = read_policy(doc)
            if policy is None:
                raise ManifestError(f"{path}: an AutotunePolicy that does not validate")
            fleet.upsert_policy(policy)
            count += 1
    return count


def fleet_from_profiles(directory: Path, policies: Iterable[Path] = ()) -> FleetState:
    fleet = FleetState()
    add_policies(fleet, policies)
    now = time.time()
    for path in manifest_files(directory):
        for doc in documents(path):
            if doc.get("kind") != "GPUNodeProfile":
                continue
            doc.setdefault("metadata", {}).setdefault("resourceVersion", "1")
            profile = read_profile(doc)
            status = profile.status if profile is not None else None
            if profile is None or status is None:
                raise ManifestError(f"{path}: a GPUNodeProfile without a valid status")
            fleet.upsert_profile(profile)
            allocatable = {r.name: str(r.count) for r in status.resources}
            node: dict[str, Any] = {
                "metadata": {
                    "name": profile.node_name,
                    "uid": f"offline-{profile.node_name}",
                    "resourceVersion": "1",
                    "labels": {"kubernetes.io/hostname": profile.node_name},
                },
                "status": {"allocatable": allocatable},
            }
            first = read_node(node)
            assert first is not None
            fleet.upsert_node(first)
            # As if the labeller had run: the node carries its desired labels.
            labels = {"kubernetes.io/hostname": profile.node_name}
            labels.update(fleet.desired_labels(profile.node_name, now))
            node["metadata"]["labels"] = labels
            node["metadata"]["resourceVersion"] = "2"
            labelled = read_node(node)
            assert labelled is not None
            fleet.upsert_node(labelled)
    return fleet


USER_AGENT = f"maxtune-cli/{VERSION}"


def fleet_from_cluster(kube: Kube, policies: Iterable[Path] = ()) -> FleetState:
    """Every kind listed once (agents' Leases in every namespace), plus policy files."""
    fleet = FleetState()
    list_into(kube, fleet, sources(""))
    add_policies(fleet, policies)
    return fleet
