"""FleetState for the CLI: from profile files (no cluster) or from a cluster, once.

`maxtune mutate --profiles DIR` needs nodes as well as profiles: Node manifests
saved beside the profiles are used as they are; a profile without one says what
its node offers (`status.resources`), so it becomes a node with that
allocatable. Either way the node gets the labels the labeller would give it.
Reading from a cluster goes through the same listing code the operator primes
itself with.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from maxtune.cli.version import VERSION
from maxtune.contract.names import PREFIX
from maxtune.kube import Kube
from maxtune.operator.events import sources
from maxtune.operator.fleet import FleetState
from maxtune.operator.informer import list_into
from maxtune.operator.records import (
    ProfileRecord,
    as_dict,
    read_node,
    read_policy,
    read_profile,
    resource_version_number,
)

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


@dataclass(frozen=True, slots=True)
class ProfileSource:
    """What `--profiles` read, and as of when staleness was judged: the preview's header."""

    path: str
    files: int
    profiles: int
    nodes: int
    node_manifests: int
    as_of: float | None  # None: every profile judged as of its own heartbeat
    heartbeats: tuple[float, float]  # the oldest and newest heartbeat read
    stale: int  # profiles past the cluster policy's staleness window at `as_of`

    def header(self) -> str:
        nodes = f"{self.nodes} node(s)"
        if self.node_manifests:
            nodes += f" ({self.node_manifests} from Node manifests)"
        oldest, newest = (iso(t) for t in self.heartbeats)
        saved = oldest if oldest == newest else f"{oldest} to {newest}"
        if self.as_of is None:
            when = f"judged current, as of their own heartbeats ({saved}; --as-of to judge age)"
        else:
            when = f"judged as of {iso(self.as_of)} (heartbeats {saved}): {self.stale} stale"
        return (
            f"read {self.profiles} GPUNodeProfile(s) and {nodes} from {self.path} "
            f"({self.files} file(s)); {when}"
        )

    def wire(self) -> dict[str, Any]:
        return {
            "kind": "profiles",
            "path": self.path,
            "files": self.files,
            "profiles": self.profiles,
            "nodes": self.nodes,
            "nodeManifests": self.node_manifests,
            "asOf": iso(self.as_of) if self.as_of is not None else None,
            "heartbeats": [iso(t) for t in self.heartbeats],
            "stale": self.stale,
        }


def iso(posix: float) -> str:
    """RFC 3339 in UTC, to the second."""
    return datetime.fromtimestamp(posix, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_as_of(text: str) -> float:
    """`now`, or an ISO 8601 date-time with its time zone, as POSIX seconds."""
    if text == "now":
        return time.time()
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ManifestError(
            f"--as-of {text!r}: not 'now' or an ISO 8601 time such as 2026-12-01T10:00:00Z"
        ) from None
    if when.tzinfo is None:
        raise ManifestError(f"--as-of {text!r}: give the time zone, e.g. {text}Z or {text}+01:00")
    return when.timestamp()


@dataclass(slots=True)
class _Read:
    profiles: dict[str, tuple[Path, dict[str, Any]]] = field(default_factory=dict)
    nodes: dict[str, tuple[Path, dict[str, Any]]] = field(default_factory=dict)


def _read_folder(files: list[Path]) -> _Read:
    """Every GPUNodeProfile and Node in `files`; anything else, or a name twice, is an error."""
    found = _Read()
    for path in files:
        for doc in documents(path):
            kind = doc.get("kind")
            name = as_dict(doc.get("metadata")).get("name")
            if kind not in ("GPUNodeProfile", "Node"):
                hint = " (give policies with --policy)" if kind == "AutotunePolicy" else ""
                raise ManifestError(
                    f"{path}: a {kind or 'document without a kind'} is not a GPUNodeProfile "
                    f"or a Node{hint}"
                )
            if not isinstance(name, str) or not name:
                raise ManifestError(f"{path}: a {kind} without metadata.name")
            seen = found.profiles if kind == "GPUNodeProfile" else found.nodes
            if name in seen:
                raise ManifestError(f"{path}: {kind} {name} is also in {seen[name][0]}")
            seen[name] = (path, doc)
    return found


def _profile_record(path: Path, doc: dict[str, Any]) -> ProfileRecord:
    doc = copy.deepcopy(doc)
    doc.setdefault("metadata", {}).setdefault("resourceVersion", "1")
    record = read_profile(doc)
    if record is None or record.heartbeat is None:
        why = record.problem if record is not None else "no metadata.name"
        raise ManifestError(f"{path}: GPUNodeProfile {doc['metadata'].get('name')}: {why}")
    return record


def _node_body(
    name: str, manifest: dict[str, Any] | None, profile: ProfileRecord | None
) -> dict[str, Any]:
    """The Node as the cluster would show it: the manifest, else one the profile implies."""
    if manifest is not None:
        body = copy.deepcopy(manifest)
    else:
        status = profile.status if profile is not None else None
        resources = status.resources if status is not None else []
        body = {"status": {"allocatable": {r.name: str(r.count) for r in resources}}}
    meta = body.setdefault("metadata", {})
    meta.setdefault("name", name)
    meta.setdefault("uid", f"offline-{name}")
    meta.setdefault("resourceVersion", "1")
    labels = meta.get("labels") if isinstance(meta.get("labels"), dict) else {}
    meta["labels"] = {"kubernetes.io/hostname": name, **labels}
    return body


def fleet_from_profiles(
    directory: Path, policies: Iterable[Path] = (), *, as_of: float | None = None
) -> tuple[FleetState, ProfileSource]:
    """The fleet the saved profiles describe, as the webhook would see it at `as_of`.

    Saved profiles are old by the time anyone previews with them; judged by the wall
    clock, every one would be past the staleness window after 5 minutes and the preview
    would only ever say "no current profile". So by default each profile counts as of its
    own heartbeat (current); `as_of` judges their age at one time instead. Node manifests
    (`kubectl get node -o yaml`) in the folder give nodes their real labels, taints and
    allocatable; a profile without one gets a node offering its resources.
    """
    fleet = FleetState()
    add_policies(fleet, policies)
    files = manifest_files(directory)
    found = _read_folder(files)
    if not found.profiles:
        raise ManifestError(
            f"{directory}: no GPUNodeProfile in {len(files)} file(s) "
            f"({', '.join('*' + s for s in MANIFEST_SUFFIXES)}); save them with "
            "kubectl get gpunodeprofiles -o yaml"
        )
    now = as_of if as_of is not None else time.time()
    records = [_profile_record(path, doc) for path, doc in found.profiles.values()]
    beats = [r.heartbeat for r in records if r.heartbeat is not None]
    for record in records:
        # Judged as of its own heartbeat: the agent was last alive just now.
        fleet.upsert_profile(record if as_of is not None else replace(record, heartbeat=now))
    by_node = {r.node_name: r for r in records}
    names = sorted(set(by_node) | set(found.nodes))
    for name in names:
        manifest = found.nodes.get(name, (None, None))[1]
        body = _node_body(name, manifest, by_node.get(name))
        first = read_node(body)
        if first is None:
            raise ManifestError(f"{found.nodes[name][0]}: Node {name} cannot be read")
        fleet.upsert_node(first)
        # As if the labeller had run: the node carries exactly its desired maxtune labels.
        meta = body["metadata"]
        labels = {k: v for k, v in meta["labels"].items() if not k.startswith(PREFIX)}
        labels.update(fleet.desired_labels(name, now))
        meta["labels"] = labels
        meta["resourceVersion"] = str(
            int(resource_version_number(meta["resourceVersion"]) or 1) + 1
        )
        labelled = read_node(body)
        assert labelled is not None
        fleet.upsert_node(labelled)
    source = ProfileSource(
        path=str(directory),
        files=len(files),
        profiles=len(records),
        nodes=len(fleet.nodes),
        node_manifests=len(found.nodes),
        as_of=as_of,
        heartbeats=(min(beats), max(beats)),
        stale=sum(fleet.is_stale(r.node_name, now) for r in records),
    )
    return fleet, source


USER_AGENT = f"maxtune-cli/{VERSION}"


def fleet_from_cluster(kube: Kube, policies: Iterable[Path] = ()) -> FleetState:
    """Every kind listed once (agents' Leases in every namespace), plus policy files."""
    fleet = FleetState()
    list_into(kube, fleet, sources(""))
    add_policies(fleet, policies)
    return fleet
