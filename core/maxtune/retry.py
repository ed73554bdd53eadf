"""Capped exponential backoff with jitter: the one retry pacing of maxtune (no imports: the
agent's probe and file sink load it without the Kubernetes client).

Used by the agent's publishing, the operator's informers, its labeller's per-node
retries and the cleanup hook's label removal. A delay lies in [ceiling/2,
ceiling]: half the ceiling is always waited (no hammering a recovering API
server), the other half is random (a DaemonSet's agents, or 5,000 nodes' label
retries, do not come back in lock-step).
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass
class Backoff:
    base_s: float = 0.5
    cap_s: float = 30.0
    attempt: int = 0
    rng: random.Random | None = None

    def next_delay(self) -> float:
        """The delay before the next attempt; each call counts one failed attempt."""
        ceiling = min(self.cap_s, self.base_s * (2 ** min(self.attempt, 30)))
        self.attempt += 1
        return (self.rng or random).uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        """After a success: the next failure starts from `base_s` again."""
        self.attempt = 0
