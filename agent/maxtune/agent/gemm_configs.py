"""The reference GEMM's search space, without importing torch or triton.

The agent reports the winning configuration by its label, and the tests check
the space without a GPU, so the configurations live apart from the kernel.
The space is small on purpose: every configuration costs a Triton compile
(about a second) on every node, and the agent must publish a full profile in
well under 90 s. It holds the shapes that win on Hopper (128x256 tiles, 64-wide
K steps, 3-4 pipeline stages, 8 warps, a persistent grid over TMA descriptors)
plus a few that win on smaller or older GPUs, so a node of any kind finds a
configuration that is fair to Triton.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class GemmConfig:
    """One point of the search: tile shape, pipelining and grid strategy."""

    block_m: int
    block_n: int
    block_k: int
    group_m: int = 8
    stages: int = 3
    warps: int = 8
    persistent: bool = True
    subtile: bool = False  # store the epilogue in two halves (frees shared memory for stages)
    warp_specialize: bool = False

    def label(self) -> str:
        """A short stable name, e.g. `128x256x64 g8 s3 w8 persistent`."""
        parts = [
            f"{self.block_m}x{self.block_n}x{self.block_k}",
            f"g{self.group_m}",
            f"s{self.stages}",
            f"w{self.warps}",
            "persistent" if self.persistent else "tiles",
        ]
        if self.subtile:
            parts.append("subtile")
        if self.warp_specialize:
            parts.append("ws")
        return " ".join(parts)

    def shared_memory_bytes(self, element_bytes: int = 2) -> int:
        """Operand ring buffers plus the epilogue tile: what must fit the SM's shared memory."""
        ring = self.stages * (self.block_m + self.block_n) * self.block_k * element_bytes
        epilogue_n = self.block_n // 2 if self.subtile else self.block_n
        return ring + self.block_m * epilogue_n * element_bytes

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# Hopper (sm_90) and newer: TMA descriptors, wgmma, 227 KiB of shared memory per block.
# Chosen from 42 configurations timed on an H100 (benchmarks/agent/runs/, 2026-11-25):
# the persistent 128x256x64 s3 w8 grid won at 4096 and 8192; the others are its
# nearest rivals there and the shapes that win where SMs or shared memory are fewer.
# Warp specialisation is left out: Triton 3.6 did not specialise this loop on
# Hopper (same time), and with 4 warps it ran at a tenth of the speed.
HOPPER_SPACE: tuple[GemmConfig, ...] = (
    GemmConfig(128, 256, 64, group_m=8, stages=3, warps=8),
    GemmConfig(128, 256, 64, group_m=8, stages=4, warps=8, subtile=True),
    GemmConfig(128, 256, 64, group_m=16, stages=3, warps=8),
    GemmConfig(128, 256, 64, group_m=4, stages=3, warps=8),
    GemmConfig(128, 256, 64, group_m=8, stages=3, warps=8, persistent=False),
    GemmConfig(128, 256, 64, group_m=8, stages=4, warps=8, persistent=False, subtile=True),
    GemmConfig(128, 128, 64, group_m=8, stages=5, warps=4),
    GemmConfig(256, 128, 64, group_m=8, stages=3, warps=8),
)

# Ampere/Ada and others: descriptors still work (Triton falls back to plain loads),
# but smaller tiles and fewer stages fit their shared memory.
GENERIC_SPACE: tuple[GemmConfig, ...] = (
    GemmConfig(128, 128, 32, group_m=8, stages=4, warps=4, persistent=False),
    GemmConfig(128, 256, 32, group_m=8, stages=3, warps=8, persistent=False),
    GemmConfig(128, 128, 64, group_m=8, stages=3, warps=4, persistent=False),
    GemmConfig(64, 128, 32, group_m=8, stages=4, warps=4, persistent=False),
    GemmConfig(128, 64, 32, group_m=8, stages=4, warps=4, persistent=False),
)


def search_space(compute_capability: tuple[int, int]) -> tuple[GemmConfig, ...]:
    """The configurations worth compiling on a GPU of this compute capability."""
    major, _ = compute_capability
    return HOPPER_SPACE if major >= 9 else GENERIC_SPACE
