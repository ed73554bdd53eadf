"""The benchmark fleet's profiles weigh what a real agent's do."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

from benchmarks.gpufleet import KINDS, full_precision_status, plan_node
from maxtune.contract.models import GPUNodeProfile
from maxtune.contract.precision import published

H200_RUN = Path(__file__).parents[2] / "benchmarks/agent/runs/h200-2026-12-01/details-run1.tar.gz"


def _size(value: object) -> int:
    return len(json.dumps(value, separators=(",", ":")))


def _h200_gpu(*, published: bool) -> dict[str, Any]:
    """GPU 0 of the profile an agent wrote on an H200, as it wrote it or as published now."""
    with tarfile.open(H200_RUN) as archive:
        member = next(m for m in archive.getmembers() if m.name.endswith("profile-1.json"))
        handle = archive.extractfile(member)
        assert handle is not None
        raw = json.load(handle)
    if not published:
        gpu: dict[str, Any] = raw["status"]["gpus"][0]
        return gpu
    status = GPUNodeProfile.model_validate(raw).status
    assert status is not None
    gpu = status.wire()["gpus"][0]
    return gpu


def test_a_measured_gpu_weighs_what_the_h200s_does() -> None:
    h100 = next(i for i, k in enumerate(KINDS) if k.key == "h100")
    planned = plan_node(h100)
    published = planned.profile_status["status"]["gpus"][0]
    full = full_precision_status(planned)["gpus"][0]
    # Within 10% of the real GPU entry, published (3.7 KB) and at full precision (5.4 KB).
    for ours, theirs in ((published, True), (full, False)):
        real = _size(_h200_gpu(published=theirs))
        assert 0.9 * real <= _size(ours) <= 1.1 * real, (_size(ours), real)
    measured = published["measurements"]
    for block in ("compile", "training"):
        assert {len(m["roundStepSeconds"]) for m in measured[block]["modes"]} == {20}
        assert len({s for m in measured[block]["modes"] for s in m["roundStepSeconds"]}) > 50
    assert len(measured["gemm"]) == 2


def test_the_fleet_publishes_rounded_and_the_full_form_is_not() -> None:
    planned = plan_node(0)
    assert published(planned.profile_status) == planned.profile_status
    assert published(full_precision_status(planned)) != full_precision_status(planned)
