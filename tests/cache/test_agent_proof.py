"""The agent's compile-cache proof, run for real on CPU against the chart's own cache server.

The agent's user is the chart's `svc-agent` (its URL from the rendered agent Secret, host
swapped for this machine's server); each compile is a fresh `python -m
maxtune.agent.cacheproof` with an empty local cache and the tiny inference block on CPU
Inductor. Assertions are on torch's counters and the server's key count, never on timing.
"""

from __future__ import annotations

import os
import sys
import urllib.parse
from datetime import UTC, datetime
from pathlib import Path

import pytest

from maxtune.agent import cacheproof
from maxtune.agent.backends import SimulationBackend
from maxtune.agent.cacheproof import CacheTarget
from maxtune.agent.daemon import Agent
from maxtune.contract.models import CompileCacheProof
from maxtune_dev.localplane.process import free_port
from maxtune_dev.localplane.redisserver import RedisServer
from tests.cache.cachekit import ChartCache, decoded, local_url
from tests.chart.helmkit import FULLNAME

pytestmark = pytest.mark.slow  # the proof's compiles are fresh processes importing torch

ROOT = Path(__file__).resolve().parents[2]
FLEET = """
name: proof
gpuModels:
  h100:
    product: NVIDIA H100 80GB HBM3
    memoryMib: 81559
    computeCapability: "9.0"
    smCount: 132
    gemm:
      - {size: 4096, tritonTflops: 720, cublasTflops: 726, autotuneSeconds: 1.8}
    training:
      modes:
        default: {stepMs: 1.10, compileSeconds: 6.0}
        max-autotune: {stepMs: 0.98, compileSeconds: 21.0}
nodes:
  - name: gpu-a
    gpus: [{model: h100, count: 2}]
"""


def agent_url(chart: ChartCache, server: RedisServer) -> str:
    urls = decoded(chart.rendered.get("Secret", f"{FULLNAME}-compile-cache-agent"))
    assert set(urls) == {"ml"}
    return local_url(urls["ml"], server.port)


def keys(chart: ChartCache, server: RedisServer) -> int:
    info = server.info("svc-exporter", chart.server_secret("ml")["svc-exporter"], "keyspace")
    return int(info.get("db0", "keys=0").split(",")[0].split("=")[1])


def prove(url: str, group: str = "ml", **env: str) -> CompileCacheProof:
    """The agent's proof step on CPU: the tiny block, default mode (CPU Inductor)."""
    environ = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "agent"), *env.values()])}
    return cacheproof.prove(
        CacheTarget(group, url),
        device="cpu",
        mode="default",
        tiny=True,
        gpu_class="cpu-test",
        env=environ,
        timeout_s=300,
    )


def with_password(url: str, password: str) -> str:
    parts = urllib.parse.urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[1]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{parts.username}:{password}@{host}"))


def test_the_proof_hits_through_the_agents_user(chart: ChartCache, server: RedisServer) -> None:
    before = keys(chart, server)
    proof = prove(agent_url(chart, server))
    print(f"proof: {proof.wire()}", file=sys.stderr)
    assert proof.reachable and proof.hit and proof.works, proof.error
    assert proof.reason is None and proof.error is None
    assert proof.cold_seconds is not None and proof.warm_seconds is not None
    assert proof.saved_seconds == pytest.approx(proof.cold_seconds - proof.warm_seconds, abs=1e-3)
    assert proof.group == "ml" and proof.mode == "default" and proof.gpu_class == "cpu-test"
    # One entry, under the proof's own key tag (the cold compile missed, so it was new).
    assert keys(chart, server) == before + 1


def test_wrong_password_is_a_status_not_a_crash(chart: ChartCache, server: RedisServer) -> None:
    proof = prove(with_password(agent_url(chart, server), "not-the-password"))
    assert not proof.reachable and not proof.hit
    assert proof.reason == "AuthRefused"
    assert proof.error is not None and "invalid username-password pair" in proof.error
    assert "not-the-password" not in proof.error
    assert proof.cold_seconds is None  # nothing compiled against a cache that refused us


def test_unreachable_port_is_a_status(chart: ChartCache, server: RedisServer) -> None:
    url = with_password(agent_url(chart, server), "x")
    parts = urllib.parse.urlsplit(url)
    closed = urllib.parse.urlunsplit(
        parts._replace(netloc=parts.netloc.replace(f":{server.port}", f":{free_port()}"))
    )
    proof = prove(closed)
    assert not proof.reachable and proof.reason == "Unreachable"
    assert proof.error is not None and "Connection refused" in proof.error


def test_image_without_redis_says_so(
    chart: ChartCache, server: RedisServer, tmp_path: Path
) -> None:
    """An agent image without the redis package: `import redis` fails in the proof process."""
    (tmp_path / "redis").mkdir()
    (tmp_path / "redis" / "__init__.py").write_text("raise ImportError('no redis here')\n")
    proof = prove(agent_url(chart, server), blocker=str(tmp_path))
    assert not proof.reachable and proof.reason == "NoRedisPackage"
    assert proof.error is not None and "redis package is not installed" in proof.error


def test_read_only_user_proves_a_warm_miss(chart: ChartCache, server: RedisServer) -> None:
    """A URL that may read but not write (a read-only member's): reachable, yet the warm
    compile finds nothing, and the proof says so rather than claiming the cache works."""
    url = local_url(chart.member_secret("serve")["url"], server.port)
    before = keys(chart, server)
    proof = prove(url)
    assert proof.reachable and not proof.hit and proof.reason == "WarmMiss"
    assert proof.error is not None and "not served by the cache" in proof.error
    assert proof.cold_seconds is not None and proof.warm_seconds is not None
    assert keys(chart, server) == before


def test_a_failed_proof_leaves_the_profile_intact(
    chart: ChartCache, server: RedisServer, tmp_path: Path
) -> None:
    """The agent's round with a refused cache publishes the same GPUs, verdicts and
    measurements as without a cache, plus the proof's status."""
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(FLEET)
    bad = with_password(agent_url(chart, server), "wrong")
    clock = lambda: datetime(2026, 12, 1, 12, 0, tzinfo=UTC)  # noqa: E731

    def run(prover: object) -> Agent:
        agent = Agent(
            node="gpu-a",
            backend=SimulationBackend(fleet, "gpu-a"),
            sink=None,
            level="full",
            clock=clock,
            cache_prover=prover,  # type: ignore[arg-type]
        )
        agent.tick(block=True)
        return agent

    plain = run(None)
    proved = run(lambda _inventory: [prove(bad)])
    assert plain.latest is not None and proved.latest is not None
    assert plain.latest.compile_cache == []
    [proof] = proved.latest.compile_cache
    assert proof.reason == "AuthRefused" and not proof.reachable
    assert proved.latest.gpus == plain.latest.gpus
    assert proved.latest.resources == plain.latest.resources
    assert proved.latest.summary == plain.latest.summary
    assert all(g.verdict.capable for g in proved.latest.gpus)
    text = proved.metrics.render().decode()
    assert 'maxtune_agent_compile_cache_reachable{group="ml",reason="AuthRefused"} 0.0' in text
