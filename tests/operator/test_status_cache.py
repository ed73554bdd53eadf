"""`maxtune status`'s compile-cache table, from the agents' proofs in their profiles."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from pydantic import ValidationError

from maxtune.contract.models import CompileCacheProof, ProfileStatus
from maxtune.operator.cachestatus import class_caches, table
from maxtune.operator.readiness import report
from maxtune_dev.testkit import A100, H100, Fleet, stale

H100_CLASS = "nvidia-h100-80gb-hbm3-132sm"
A100_CLASS = "nvidia-a100-sxm4-40gb-108sm"
WHEN = "2026-12-01T12:00:00Z"


def proof(
    group: str, gpu_class: str, cold: float | None, warm: float | None, **more: Any
) -> dict[str, Any]:
    hit = more.pop("hit", cold is not None)
    return {
        "group": group,
        "gpuClass": gpu_class,
        "mode": "max-autotune-no-cudagraphs",
        "reachable": more.pop("reachable", True),
        "hit": hit,
        "coldSeconds": cold,
        "warmSeconds": warm,
        "savedSeconds": None if cold is None or warm is None else cold - warm,
        "measuredTime": WHEN,
        **more,
    }


def cache_fleet() -> Fleet:
    f = Fleet()
    f.add("h100-a", H100, 8, compile_cache=[proof("ml", H100_CLASS, 11.3, 1.1)])
    f.add("h100-b", H100, 8, compile_cache=[proof("ml", H100_CLASS, 12.1, 1.3)])
    f.add(
        "a100-a",
        A100,
        4,
        compile_cache=[
            proof("ml", A100_CLASS, 14.0, 2.0),
            proof(
                "vision",
                A100_CLASS,
                None,
                None,
                reachable=False,
                reason="AuthRefused",
                error="the cache refused the login",
            ),
        ],
    )
    f.add(
        "a100-b",
        A100,
        4,
        compile_cache=[
            proof("ml", A100_CLASS, 13.0, 13.2, hit=False, reason="WarmMiss", error="missed")
        ],
    )
    f.add("a100-none", A100, 4)  # no cache configured: no proof, not counted
    f.add(
        "h100-gone",
        H100,
        8,
        heartbeat=stale(2),
        compile_cache=[proof("ml", H100_CLASS, None, None, reachable=False, reason="Unreachable")],
    )
    return f


def test_per_class_and_group_whether_it_works_and_what_it_saves() -> None:
    f = cache_fleet()
    rows = {(r.gpu_class, r.group): r for r in class_caches(f.state, f.clock)}
    assert set(rows) == {(H100_CLASS, "ml"), (A100_CLASS, "ml"), (A100_CLASS, "vision")}
    h100 = rows[(H100_CLASS, "ml")]  # the stale node's failure is left out
    assert (h100.nodes, h100.working, h100.works, h100.problems) == (2, 2, "yes", {})
    assert h100.cold_seconds == pytest.approx(11.7)
    assert h100.warm_seconds == pytest.approx(1.2)
    assert h100.saved_seconds == pytest.approx(10.5)
    a100 = rows[(A100_CLASS, "ml")]
    assert (a100.nodes, a100.working, a100.works) == (2, 1, "partly")
    assert a100.problems == {"WarmMiss": 1}
    assert a100.saved_seconds == pytest.approx(12.0)  # the working node's only
    vision = rows[(A100_CLASS, "vision")]
    assert (vision.works, vision.problems, vision.saved_seconds) == ("no", {"AuthRefused": 1}, None)

    text = table(class_caches(f.state, f.clock))
    lines = text.splitlines()
    assert lines[0].split() == [
        "GPU", "CLASS", "CACHE", "GROUP", "WORKS", "NODES", "COLD", "WARM", "SAVES/START",
        "PROBLEMS",
    ]  # fmt: skip
    h100_line = next(line for line in lines if line.startswith(H100_CLASS))
    assert h100_line.split()[1:] == ["ml", "yes", "2/2", "11.7s", "1.2s", "10.5s", "-"]
    vision_line = next(line for line in lines if " vision " in line)
    assert vision_line.split()[2:] == ["no", "0/1", "-", "-", "-", "AuthRefused", "on", "1"]


def test_status_report_prints_and_serializes_the_cache_table() -> None:
    f = cache_fleet()
    out = io.StringIO()
    report(f.state, f.clock, out, as_json=False)
    assert "CACHE GROUP" in out.getvalue() and "WarmMiss on 1" in out.getvalue()
    out = io.StringIO()
    report(f.state, f.clock, out, as_json=True)
    caches = json.loads(out.getvalue())["compileCaches"]
    assert {(c["gpuClass"], c["group"], c["works"]) for c in caches} == {
        (H100_CLASS, "ml", "yes"),
        (A100_CLASS, "ml", "partly"),
        (A100_CLASS, "vision", "no"),
    }


def test_no_cache_no_table() -> None:
    f = Fleet()
    f.add("h100-a", H100, 8)
    out = io.StringIO()
    report(f.state, f.clock, out, as_json=False)
    assert "CACHE GROUP" not in out.getvalue()


def test_the_proof_model_round_trips_and_bounds_its_fields() -> None:
    wire = proof("ml", H100_CLASS, 11.3, 1.1)
    parsed = CompileCacheProof.model_validate(wire)
    assert parsed.works and parsed.saved_seconds == pytest.approx(10.2)
    assert CompileCacheProof.model_validate(parsed.wire()) == parsed
    failed = CompileCacheProof.model_validate(
        proof("ml", H100_CLASS, None, None, reachable=False, reason="AuthRefused")
    )
    assert not failed.works and "coldSeconds" not in failed.wire()
    with pytest.raises(ValidationError):
        CompileCacheProof.model_validate({**wire, "coldSeconds": -1})
    with pytest.raises(ValidationError):
        CompileCacheProof.model_validate({**wire, "error": "x" * 401})
    # An older profile without the field reads as "no proof".
    f = Fleet()
    f.add("h100-a", H100, 8)
    status = f.state.profiles["h100-a"].status
    assert isinstance(status, ProfileStatus) and status.compile_cache == []
