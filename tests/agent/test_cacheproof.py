"""The agent's compile-cache proof without a server: configuration, scheduling, failures,
metrics and the simulation. The proof against a real Redis is tests/cache/test_agent_proof.py."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from maxtune.agent import cacheproof
from maxtune.agent.backends import NvmlBackend, SimulationBackend
from maxtune.agent.cacheproof import CacheTarget
from maxtune.agent.cli import _cache_prover
from maxtune.agent.daemon import RETRY_FAILED_S, Agent
from maxtune.agent.fleetfile import FleetError
from maxtune.agent.fleetfile import load as load_fleet
from maxtune.agent.inventory import Inventory
from maxtune.agent.publish import FileSink
from maxtune.contract.models import CompileCacheProof

DEMO = Path(__file__).resolve().parents[2] / "examples" / "fleets" / "demo.yaml"
URL = "redis://svc-agent:s3cretpassw0rd@maxtune-cache-ml.maxtune.svc:6379?socket_timeout=5"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def test_parse_groups_a_bare_url_and_unusable_entries() -> None:
    found = cacheproof.parse(f"ml={URL}  vision={URL.replace('-ml', '-vision')}")
    assert [(t.group, t.problem) for t in found] == [("ml", None), ("vision", None)]
    assert found[0].url == URL
    [bare] = cacheproof.parse(URL)
    assert (bare.group, bare.problem) == ("default", None)
    assert cacheproof.parse("") == [] and cacheproof.parse([]) == []
    bad = {
        t.group: t.problem
        for t in cacheproof.parse(
            f"a=$(MAXTUNE_CACHE_URL_0) b=http://u:p@h:1 c=redis://host:6379 d={URL} d={URL}"
        )
    }
    assert bad["a"] is not None and "agent Secret" in bad["a"]
    assert bad["b"] is not None and "not a redis:// URL" in bad["b"]
    assert bad["c"] is not None and "no user and password" in bad["c"]
    assert bad["d"] == "group 'd' is given twice"


def test_the_password_never_shows() -> None:
    target = CacheTarget("ml", URL)
    assert "s3cretpassw0rd" not in repr(target)
    assert target.redacted().startswith("redis://svc-agent:***@maxtune-cache-ml")
    [bad] = cacheproof.parse("ml=http://svc-agent:s3cretpassw0rd@host:1")
    assert bad.problem is not None and "s3cretpassw0rd" not in bad.problem


def test_a_bad_url_is_reported_without_running_anything() -> None:
    [bad] = cacheproof.parse("ml=redis://host:6379")
    proof = cacheproof.prove(bad, python="/nonexistent/python", clock=lambda: NOW)
    assert (proof.reachable, proof.hit, proof.reason) == (False, False, "BadUrl")
    assert proof.error == bad.problem and proof.measured_time == NOW


def test_a_proof_process_that_dies_is_a_status(tmp_path: Path) -> None:
    proof = cacheproof.prove(
        CacheTarget("ml", URL), python="/bin/false", scratch=str(tmp_path), clock=lambda: NOW
    )
    assert (proof.reachable, proof.reason) == (False, "CompileFailed")
    assert proof.error is not None and "exited with code 1" in proof.error
    leaky = CacheTarget("ml", URL)
    said = cacheproof._proof(leaky, "default", None, NOW, reachable=False, error=f"bad {URL}")
    assert said.error is not None and "s3cretpassw0rd" not in said.error
    assert list(tmp_path.iterdir()) == []  # its private cache folders are gone


def proof(group: str, *, works: bool, at: datetime = NOW) -> CompileCacheProof:
    return CompileCacheProof(
        group=group,
        gpu_class="nvidia-a100-sxm4-40gb-108sm",
        mode="max-autotune-no-cudagraphs",
        reachable=works,
        hit=works,
        cold_seconds=11.0 if works else None,
        warm_seconds=1.5 if works else None,
        saved_seconds=9.5 if works else None,
        measured_time=at,
        reason=None if works else "Unreachable",
        error=None if works else "ConnectionError: Error 111",
    )


def agent(prover: object, *, level: str = "full", at: datetime = NOW) -> Agent:
    return Agent(
        node="gpu-a100-0",
        backend=SimulationBackend(DEMO, "gpu-a100-0"),
        sink=None,
        level=level,
        clock=lambda: at,
        cache_prover=prover,  # type: ignore[arg-type]
    )


def test_the_proof_runs_once_per_fingerprint_and_failed_ones_after_an_hour() -> None:
    calls: list[int] = []

    def prover(inventory: Inventory) -> list[CompileCacheProof]:
        calls.append(len(inventory.gpus))
        return [proof("ml", works=True), proof("vision", works=False)]

    a = agent(prover)
    a.tick(block=True)
    assert calls == [8]  # the whole node's inventory, after its measurements
    assert a.latest is not None
    assert [p.group for p in a.latest.compile_cache] == ["ml", "vision"]
    a.tick(block=True)
    assert calls == [8]  # measured and proved: nothing due
    a.clock = lambda: NOW + timedelta(seconds=RETRY_FAILED_S)
    a.tick(block=True)
    assert len(calls) == 2  # the failed group is due again after an hour

    working = agent(lambda _inv: [proof("ml", works=True)])
    working.tick(block=True)
    working.clock = lambda: NOW + timedelta(days=2)
    assert not working._cache_due()
    # A group added since (the agent restarted with the published proofs): due at once.
    working.cache_groups = frozenset({"ml", "new"})
    assert working._cache_due()
    assert not agent(prover, level="gemm")._cache_due()
    assert not agent(None)._cache_due()


def test_a_prover_that_raises_leaves_the_profile_alone() -> None:
    def broken(_inventory: Inventory) -> list[CompileCacheProof]:
        raise RuntimeError("bug")

    plain, proved = agent(None), agent(broken)
    plain.tick(block=True)
    proved.tick(block=True)
    assert plain.latest is not None and proved.latest is not None
    assert proved.latest.compile_cache == []
    assert proved.latest.gpus == plain.latest.gpus


def test_metrics_say_per_group_whether_it_works_and_what_it_saves() -> None:
    a = agent(lambda _inv: [proof("ml", works=True), proof("vision", works=False)])
    a.tick(block=True)
    text = a.metrics.render().decode()
    labels = 'gpu_class="nvidia-a100-sxm4-40gb-108sm",group="ml",mode="max-autotune-no-cudagraphs"'
    assert 'maxtune_agent_compile_cache_reachable{group="ml",reason=""} 1.0' in text
    assert 'maxtune_agent_compile_cache_reachable{group="vision",reason="Unreachable"} 0.0' in text
    assert f"maxtune_agent_compile_cache_hit{{{labels}}} 1.0" in text
    assert f"maxtune_agent_compile_cache_cold_seconds{{{labels}}} 11.0" in text
    assert f"maxtune_agent_compile_cache_warm_seconds{{{labels}}} 1.5" in text
    assert f"maxtune_agent_compile_cache_saved_seconds_per_start{{{labels}}} 9.5" in text
    assert 'saved_seconds_per_start{group="vision"' not in text  # unreached: no timings


def test_the_simulation_publishes_the_fleet_files_proofs() -> None:
    args = argparse.Namespace(compile_cache_url=None, compile_cache_mode="default")
    backend = SimulationBackend(DEMO, "gpu-a100-0")
    prover, groups = _cache_prover(args, backend)
    assert prover is not None and groups == ["ml", "vision"]
    proofs = {p.group: p for p in prover(backend.inventory())}
    assert proofs["ml"].works and proofs["ml"].saved_seconds == pytest.approx(9.6)
    assert proofs["vision"].reason == "AuthRefused" and not proofs["vision"].reachable
    assert proofs["ml"].gpu_class == "nvidia-a100-sxm4-40gb-108sm"
    # A node whose models give no proofs: no prover, no compileCache.
    assert _cache_prover(args, SimulationBackend(DEMO, "gpu-l4-0")) == (None, None)


def test_nvml_backend_proves_only_when_a_cache_is_configured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(cacheproof.ENV, raising=False)
    args = argparse.Namespace(compile_cache_url=None, compile_cache_mode="default")
    backend = NvmlBackend(nvml=None)
    try:
        assert _cache_prover(args, backend) == (None, None)
        monkeypatch.setenv(cacheproof.ENV, "ml=$(MAXTUNE_CACHE_URL_0)")
        prover, groups = _cache_prover(args, backend)  # a broken entry: the agent still starts
        assert prover is not None and groups == ["ml"]
        assert prover(backend.inventory()) == []  # no GPU here: nothing to compile on
    finally:
        backend.close()


def test_fleet_file_checks_simulated_proofs(tmp_path: Path) -> None:
    text = DEMO.read_text().replace("fail: AuthRefused", "fail: Flaky", 1)
    path = tmp_path / "fleet.yaml"
    path.write_text(text)
    with pytest.raises(FleetError, match="compileCache"):
        load_fleet(path)


def test_a_restart_keeps_the_published_proofs(tmp_path: Path) -> None:
    calls: list[str] = []

    def prover(_inventory: Inventory) -> list[CompileCacheProof]:
        calls.append("proved")
        return [proof("ml", works=True)]

    def started() -> Agent:
        return Agent(
            node="gpu-a100-0",
            backend=SimulationBackend(DEMO, "gpu-a100-0"),
            sink=FileSink(tmp_path / "profile.json"),
            level="full",
            clock=lambda: NOW,
            cache_prover=prover,
            cache_groups=["ml"],
        )

    started().tick(block=True)
    again = started()
    again.recover()
    again.tick(block=True)
    assert calls == ["proved"]  # same fingerprint, same groups: kept, not proved again
    assert again.latest is not None and [p.group for p in again.latest.compile_cache] == ["ml"]
