"""The project's gate against the installed torch's own `is_big_gpu`.

If a torch upgrade moves the gate, this fails here rather than mislabelling a
cluster. The device properties are patched, so no GPU is needed: the code under
comparison is torch's real function.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from maxtune.contract import gate
from maxtune.contract.gate import Vendor

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch


def _torch_is_big_gpu(
    monkeypatch: pytest.MonkeyPatch, *, device_type: str, sms: int, major: int, hip: bool
) -> bool:
    import torch._inductor.utils as inductor_utils

    class FakeProperties:
        @staticmethod
        def create(device: Any) -> SimpleNamespace:
            return SimpleNamespace(type=device.type, multi_processor_count=sms, major=major)

    monkeypatch.setattr(inductor_utils, "DeviceProperties", FakeProperties)
    monkeypatch.setattr(torch.version, "hip", "6.2.0" if hip else None)
    fn = inductor_utils.is_big_gpu.__wrapped__  # bypass functools.cache
    return bool(fn(torch.device(device_type, 0)))


INSTALLED = torch.__version__
SM_COUNTS = [1, 14, 15, 16, 17, 26, 32, 40, 46, 56, 60, 64, 66, 67, 68, 69, 79, 80, 98, 108, 132]


@pytest.mark.parametrize("sms", SM_COUNTS)
def test_cuda_matches_installed_torch(monkeypatch: pytest.MonkeyPatch, sms: int) -> None:
    theirs = _torch_is_big_gpu(monkeypatch, device_type="cuda", sms=sms, major=9, hip=False)
    ours = gate.verdict(sm_count=sms, torch_version=INSTALLED).capable
    assert ours == theirs, f"torch {INSTALLED} is_big_gpu({sms} SMs) = {theirs}, maxtune = {ours}"


@pytest.mark.parametrize("sms", SM_COUNTS)
def test_xpu_matches_installed_torch(monkeypatch: pytest.MonkeyPatch, sms: int) -> None:
    theirs = _torch_is_big_gpu(monkeypatch, device_type="xpu", sms=sms, major=12, hip=False)
    ours = gate.verdict(sm_count=sms, torch_version=INSTALLED, vendor=Vendor.INTEL).capable
    assert ours == theirs


@pytest.mark.parametrize("major", [7, 8, 9, 10, 11, 12])
@pytest.mark.parametrize("cus", [40, 120, 304])
def test_rocm_matches_installed_torch(
    monkeypatch: pytest.MonkeyPatch, major: int, cus: int
) -> None:
    theirs = _torch_is_big_gpu(monkeypatch, device_type="cuda", sms=cus, major=major, hip=True)
    ours = gate.verdict(
        sm_count=cus, torch_version=INSTALLED, vendor=Vendor.AMD, arch_major=major
    ).capable
    assert ours == theirs


def test_installed_torch_is_within_the_table() -> None:
    # A torch newer than the table's newest reading must be read and the table
    # extended (with this test's run as the proof), not assumed.
    assert gate.parse_torch_version(INSTALLED) <= gate.NEWEST_KNOWN
