"""benchmarks/cache/gpu_cache_run.py still runs end to end: CPU, tiny, one mode, no variants.

The lead runs it on a GPU with the .debs prepare.sh fetched; here it runs with Debian's
redis-server from the binary cache. Numbers are not checked; that the warm process was served by
the remote cache is (torch's counters and Redis' own keyspace hits).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.cache import gpu_cache_run

pytestmark = [pytest.mark.slow]


def test_cache_run_cpu_tiny(tmp_path: Path) -> None:
    argv = ["--device", "cpu", "--tiny", "--workloads", "mlp", "--modes", "default"]
    argv += ["--steps", "3", "--no-variants", "--no-faults", "--out", str(tmp_path)]
    assert gpu_cache_run.main(argv) == 0
    result = json.loads((tmp_path / "cache_run.json").read_text())
    cold, warm = result["runs"]
    assert cold["label"] == "fx:cold" and warm["label"] == "fx:warm"
    assert cold["counters"]["inductor"]["fxgraph_cache_miss"] == 1
    assert warm["counters"]["inductor"]["fxgraph_cache_hit"] == 1
    assert cold["redis"]["keyspace_misses"] >= 1 and cold["redis"]["keys"] == 1
    assert warm["redis"]["keyspace_hits"] >= 1
    (summary,) = result["summary"]
    assert summary["warm_fx_hits"] == 1 and summary["warm_fx_misses"] == 0
    assert (tmp_path / "children.log").read_text().count("==> ") == 2
