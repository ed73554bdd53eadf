"""Where a profile goes, and how often to retry: sinks, backoff, the agent's RBAC.

Two sinks share one small protocol: `KubeSink` (maxtune.agent.kube, the API
server, the real thing) and `FileSink` (a local file, for runs without a
cluster such as benchmarks on a bare GPU machine). `Backoff` paces retries.

AGENT_RBAC_RULES is the whole of what the agent may do; the chart's ClusterRole
and a test derive from this one constant.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass
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


@dataclass
class Backoff:
    """Capped exponential backoff with jitter: a delay in [ceiling/2, ceiling].

    Half the ceiling is always waited (no hammering a recovering API server),
    the other half is random (a DaemonSet's agents do not retry in lock-step).
    """

    base_s: float = 0.5
    cap_s: float = 30.0
    attempt: int = 0
    rng: random.Random | None = None

    def next_delay(self) -> float:
        ceiling = min(self.cap_s, self.base_s * (2**self.attempt))
        self.attempt = min(self.attempt + 1, 30)
        return (self.rng or random).uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempt = 0


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
