"""The two reference blocks the compile comparison times.

training: one transformer block's training step in bf16: forward, backward and a fused
AdamW step. The block is the parallel form (GPT-J, PaLM): attention and MLP read the same
LayerNorm output, their input projections are one matmul and their output projections
another. It has attention, an MLP, a norm and residuals like any transformer block, but
two weight matrices instead of four, so max-autotune has six GEMM shapes to tune
(forward, input gradient and weight gradient of two matmuls) instead of twelve: its
backward compile, the expensive part, stays small enough for the agent's budget. The
model is compiled, the optimizer runs eagerly (the common `torch.compile(model)` loop).

inference: the GEMM-heavy MLP of facts/h100.md, `gelu(x @ w1) @ w2` in bf16 under
no_grad, where max-autotune's GEMM templates could matter and were seen to be slower
than default on an H100 and an H200. Reported beside the training block; not the basis
of the advice any more.

Weights are parameters, as in a real model: CUDA-graph modes treat them as static (passed
as plain inputs, cudagraph trees would copy them on every replay).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

Module = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True, slots=True)
class TrainingShape:
    batch: int = 8
    seq: int = 512
    width: int = 1024
    heads: int = 8
    ff: int = 4096


@dataclass(frozen=True, slots=True)
class MlpShape:
    m: int = 4096
    k: int = 4096
    hidden: int = 16384


TRAINING = TrainingShape()
TRAINING_TINY = TrainingShape(batch=2, seq=32, width=64, heads=2, ff=128)
MLP = MlpShape()
MLP_TINY = MlpShape(m=64, k=64, hidden=128)


def training_description(s: TrainingShape, fused: bool = True) -> str:
    return (
        f"transformer block (parallel attention+MLP) train step bf16 x={s.batch}x{s.seq}x"
        f"{s.width} heads={s.heads} ff={s.ff}, AdamW{' fused' if fused else ''}"
    )


def mlp_description(s: MlpShape) -> str:
    return f"mlp gelu(x@w1)@w2 bf16 x={s.m}x{s.k} w1={s.k}x{s.hidden} w2={s.hidden}x{s.k}"


def rel_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    out32 = out.float()
    if not bool(torch.isfinite(out32).all()):
        return float("inf")
    return float(torch.linalg.vector_norm(out32 - ref) / torch.linalg.vector_norm(ref))


class Block:
    """A reference workload: its module, one step with a (compiled) module, a result check."""

    workload: str
    description: str
    device: torch.device
    error_limit: float
    model: nn.Module

    def compile(self, mode: str) -> Module:
        return torch.compile(self.model, mode=mode, fullgraph=True, dynamic=False)

    def step(self, fn: Module) -> None:
        """One timed step with `fn` (the eager model or a compiled one)."""
        raise NotImplementedError

    def check(self, fn: Module) -> float:
        """The compiled module's first call (the compile itself); its relative error."""
        raise NotImplementedError


# ---------------------------------------------------------------- training


class _ParallelBlock(nn.Module):
    def __init__(self, s: TrainingShape) -> None:
        super().__init__()
        self.shape = s
        self.norm = nn.LayerNorm(s.width)
        self.w_in = nn.Linear(s.width, 3 * s.width + s.ff, bias=False)
        self.w_out = nn.Linear(s.width + s.ff, s.width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.shape
        head = s.width // s.heads
        h = self.norm(x)
        q, k, v, m = self.w_in(h).split([s.width, s.width, s.width, s.ff], dim=-1)
        q, k, v = (t.view(s.batch, s.seq, s.heads, head).transpose(1, 2) for t in (q, k, v))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        a = a.transpose(1, 2).reshape(s.batch, s.seq, s.width)
        out: torch.Tensor = x + self.w_out(torch.cat([a, F.gelu(m, approximate="tanh")], dim=-1))
        return out


class _Loss(nn.Module):
    """The block and its loss, so that one compiled graph (and its backward) holds both."""

    def __init__(self, block: _ParallelBlock) -> None:
        super().__init__()
        self.block = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        loss: torch.Tensor = self.block(x).float().pow(2).mean()
        return loss


class TrainingBlock(Block):
    workload = "training"
    error_limit = 5e-2  # bf16 gradients; a wrong kernel is off by far more

    def __init__(self, device: torch.device, shape: TrainingShape = TRAINING) -> None:
        self.device = device
        self.description = training_description(shape, fused=device.type == "cuda")
        gen = torch.Generator(device=device).manual_seed(1234)
        torch.manual_seed(1234)
        self.model = _Loss(_ParallelBlock(shape)).to(device=device, dtype=torch.bfloat16)
        self.x = torch.randn(
            (shape.batch, shape.seq, shape.width),
            device=device,
            dtype=torch.bfloat16,
            generator=gen,
        )
        params = list(self.model.parameters())
        fused = device.type == "cuda"
        self.optimizer = torch.optim.AdamW(params, lr=1e-4, fused=fused)
        # Eager's loss and gradients at the initial weights: every mode is checked against
        # them on its first call, before any optimizer step moves the weights.
        self.model.zero_grad(set_to_none=True)
        loss = self.model(self.x)
        loss.backward()
        self.ref_loss = loss.detach().float()
        self.ref_grads = [p.grad.detach().float().clone() for p in params if p.grad is not None]
        self.model.zero_grad(set_to_none=True)

    def step(self, fn: Module) -> None:
        torch.compiler.cudagraph_mark_step_begin()  # type: ignore[no-untyped-call]
        fn(self.x).backward()  # type: ignore[no-untyped-call]
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def check(self, fn: Module) -> float:
        # Forward and backward without the optimizer step: loss and gradients are compared
        # at the initial weights, which no mode has moved yet (all compile before any times).
        torch.compiler.cudagraph_mark_step_begin()  # type: ignore[no-untyped-call]
        self.model.zero_grad(set_to_none=True)
        loss = fn(self.x)
        loss.backward()  # type: ignore[no-untyped-call]
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        if len(grads) != len(self.ref_grads):
            return float("inf")
        errors = [rel_error(loss.detach().reshape(1), self.ref_loss.reshape(1))]
        errors += [rel_error(g, r) for g, r in zip(grads, self.ref_grads, strict=True)]
        self.model.zero_grad(set_to_none=True)
        return max(errors)


# ---------------------------------------------------------------- inference


class _Mlp(nn.Module):
    def __init__(self, w1: torch.Tensor, w2: torch.Tensor) -> None:
        super().__init__()
        self.w1 = nn.Parameter(w1, requires_grad=False)
        self.w2 = nn.Parameter(w2, requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x @ self.w1) @ self.w2


class InferenceBlock(Block):
    workload = "inference"
    error_limit = 3e-2

    def __init__(self, device: torch.device, shape: MlpShape = MLP) -> None:
        self.device = device
        self.description = mlp_description(shape)
        gen = torch.Generator(device=device).manual_seed(1234)
        m, k, hidden = shape.m, shape.k, shape.hidden
        self.x = torch.randn((m, k), device=device, dtype=torch.bfloat16, generator=gen)
        w1 = torch.randn((k, hidden), device=device, dtype=torch.bfloat16, generator=gen)
        w2 = torch.randn((hidden, k), device=device, dtype=torch.bfloat16, generator=gen)
        self.model = _Mlp(w1 / k**0.5, w2 / hidden**0.5)
        with torch.no_grad():
            self.ref = self.model(self.x).float()

    def step(self, fn: Module) -> None:
        with torch.no_grad():
            fn(self.x)

    def check(self, fn: Module) -> float:
        with torch.no_grad():
            return rel_error(fn(self.x), self.ref)


def build(workload: str, device: torch.device, *, tiny: bool = False) -> Block:
    """The block for `workload`; `tiny` shapes serve smoke tests on a CPU."""
    if workload == "training":
        return TrainingBlock(device, TRAINING_TINY if tiny else TRAINING)
    if workload == "inference":
        return InferenceBlock(device, MLP_TINY if tiny else MLP)
    raise ValueError(f"unknown workload {workload!r} (training or inference)")
