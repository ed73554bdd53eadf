"""The operator's picture of the cluster: records, node indexes, derived views (state.py)."""

from maxtune.operator.fleet.state import DirtyListener, FleetState
from maxtune.operator.fleet.views import (
    Bucket,
    Overlap,
    PolicyKey,
    Ranks,
    Wanted,
    policy_key,
    ranks_for,
)

__all__ = [
    "Bucket",
    "DirtyListener",
    "FleetState",
    "Overlap",
    "PolicyKey",
    "Ranks",
    "Wanted",
    "policy_key",
    "ranks_for",
]
