"""Failure classification and the GEMM search space (no GPU needed for either)."""

from __future__ import annotations

import pytest

from maxtune.agent.failures import Reason, classify, exit_reason, short
from maxtune.agent.gemm_configs import GENERIC_SPACE, HOPPER_SPACE, GemmConfig, search_space

H100_SMEM_OPTIN = (
    232448  # torch: shared_memory_per_block_optin on an H100 (seen in the OutOfResources message)
)


@pytest.mark.parametrize(
    ("exc_type", "message", "reason"),
    [
        (
            "OutOfMemoryError",
            "CUDA out of memory. Tried to allocate 2.00 GiB",
            Reason.OUT_OF_MEMORY,
        ),
        ("RuntimeError", "CUDA error: unspecified launch failure", Reason.DEVICE_LOST),
        ("AcceleratorError", "CUDA error: GPU has fallen off the bus", Reason.DEVICE_LOST),
        ("CompilationError", "at 12:4: unsupported", Reason.TRITON_COMPILE_FAILED),
        (
            "OutOfResources",
            "out of resource: shared memory, Required: 262176",
            Reason.TRITON_COMPILE_FAILED,
        ),
        ("PTXASError", "ptxas fatal", Reason.TRITON_COMPILE_FAILED),
        ("RuntimeError", "CUDA error: an illegal memory access was encountered", Reason.CUDA_ERROR),
        ("ModuleNotFoundError", "No module named 'triton'", Reason.MISSING_SOFTWARE),
        ("ValueError", "something else", Reason.FAILED),
    ],
)
def test_classify(exc_type: str, message: str, reason: Reason) -> None:
    assert classify(exc_type, message) is reason


def test_exit_reasons() -> None:
    assert exit_reason(None, "") is Reason.TIMEOUT
    assert exit_reason(1, "torch.OutOfMemoryError: CUDA out of memory") is Reason.OUT_OF_MEMORY
    assert exit_reason(1, "RuntimeError: CUDA error: unknown error") is Reason.DEVICE_LOST
    assert exit_reason(-9, "") is Reason.OUT_OF_MEMORY
    assert exit_reason(-11, "Segmentation fault") is Reason.WORKER_CRASHED


def test_short_messages_are_one_bounded_line() -> None:
    assert short("a\n  b\tc") == "a b c"
    assert len(short("x" * 5000, 600)) == 600


def test_reasons_fit_the_condition_reason_pattern() -> None:
    import re

    for reason in Reason:
        assert re.match(r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$", reason.value)


def test_search_space_by_architecture() -> None:
    assert search_space((9, 0)) is HOPPER_SPACE
    assert search_space((10, 0)) is HOPPER_SPACE
    assert search_space((8, 0)) is GENERIC_SPACE
    for space in (HOPPER_SPACE, GENERIC_SPACE):
        labels = [c.label() for c in space]
        assert len(set(labels)) == len(labels)


def test_hopper_space_fits_hopper_shared_memory() -> None:
    # Seen on the H100: 128x256x64 with 4 stages needs 262176 bytes and cannot launch.
    assert GemmConfig(128, 256, 64, stages=4).shared_memory_bytes() > H100_SMEM_OPTIN
    assert all(c.shared_memory_bytes() <= H100_SMEM_OPTIN for c in HOPPER_SPACE)


def test_label_names_every_choice() -> None:
    cfg = GemmConfig(128, 256, 64, group_m=8, stages=4, warps=8, persistent=False, subtile=True)
    assert cfg.label() == "128x256x64 g8 s4 w8 tiles subtile"
