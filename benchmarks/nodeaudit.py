"""Who wrote which node: the API server's audit log, limited to node writes.

The request counter (`apiserver_request_total`) says how many PATCHes nodes got
in a phase, not from whom; on the benchmark plane kwok and the controller
manager write nodes too. The audit log names each writer (user and user agent;
the operator's client calls itself `maxtune-operator/<version>`), so "writes
per changed node" is the operator's own count, witnessed by the API server.
Only writes to nodes and to profiles' status are logged, at Metadata level: the
log stays small. Node writes alone cost the API server nothing measurable; the
profiles' writes (logged since 2026-12-02, to time the operator's answer to each
change, `lags_since_mark`) add one line per profile write, the old-way heartbeat
phase's 5,000 included, a cost not measured separately.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

import yaml

POLICY: dict[str, Any] = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {
            "level": "Metadata",
            "verbs": ["create", "update", "patch", "delete"],
            "resources": [{"group": "", "resources": ["nodes", "nodes/status"]}],
        },
        {  # the profiles' own writes, to time the operator's answer to each (lags_since_mark)
            "level": "Metadata",
            "verbs": ["update", "patch"],
            "resources": [{"group": "maxtune.io", "resources": ["gpunodeprofiles/status"]}],
        },
        {"level": "None"},
    ],
}
OPERATOR_AGENT = "maxtune-operator"


def apiserver_args(folder: Path) -> list[str]:
    """kube-apiserver flags that write the node-write audit log into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    policy = folder / "audit-policy.yaml"
    policy.write_text(yaml.safe_dump(POLICY))
    return [
        f"--audit-policy-file={policy}",
        f"--audit-log-path={folder / 'audit.log'}",
        "--audit-log-format=json",
        "--audit-log-mode=blocking",
        "--audit-log-maxsize=0",
    ]


def writer(event: dict[str, Any]) -> str:
    """'<user agent name> as <user>', e.g. 'maxtune-operator as kubernetes-admin'."""
    agent = str(event.get("userAgent") or "?").split("/", 1)[0]
    user = str((event.get("user") or {}).get("username") or "?")
    return f"{agent} as {user}"


@dataclass
class NodeAudit:
    """Successful node writes appended to the log after `mark()`, by writer and verb."""

    log: Path
    offset: int = 0

    def mark(self) -> None:
        self.offset = self.log.stat().st_size if self.log.exists() else 0

    def since_mark(self) -> dict[str, dict[str, int]]:
        found: dict[str, Counter[str]] = {}
        if not self.log.exists():
            return {}
        with self.log.open("rb") as handle:
            handle.seek(self.offset)
            for event in _written(handle):
                ref = event.get("objectRef") or {}
                if ref.get("resource") != "nodes":
                    continue
                verb = str(event.get("verb", "?")).upper()
                key = f"{verb} {ref['subresource']}" if ref.get("subresource") else verb
                found.setdefault(writer(event), Counter())[key] += 1
        return {who: dict(sorted(counts.items())) for who, counts in sorted(found.items())}

    def lags_since_mark(self) -> list[float]:
        """Per node whose profile status was written since `mark()`: seconds from the API
        server completing that write to it receiving the operator's next write of the node.
        Both times are the API server's, so this is the operator's part (the watch that
        brings it the profile, its decision, its request) without the driver's."""
        profile_done: dict[str, datetime] = {}
        lags: list[float] = []
        if not self.log.exists():
            return lags
        with self.log.open("rb") as handle:
            handle.seek(self.offset)
            for event in _written(handle):
                ref = event.get("objectRef") or {}
                name = str(ref.get("name") or "")
                if ref.get("resource") == "gpunodeprofiles":
                    profile_done[name] = datetime.fromisoformat(event["stageTimestamp"])
                elif (
                    ref.get("resource") == "nodes"
                    and not ref.get("subresource")
                    and writer(event).startswith(OPERATOR_AGENT + " ")
                    and name in profile_done
                ):
                    received = datetime.fromisoformat(event["requestReceivedTimestamp"])
                    lags.append((received - profile_done.pop(name)).total_seconds())
        return lags


def _written(handle: BinaryIO) -> Iterator[dict[str, Any]]:
    """The log's successful writes, as the API server finished them."""
    for line in handle:
        event = json.loads(line)
        if event.get("stage") != "ResponseComplete":
            continue
        if int((event.get("responseStatus") or {}).get("code", 0)) >= 400:
            continue
        yield event


def operator_writes(by_writer: dict[str, dict[str, int]]) -> int:
    """Node writes (any verb, status aside) by the operator's own client."""
    return sum(
        n
        for who, counts in by_writer.items()
        if who.startswith(OPERATOR_AGENT + " ")
        for key, n in counts.items()
        if " " not in key
    )
