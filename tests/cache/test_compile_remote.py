"""torch.compile through the chart's cache, on CPU: separate processes, fresh local caches.

Each compile is a new process (benchmarks/cache/compile_child.py) with its own empty
TORCHINDUCTOR_CACHE_DIR, so only the remote cache can carry anything from one to the next.
The recipe is the one the webhook will hand pods (docs/decisions/0030-compile-cache.md):
TORCHINDUCTOR_FX_GRAPH_REMOTE_CACHE=1 and the URL from the namespace's Secret. Assertions are
on torch's own counters, never on timing (the machine is shared); the times are printed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from maxtune_dev.localplane.redisserver import RedisServer, hung_server
from tests.cache.cachekit import ML_GROUPS, ChartCache, local_url, render_cache

pytestmark = pytest.mark.slow  # each compile is a fresh process importing torch

ROOT = Path(__file__).resolve().parents[2]
CHILD_TIMEOUT_S = 300
# What an image without the redis package looks like to torch: `import redis` fails.
NO_REDIS = (
    "import runpy, sys; sys.modules['redis'] = None; "
    "sys.argv[0] = 'compile_child'; runpy.run_module('benchmarks.cache.compile_child', "
    "run_name='__main__')"
)


def compile_in_child(
    env: Mapping[str, str], tmp: Path, *args: str, block_redis: bool = False
) -> tuple[dict[str, Any], str]:
    """One fresh process, one compile; its JSON result and its stderr (torch's log)."""
    cache_dir = tmp / f"inductor-{time.monotonic_ns()}"
    full_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TORCHINDUCTOR_")},
        "TORCHINDUCTOR_CACHE_DIR": str(cache_dir),
        "PYTHONPATH": str(ROOT),
        **env,
    }
    child = ["-c", NO_REDIS] if block_redis else ["-m", "benchmarks.cache.compile_child"]
    done = subprocess.run(
        [sys.executable, *child, "--tiny", "--steps", "3", *args],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result, done.stderr


def recipe(chart: ChartCache, namespace: str, server: RedisServer) -> dict[str, str]:
    """The variables a pod of this namespace gets (the URL as its Secret holds it)."""
    url = local_url(chart.member_secret(namespace)["url"], server.port)
    return {"TORCHINDUCTOR_FX_GRAPH_REMOTE_CACHE": "1", "TORCHINDUCTOR_REDIS_URL": url}


def keys(chart: ChartCache, server: RedisServer) -> int:
    info = server.info("svc-exporter", chart.server_secret("ml")["svc-exporter"], "keyspace")
    db0 = info.get("db0", "keys=0")
    return int(db0.split(",")[0].split("=")[1])


def report(what: str, result: dict[str, Any]) -> None:
    print(
        f"{what}: first call (compile) {result['first_call_s']:.2f} s, process "
        f"{result['total_s']:.2f} s, counters {result['counters']['inductor']}",
        file=sys.stderr,
    )


def test_second_process_is_served_by_the_remote_cache(
    chart: ChartCache, server: RedisServer, tmp_path: Path
) -> None:
    env = recipe(chart, "train", server)
    for workload in ("mlp", "train"):
        cold, _ = compile_in_child(env, tmp_path, "--workload", workload)
        warm, _ = compile_in_child(env, tmp_path, "--workload", workload)
        report(f"{workload} cold", cold)
        report(f"{workload} warm", warm)
        graphs = 1 if workload == "mlp" else 2  # training: a forward and a backward graph
        assert cold["counters"]["inductor"].get("fxgraph_cache_miss") == graphs
        assert cold["counters"]["remote"]["RemoteFxGraphCache"]["put"] == graphs
        assert warm["counters"]["inductor"].get("fxgraph_cache_hit") == graphs
        assert warm["counters"]["inductor"].get("fxgraph_cache_miss", 0) == 0
        assert warm["counters"]["remote"]["RemoteFxGraphCache"] == {
            "hit": graphs,
            "miss": 0,
            "put": 0,
            "exception": 0,
        }
        if workload == "mlp":
            assert warm["rel_error"] < 1e-4
        else:
            assert warm["finite"] and warm["loss"] == pytest.approx(cold["loss"], rel=1e-4)
    assert keys(chart, server) == 3  # the MLP's graph and the training step's two


def test_read_only_namespace_uses_entries_and_cannot_add_any(
    chart: ChartCache, server: RedisServer, tmp_path: Path
) -> None:
    writer, reader = recipe(chart, "train", server), recipe(chart, "serve", server)
    compile_in_child(writer, tmp_path, "--workload", "mlp")  # present already or now
    before = keys(chart, server)
    hit, _ = compile_in_child(reader, tmp_path, "--workload", "mlp")
    assert hit["counters"]["inductor"].get("fxgraph_cache_hit") == 1
    # A graph nobody compiled yet (another mode is another key): torch tries to store it, the
    # server refuses, torch logs it, counts it and goes on.
    miss, log = compile_in_child(reader, tmp_path, "--workload", "mlp", "--mode", "reduce-overhead")
    assert miss["counters"]["inductor"].get("fxgraph_cache_write_error") == 1
    assert miss["counters"]["remote"]["RemoteFxGraphCache"]["exception"] == 1
    assert "NoPermissionError" in log and miss["rel_error"] < 1e-4
    assert keys(chart, server) == before


def test_image_without_redis_package_compiles_normally(
    chart: ChartCache, server: RedisServer, tmp_path: Path
) -> None:
    """The agent and operator images (and many training images) have no `redis`: the webhook's
    variables must not break them. torch logs a warning and compiles without the remote cache."""
    result, log = compile_in_child(
        recipe(chart, "train", server), tmp_path, "--workload", "train", block_redis=True
    )
    report("train without redis", result)
    assert result["redis_package"] is False
    assert result["finite"]
    assert result["counters"]["inductor"].get("fxgraph_cache_miss") == 2  # the local cache only
    assert result["counters"]["remote"] == {}
    assert "Unable to create a remote cache" in log
    assert "redis not available but required for remote cache" in log


def test_hung_cache_costs_timeouts_not_a_hang(tmp_path: Path) -> None:
    """The URL's timeouts (compileCache.client) bound what a hung Redis costs a compile."""
    chart = render_cache(
        {
            "groups": ML_GROUPS,
            "client": {"connectTimeoutSeconds": 1, "socketTimeoutSeconds": 1},
        }
    )
    with hung_server() as port:
        env = {
            "TORCHINDUCTOR_FX_GRAPH_REMOTE_CACHE": "1",
            "TORCHINDUCTOR_REDIS_URL": local_url(chart.member_secret("train")["url"], port),
        }
        began = time.monotonic()
        result, log = compile_in_child(env, tmp_path, "--workload", "mlp")
        took = time.monotonic() - began
    report(f"mlp against a hung server ({took:.1f} s in all)", result)
    assert result["rel_error"] < 1e-4
    assert result["counters"]["inductor"].get("fxgraph_cache_write_error") == 1
    assert result["counters"]["remote"]["RemoteFxGraphCache"]["exception"] == 2  # get, put
    assert "Timeout reading from" in log


def test_key_tag_keeps_gpu_classes_apart(
    chart: ChartCache, server: RedisServer, tmp_path: Path
) -> None:
    """TORCH_COMPILE_CACHE_KEY_TAG salts torch's keys: what the webhook can set to the pod's
    GPU class where two classes share a device name (MIG slices), so they never share entries."""
    env = recipe(chart, "train", server)
    compile_in_child(
        {**env, "TORCH_COMPILE_CACHE_KEY_TAG": "class-a"}, tmp_path, "--workload", "mlp"
    )
    other, _ = compile_in_child(
        {**env, "TORCH_COMPILE_CACHE_KEY_TAG": "class-b"}, tmp_path, "--workload", "mlp"
    )
    same, _ = compile_in_child(
        {**env, "TORCH_COMPILE_CACHE_KEY_TAG": "class-a"}, tmp_path, "--workload", "mlp"
    )
    assert other["counters"]["inductor"].get("fxgraph_cache_miss") == 1
    assert same["counters"]["inductor"].get("fxgraph_cache_hit") == 1
