"""The rule table, row by row (design.md: the gate by torch version)."""

from __future__ import annotations

import pytest

from maxtune.contract import gate
from maxtune.contract.gate import Vendor


@pytest.mark.parametrize(
    ("torch", "sms", "capable"),
    [
        ("2.0", 79, False),
        ("2.0", 80, True),
        ("2.1", 79, False),
        ("2.3.1", 80, True),
        ("2.3", 68, False),
        ("2.4", 67, False),
        ("2.4", 68, True),
        ("2.11.0+cu130", 132, True),
        ("2.11", 60, False),  # H100 MIG 3g.40gb
        ("2.14", 66, False),  # RTX 3080 Ti mobile class
        ("2.14", 16, False),  # H100 MIG 1g.10gb
    ],
)
def test_nvidia_rule_by_version(torch: str, sms: int, capable: bool) -> None:
    assert gate.verdict(sm_count=sms, torch_version=torch).capable is capable


def test_torch_20_message_counts_cuda_cores() -> None:
    assert "CUDA cores" in gate.verdict(sm_count=10, torch_version="2.0").rule


def test_unmeasured_sm_count_is_never_capable() -> None:
    result = gate.verdict(sm_count=None, torch_version="2.11")
    assert not result.capable
    assert "not measured" in result.rule


@pytest.mark.parametrize(
    ("torch", "arch", "capable"),
    [("2.6", 8, False), ("2.6", 9, True), ("2.11", 10, False), ("2.11", 11, True)],
)
def test_rocm_arch_rule_from_26(torch: str, arch: int, capable: bool) -> None:
    # ROCm ignores the CU count from 2.6 on: 4 CUs with gfx9 is "big".
    result = gate.verdict(sm_count=4, torch_version=torch, vendor=Vendor.AMD, arch_major=arch)
    assert result.capable is capable


def test_rocm_before_26_counts_cus() -> None:
    amd = Vendor.AMD
    assert gate.verdict(sm_count=120, torch_version="2.5", vendor=amd, arch_major=9).capable
    assert not gate.verdict(sm_count=60, torch_version="2.5", vendor=amd, arch_major=9).capable


def test_rocm_without_arch_is_not_capable() -> None:
    assert not gate.verdict(sm_count=304, torch_version="2.11", vendor=Vendor.AMD).capable


@pytest.mark.parametrize(("torch", "cores", "capable"), [("2.7", 15, False), ("2.7", 16, True)])
def test_xpu_rule(torch: str, cores: int, capable: bool) -> None:
    result = gate.verdict(sm_count=cores, torch_version=torch, vendor=Vendor.INTEL)
    assert result.capable is capable


def test_xpu_before_27_has_no_templates() -> None:
    assert not gate.verdict(sm_count=64, torch_version="2.6", vendor=Vendor.INTEL).capable


@pytest.mark.parametrize("bad", ["", "two", "1.13", "2", "v2.11", "2.x"])
def test_malformed_or_pre_compile_versions_are_refused(bad: str) -> None:
    with pytest.raises(gate.TorchVersionError):
        gate.verdict(sm_count=132, torch_version=bad)
