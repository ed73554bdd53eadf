"""The project's own reference GEMM: bf16 operands, fp32 accumulation, Triton.

One kernel covers both grid strategies. With `NUM_PROGRAMS` equal to the number
of output tiles every program computes one tile (the classic launch); with it
equal to the SM count the grid is persistent: each program walks the tiles in
grouped order (GROUP_M rows of tiles at a time, so neighbouring programs share
A and B panels in L2), and the loop over tiles is flattened into the K loop so
the software pipeline never drains between tiles. Operands and the result move
through TMA tensor descriptors made on the host, so on Hopper the loads are
bulk tensor copies and the products are wgmma. B is read as stored (K x N, row
major), exactly what cuBLAS gets from `a @ b`, so the comparison is like for like.

Imported only inside the measurement subprocess: it needs torch and triton.
"""

from __future__ import annotations

from typing import Any

import torch
import triton
import triton.language as tl
from triton.tools.tensor_descriptor import TensorDescriptor

from maxtune.agent.gemm_configs import GemmConfig


@triton.jit  # type: ignore[untyped-decorator]
def _tile_coords(tile_id, num_pid_m, num_pid_n, GROUP_M: tl.constexpr):  # type: ignore[no-untyped-def]
    num_pid_in_group = GROUP_M * num_pid_n
    group_id = tile_id // num_pid_in_group
    first_pid_m = group_id * GROUP_M
    group_size_m = tl.minimum(num_pid_m - first_pid_m, GROUP_M)
    pid_m = first_pid_m + (tile_id % group_size_m)
    pid_n = (tile_id % num_pid_in_group) // group_size_m
    return pid_m, pid_n


@triton.jit  # type: ignore[untyped-decorator]
def gemm_kernel(  # type: ignore[no-untyped-def]  # noqa: PLR0917 - a kernel's signature
    a_desc,
    b_desc,
    c_desc,
    M,
    N,
    K,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
    NUM_PROGRAMS: tl.constexpr,
    SUBTILE: tl.constexpr,
    WARP_SPECIALIZE: tl.constexpr,
):
    start = tl.program_id(axis=0)
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    k_tiles = tl.cdiv(K, BLOCK_K)
    num_tiles = num_pid_m * num_pid_n
    # A second tile counter for the epilogue keeps the prologue and the epilogue
    # of the flattened pipeline independent of each other.
    tile_id_c = start - NUM_PROGRAMS
    for tile_id in tl.range(
        start, num_tiles, NUM_PROGRAMS, flatten=True, warp_specialize=WARP_SPECIALIZE
    ):
        pid_m, pid_n = _tile_coords(tile_id, num_pid_m, num_pid_n, GROUP_M)
        offs_m = pid_m * BLOCK_M
        offs_n = pid_n * BLOCK_N
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for ki in range(k_tiles):
            offs_k = ki * BLOCK_K
            a = a_desc.load([offs_m, offs_k])
            b = b_desc.load([offs_k, offs_n])
            acc = tl.dot(a, b, acc)

        tile_id_c += NUM_PROGRAMS
        pid_m, pid_n = _tile_coords(tile_id_c, num_pid_m, num_pid_n, GROUP_M)
        offs_cm = pid_m * BLOCK_M
        offs_cn = pid_n * BLOCK_N
        if SUBTILE:
            halves = tl.permute(tl.reshape(acc, (BLOCK_M, 2, BLOCK_N // 2)), (0, 2, 1))
            acc0, acc1 = tl.split(halves)
            c_desc.store([offs_cm, offs_cn], acc0.to(c_desc.dtype))
            c_desc.store([offs_cm, offs_cn + BLOCK_N // 2], acc1.to(c_desc.dtype))
        else:
            c_desc.store([offs_cm, offs_cn], acc.to(c_desc.dtype))


def tiles(m: int, n: int, cfg: GemmConfig) -> int:
    return int(triton.cdiv(m, cfg.block_m) * triton.cdiv(n, cfg.block_n))


def programs(m: int, n: int, cfg: GemmConfig, num_sms: int) -> int:
    count = tiles(m, n, cfg)
    return min(num_sms, count) if cfg.persistent else count


def _arguments(
    a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, cfg: GemmConfig, num_sms: int
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    m, k = a.shape
    _, n = b.shape
    epilogue_n = cfg.block_n // 2 if cfg.subtile else cfg.block_n
    a_desc = TensorDescriptor.from_tensor(a, [cfg.block_m, cfg.block_k])
    b_desc = TensorDescriptor.from_tensor(b, [cfg.block_k, cfg.block_n])
    c_desc = TensorDescriptor.from_tensor(c, [cfg.block_m, epilogue_n])
    meta = {
        "BLOCK_M": cfg.block_m,
        "BLOCK_N": cfg.block_n,
        "BLOCK_K": cfg.block_k,
        "GROUP_M": cfg.group_m,
        "NUM_PROGRAMS": programs(m, n, cfg, num_sms),
        "SUBTILE": cfg.subtile,
        "WARP_SPECIALIZE": cfg.warp_specialize,
        "num_warps": cfg.warps,
        "num_stages": cfg.stages,
    }
    return (a_desc, b_desc, c_desc, m, n, k), meta


def compile_only(
    a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, cfg: GemmConfig, num_sms: int
) -> Any:
    """Compile without launching (runs inside triton's AsyncCompileMode for parallel builds)."""
    args, meta = _arguments(a, b, c, cfg, num_sms)
    return gemm_kernel.warmup(*args, grid=(1,), **meta)


def launcher(
    a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, cfg: GemmConfig, num_sms: int
) -> Any:
    """A zero-argument callable that computes c = a @ b with `cfg` (descriptors made once)."""
    if a.dtype != b.dtype or a.shape[1] != b.shape[0]:
        raise ValueError(f"shapes {tuple(a.shape)} @ {tuple(b.shape)} do not multiply")
    args, meta = _arguments(a, b, c, cfg, num_sms)
    grid = (meta["NUM_PROGRAMS"],)

    def run() -> None:
        gemm_kernel[grid](*args, **meta)

    return run
