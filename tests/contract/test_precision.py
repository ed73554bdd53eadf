"""Measured numbers are published to six significant digits, and only the published form is."""

from __future__ import annotations

import json
import math
from pathlib import Path

from maxtune.contract.models import GPUNodeProfile, ProfileStatus
from maxtune.contract.precision import published, rounded

H200_RUN = Path(__file__).parents[2] / "benchmarks/agent/runs/h200-2026-12-01/details-run1.tar.gz"


def _floats(value: object) -> list[float]:
    if isinstance(value, float):
        return [value]
    if isinstance(value, dict):
        return [f for item in value.values() for f in _floats(item)]
    if isinstance(value, list):
        return [f for item in value for f in _floats(item)]
    return []


def test_rounded_keeps_six_significant_digits() -> None:
    assert rounded(0.0015862959921360015) == 0.00158630
    assert rounded(0.08000000000000007) == 0.08
    assert rounded(-0.12023961186845145) == -0.12024
    assert rounded(698425458800165.6) == 6.98425e14
    assert rounded(0.0) == 0.0
    assert rounded(math.inf) == math.inf and math.isnan(rounded(math.nan))


def test_published_rounds_floats_only() -> None:
    wire = {"a": [1.23456789, 7, True, "0.123456789"], "b": {"c": None, "d": 2.0}}
    assert published(wire) == {"a": [1.23457, 7, True, "0.123456789"], "b": {"c": None, "d": 2.0}}
    assert wire["a"][0] == 1.23456789  # a copy: the caller's value is untouched


def _h200_profile() -> dict[str, object]:
    import tarfile

    with tarfile.open(H200_RUN) as archive:
        member = next(m for m in archive.getmembers() if m.name.endswith("profile-1.json"))
        handle = archive.extractfile(member)
        assert handle is not None
        data: dict[str, object] = json.load(handle)
        return data


def test_a_real_agents_profile_shrinks_and_reads_back_the_same() -> None:
    """The profile an agent wrote on an H200 (full precision, before this rule): published
    now, a quarter fewer bytes; every number within 5e-6 of what was measured; stable."""
    raw = _h200_profile()
    profile = GPUNodeProfile.model_validate(raw)
    assert profile.status is not None
    before = json.dumps(raw["status"], separators=(",", ":"))
    wire = profile.status.wire()
    after = json.dumps(wire, separators=(",", ":"))
    assert len(after) < 0.8 * len(before), (len(before), len(after))
    old, new = _floats(json.loads(before)), _floats(wire)
    assert len(old) == len(new) > 150
    assert all(abs(a - b) <= 5e-6 * abs(a) for a, b in zip(old, new, strict=True))
    assert all(rounded(f) == f for f in new)
    # Published twice is published once: an agent reading its profile back holds what it wrote.
    assert ProfileStatus.model_validate(wire).wire() == wire
    assert profile.wire()["status"] == wire
