"""Where a profile goes, and how often to retry: sinks, backoff, the agent's RBAC.

Two sinks share one small protocol: `KubeSink` (maxtune.agent.kube, the API
server, the real thing) and `FileSink` (a local file, for runs without a
cluster such as benchmarks on a bare GPU machine). Retries are paced by maxtune.kube.Backoff.

AGENT_RBAC_RULES is the whole of what the agent may do; the chart's ClusterRole
and a test derive from this one constant.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Final, Protocol

from pydantic import ValidationError

from maxtune.contract.models import GPUNodeProfile, PolicySpec, ProfileStatus
from maxtune.contract.names import GROUP, POLICY_PLURAL, PROFILE_PLURAL

log = logging.getLogger("maxtune.agent")

# (apiGroup, resource, verbs): nothing else. Written for the chart's ClusterRole.
AGENT_RBAC_RULES: Final[tuple[tuple[str, str, tuple[str, ...]], ...]] = (
    (GROUP, PROFILE_PLURAL, ("get", "create")),
    (GROUP, f"{PROFILE_PLURAL}/status", ("get", "update", "patch")),
    (GROUP, POLICY_PLURAL, ("get", "list", "watch")),
    ("", "nodes", ("get",)),  # its own Node's uid: the owner of its heartbeat Lease
)
# The heartbeat Lease, in the release namespace only (the chart's Role). Which Lease is the
# agent-profile guard's to say: only the one named after the node in the agent's token.
AGENT_LEASE_RULES: Final[tuple[tuple[str, str, tuple[str, ...]], ...]] = (
    ("coordination.k8s.io", "leases", ("get", "create", "update")),
)


class PublishError(Exception):
    """A write or read that failed; `retry` says whether trying again can help."""

    def __init__(self, message: str, *, retry: bool) -> None:
        super().__init__(message)
        self.retry = retry


def readable_profile(data: object, where: str) -> GPUNodeProfile | None:
    """A stored profile as the contract model reads it, or None when it does not validate.

    The stored profile is the agent's own (its node's): one it cannot read (a hand edit, an
    agent of another version, or a value the API server let through, such as a JSON array
    for a date-time on Kubernetes 1.36) is published over, never a reason to stop.
    """
    try:
        return GPUNodeProfile.model_validate(data)
    except ValidationError as exc:
        log.warning(
            "%s does not validate (%d error(s), first: %s); it will be overwritten",
            where,
            exc.error_count(),
            exc.errors()[0]["loc"] if exc.errors() else "?",
        )
        return None


class Sink(Protocol):
    def read(self, node: str) -> GPUNodeProfile | None: ...

    def write(self, node: str, status: ProfileStatus) -> None: ...

    def policy(self) -> PolicySpec | None: ...

    @property
    def description(self) -> str: ...


class FileSink:
    """Writes the whole GPUNodeProfile as JSON to a file (no cluster); reads it back on start."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def description(self) -> str:
        return f"file {self.path}"

    def read(self, node: str) -> GPUNodeProfile | None:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise PublishError(f"cannot read {self.path}: {exc}", retry=False) from None
        profile = readable_profile(data, f"the profile in {self.path}")
        return profile if profile is not None and profile.metadata.name == node else None

    def write(self, node: str, status: ProfileStatus) -> None:
        profile = GPUNodeProfile.model_validate(
            {"metadata": {"name": node}, "spec": {"nodeName": node}}
        ).model_copy(update={"status": status})
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        try:
            tmp.write_text(json.dumps(profile.wire(), indent=1))
            tmp.replace(self.path)
        except OSError as exc:
            raise PublishError(f"cannot write {self.path}: {exc}", retry=True) from None

    def policy(self) -> PolicySpec | None:
        return None
