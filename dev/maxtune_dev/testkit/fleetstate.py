"""A FleetState filled the way the operator's watches fill it, for decision tests.

Nodes and profiles go through the same readers as watch events
(`records.read_node`, `read_profile`), with the labels the labeller would
have written already on the nodes, so tests of the webhook's rule start from
a converged cluster.
"""

from __future__ import annotations

import copy
import time
from datetime import UTC, datetime
from typing import Any

from maxtune.contract.assess import node_labels
from maxtune.contract.models import ProfileStatus
from maxtune.operator.fleet import FleetState
from maxtune.operator.records import read_node, read_profile
from maxtune_dev.testkit.objects import node
from maxtune_dev.testkit.profiles import A100, H100, RTX3070, T4, Product, allocatable, profile


class Fleet:
    """A FleetState with labels in sync.

    `clock` is the POSIX time its fresh heartbeats were written: a fleet kept for a whole
    module answers as of then (pass `now=fleet.clock`), since a long suite would otherwise
    age its heartbeats past the staleness window and change every decision mid-run.
    """

    def __init__(self) -> None:
        self.state = FleetState()
        self.clock = time.time()
        self._rv = 1

    def add(
        self,
        name: str,
        product: Product | None,
        count: int = 8,
        *,
        mig: list[str] | None = None,
        gain: float | None = 0.08,
        labels: dict[str, str] | None = None,
        taints: list[dict[str, str]] | None = None,
        with_profile: bool = True,
        synced: bool = True,
        heartbeat: datetime | None = None,
        default_step: float | None = None,
        compile_cache: list[dict[str, Any]] | None = None,
    ) -> None:
        """`compile_cache`: the agent's cache proofs (status.compileCache, wire form)."""
        gpus = allocatable(product, count, mig)
        all_labels = dict(labels or {})
        prof = None
        if product is not None and with_profile:
            extra = {} if default_step is None else {"default_step": default_step}
            prof = profile(name, product, count, gain=gain, mig=mig, heartbeat=heartbeat, **extra)
            if synced:
                st = ProfileStatus.model_validate(prof["status"])
                now = datetime.now(UTC)
                all_labels.update(node_labels(st, self.state.cluster_policy().spec, now))
        self._rv += 1
        rec = read_node(node(name, gpus, labels=all_labels, taints=taints, rv=str(self._rv)))
        assert rec is not None
        self.state.upsert_node(rec)
        if prof is not None:
            prof = copy.deepcopy(prof)
            if compile_cache is not None:
                prof["status"]["compileCache"] = compile_cache
            prof["metadata"].update(uid=f"puid-{name}", resourceVersion=str(self._rv))
            p = read_profile(prof)
            assert p is not None
            self.state.upsert_profile(p)


def mixed_fleet() -> Fleet:
    """H100, A100, RTX 3070, T4 and MIG nodes, as the integration fleet uses."""
    f = Fleet()
    f.add("h100-a", H100, 8, gain=0.08)
    f.add("h100-b", H100, 8, gain=0.12)
    f.add("a100-a", A100, 8, gain=0.05)
    f.add("a100-slow", A100, 8, gain=-0.05)  # capable, but measured slower: default
    f.add("rtx-a", RTX3070, 2)
    f.add("t4-a", T4, 4)
    f.add("mig-h100", H100, 1, mig=["1g.10gb"] * 7)
    f.add("mig-a100", A100, 1, mig=["3g.20gb", "3g.20gb"])
    return f
