"""One fresh process compiles one workload through whatever cache the environment names.

    python -m benchmarks.cache.compile_child --workload mlp --mode default --device cpu --tiny

It is a new pod in miniature: torch is imported here, torch.compile runs once from whatever
TORCHINDUCTOR_CACHE_DIR / TORCHINDUCTOR_REDIS_URL / TORCHINDUCTOR_*_REMOTE_CACHE the parent
set, and the last line of stdout is one JSON object: the seconds of the first call (compile
included), the median step time after warm-up, whether the output matches eager, and torch's
own cache counters (`counters["inductor"]`, `counters["aot_autograd"]`, the remote cache's
hit/miss/put/exception tallies). The tests and benchmarks/cache/gpu_cache_run.py read it.

Workloads: `mlp`, the agent's reference block (maxtune.agent.compile_bench, inference);
`train`, a small transformer's training step (forward, backward, AdamW; bf16 autocast on GPUs).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

T0 = time.perf_counter()

import torch  # noqa: E402 - the import is part of what a fresh process pays

IMPORT_S = time.perf_counter() - T0

# (m, k, hidden) of the MLP; (layers, width, heads, seq, batch) of the transformer.
MLP_SIZES = {"full": (4096, 4096, 16384), "tiny": (64, 128, 256)}
TRAIN_SIZES = {"full": (2, 512, 8, 256, 8), "tiny": (1, 64, 4, 32, 2)}
COUNTER_WORDS = ("cache", "autotune", "select_algorithm", "triton_bundler")


class Block(torch.nn.Module):
    """A pre-norm transformer block: attention (SDPA) and a GELU MLP."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = torch.nn.LayerNorm(width)
        self.qkv = torch.nn.Linear(width, 3 * width)
        self.proj = torch.nn.Linear(width, width)
        self.norm2 = torch.nn.LayerNorm(width)
        self.up = torch.nn.Linear(width, 4 * width)
        self.down = torch.nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq, width = x.shape
        q, k, v = self.qkv(self.norm1(x)).chunk(3, dim=-1)
        shape = (batch, seq, self.heads, width // self.heads)
        q, k, v = (t.reshape(shape).transpose(1, 2) for t in (q, k, v))
        att = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(att.transpose(1, 2).reshape(batch, seq, width))
        out: torch.Tensor = x + self.down(torch.nn.functional.gelu(self.up(self.norm2(x))))
        return out


class Transformer(torch.nn.Module):
    def __init__(self, layers: int, width: int, heads: int, vocab: int = 1024) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, width)
        self.blocks = torch.nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.norm = torch.nn.LayerNorm(width)
        self.head = torch.nn.Linear(width, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens)
        for block in self.blocks:
            x = block(x)
        logits: torch.Tensor = self.head(self.norm(x))
        return logits


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def prewarm(device: str) -> float:
    """torch.compile's one-time start in a process (importing Inductor, starting its compile
    workers, Triton's GPU backend), paid by a one-op function compiled first with every cache
    switched off, so that nothing is stored or served; its counters and phases are then
    cleared. The model's first call after it is the part of a compile a cache can serve. The
    seconds returned are about what every process pays anyway, warm or cold (they also hold
    one small kernel's compile: 5.1-8.0 s on the H200)."""
    import torch._functorch.config as functorch_config  # noqa: PLC0415
    import torch._inductor.config as inductor_config  # noqa: PLC0415
    from torch._dynamo.utils import compilation_time_metrics, counters  # noqa: PLC0415

    x = torch.ones(8, device=device)
    off = {
        "fx_graph_cache": False,
        "fx_graph_remote_cache": False,
        "autotune_local_cache": False,
        "autotune_remote_cache": False,
        "bundled_autotune_remote_cache": False,
    }
    began = time.perf_counter()
    with (
        inductor_config.patch(off),
        functorch_config.patch(enable_autograd_cache=False, enable_remote_autograd_cache=False),
    ):
        torch.compile(lambda t: t * 2 + 1)(x)
        _sync(device)
    seconds = time.perf_counter() - began
    counters.clear()
    compilation_time_metrics.clear()
    return seconds


def _median_step(fn: Callable[[], Any], device: str, steps: int) -> float:
    times = []
    for _ in range(steps):
        _sync(device)
        began = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def _rel_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    out32, ref32 = out.float(), ref.float()
    if not bool(torch.isfinite(out32).all()):
        return float("inf")
    return float(torch.linalg.vector_norm(out32 - ref32) / torch.linalg.vector_norm(ref32))


def run_mlp(mode: str, device: str, size: str, steps: int) -> dict[str, Any]:
    from maxtune.agent.blocks import _Mlp  # noqa: PLC0415 - the agent's own block

    m, k, hidden = MLP_SIZES[size]
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    gen = torch.Generator(device=device).manual_seed(1234)
    x = torch.randn((m, k), device=device, dtype=dtype, generator=gen)
    w1 = torch.randn((k, hidden), device=device, dtype=dtype, generator=gen) / k**0.5
    w2 = torch.randn((hidden, k), device=device, dtype=dtype, generator=gen) / hidden**0.5
    model = _Mlp(w1, w2)
    with torch.no_grad():
        ref = model(x)
        fn = torch.compile(model, mode=mode, fullgraph=True, dynamic=False)
        _sync(device)
        began = time.perf_counter()
        out = fn(x)
        _sync(device)
        first_s = time.perf_counter() - began
        for _ in range(3):  # CUDA-graph modes record on the first calls after compile
            out = fn(x)
        step_s = _median_step(lambda: fn(x), device, steps)
    return {"first_call_s": first_s, "step_s": step_s, "rel_error": _rel_error(out, ref)}


def run_train(mode: str, device: str, size: str, steps: int) -> dict[str, Any]:
    layers, width, heads, seq, batch = TRAIN_SIZES[size]
    torch.manual_seed(1234)
    model = Transformer(layers, width, heads).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    tokens = torch.randint(0, 1024, (batch, seq), device=device)
    target = torch.randint(0, 1024, (batch, seq), device=device)
    compiled = torch.compile(model, mode=mode)
    use_bf16 = device == "cuda"

    def step() -> torch.Tensor:
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=use_bf16):
            logits = compiled(tokens)
            loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), target.flatten())
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    _sync(device)
    began = time.perf_counter()
    loss = step()  # forward and backward graphs compile here
    _sync(device)
    first_s = time.perf_counter() - began
    for _ in range(3):
        loss = step()
    step_s = _median_step(step, device, steps)
    finite = bool(torch.isfinite(loss).all())
    return {"first_call_s": first_s, "step_s": step_s, "loss": float(loss), "finite": finite}


def counters_snapshot() -> dict[str, Any]:
    from torch._dynamo.utils import counters  # noqa: PLC0415
    from torch._inductor.remote_cache import cache_stats  # noqa: PLC0415

    picked = {
        group: {
            key: int(value)
            for key, value in counters[group].items()
            if any(word in key for word in COUNTER_WORDS)
        }
        for group in ("inductor", "aot_autograd")
    }
    remote = {
        name: {"hit": s.hit, "miss": s.miss, "put": s.put, "exception": s.exception}
        for name, s in cache_stats._stats.items()
    }
    return {**picked, "remote": remote}


def compiled_code() -> list[str]:
    """The keys (hashes of the source) of the compiled graphs' Python modules this process ran:
    the wrapper code embeds every kernel's source, so two processes with the same keys ran
    the same code, and a step-time difference between them is noise, not the cache."""
    from torch._inductor.codecache import PyCodeCache  # noqa: PLC0415

    return sorted(
        {Path(m.__file__).stem for m in PyCodeCache.modules if hasattr(m, "call") and m.__file__}
    )


def compile_phases() -> dict[str, float]:
    """Seconds per phase torch times itself (`dynamo_timed`: tracing, AOTAutograd, Inductor's
    codegen, the FX cache's lookup, loading kernels...), summed over graphs: where a warm
    first call still spends its time. Phases nest, so they do not add up to the whole."""
    from torch._dynamo.utils import compilation_time_metrics  # noqa: PLC0415

    return {name: round(sum(values), 4) for name, values in compilation_time_metrics.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cache.compile_child")
    parser.add_argument("--workload", choices=["mlp", "train"], default="mlp")
    parser.add_argument("--mode", default="default")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--tiny", action="store_true", help="sizes for a CPU smoke run")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument(
        "--prewarm", action="store_true", help="pay torch.compile's process start first (init_s)"
    )
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("compile_child: --device cuda, but torch sees no GPU", file=sys.stderr)
        return 2
    size = "tiny" if args.tiny else "full"
    run = run_mlp if args.workload == "mlp" else run_train
    init_s = prewarm(args.device) if args.prewarm else None
    result = run(args.mode, args.device, size, args.steps)
    result["init_s"] = init_s
    try:
        import redis  # noqa: F401, PLC0415

        has_redis = True
    except ImportError:
        has_redis = False
    result.update(
        workload=args.workload,
        mode=args.mode,
        device=args.device,
        size=size,
        import_s=IMPORT_S,
        total_s=time.perf_counter() - T0,
        torch=torch.__version__,
        gpu=torch.cuda.get_device_name() if args.device == "cuda" else None,
        redis_package=has_redis,
        counters=counters_snapshot(),
        phases=compile_phases(),
        code=compiled_code(),
    )
    print(json.dumps(result, sort_keys=True), flush=True)
    sys.stderr.flush()
    # Everything is measured and every cache write is done (torch's remote puts are
    # synchronous): skip the interpreter's teardown (compile workers, CUDA), which took
    # 8-10 s per process on the H200 and is nothing a pod's compile waits for.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
