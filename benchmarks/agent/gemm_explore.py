"""Explore the reference GEMM's configuration space on a real GPU (run on the device machine).

    PYTHONPATH=core:agent python3 benchmarks/agent/gemm_explore.py --out $OUT

Prints, per size, every configuration's TFLOP/s and ratio to cuBLAS, the
compile time of the agent's search space sequentially and in threads, and the
agent's own search (`gemm_bench.measure`) end to end, as the agent would run it.
Also probes the NVML and CUDA driver calls the inventory relies on.
"""

# ruff: noqa: PLC0415, PLR0915
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

T0 = time.monotonic()
os.environ["TRITON_CACHE_DIR"] = tempfile.mkdtemp(prefix="triton-explore-")


def probe_apis() -> dict[str, object]:
    import pynvml

    out: dict[str, object] = {}
    pynvml.nvmlInit()
    try:
        out["driver"] = pynvml.nvmlSystemGetDriverVersion()
        out["cuda_driver"] = pynvml.nvmlSystemGetCudaDriverVersion_v2()
        out["nvml"] = pynvml.nvmlSystemGetNVMLVersion()
        count = pynvml.nvmlDeviceGetCount()
        out["count"] = count
        for i in range(count):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            dev: dict[str, object] = {
                "uuid": pynvml.nvmlDeviceGetUUID(h),
                "name": pynvml.nvmlDeviceGetName(h),
                "mem_total": pynvml.nvmlDeviceGetMemoryInfo(h).total,
                "cc": pynvml.nvmlDeviceGetCudaComputeCapability(h),
                "pci": pynvml.nvmlDeviceGetPciInfo(h).busId,
            }
            for name in ("nvmlDeviceGetMigMode", "nvmlDeviceGetMaxMigDeviceCount"):
                try:
                    dev[name] = getattr(pynvml, name)(h)
                except pynvml.NVMLError as exc:
                    dev[name] = f"error: {exc} ({type(exc).__name__})"
            try:
                procs = pynvml.nvmlDeviceGetComputeRunningProcesses(h)
                dev["procs"] = [(p.pid, p.usedGpuMemory) for p in procs]
            except pynvml.NVMLError as exc:
                dev["procs"] = f"error: {exc}"
            try:
                pynvml.nvmlDeviceGetAttributes(h)
            except pynvml.NVMLError as exc:
                dev["attributes"] = f"{type(exc).__name__}: {exc}"
            out[f"gpu{i}"] = dev
    finally:
        pynvml.nvmlShutdown()
    from cuda.bindings import driver as cu

    (err,) = cu.cuInit(0)
    err, n = cu.cuDeviceGetCount()
    out["cu_count"] = n
    for i in range(n):
        err, dev_h = cu.cuDeviceGet(i)
        err, sms = cu.cuDeviceGetAttribute(
            cu.CUdevice_attribute.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, dev_h
        )
        err, uuid = cu.cuDeviceGetUuid(dev_h)
        out[f"cu{i}"] = {"sms": sms, "uuid_bytes": bytes(uuid.bytes).hex(), "err": str(err)}
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("."))
    parser.add_argument("--sizes", default="4096,8192")
    parser.add_argument("--skip-broad", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict[str, object] = {"apis": probe_apis()}
    print(json.dumps(report["apis"], indent=1), flush=True)

    t = time.monotonic()
    import torch
    import triton

    report["import_torch_triton_s"] = time.monotonic() - t
    print(f"import torch+triton {report['import_torch_triton_s']:.2f}s", flush=True)

    from maxtune.agent import gemm_bench, gemm_kernel
    from maxtune.agent.gemm_configs import HOPPER_SPACE, GemmConfig

    torch.cuda.init()
    num_sms = torch.cuda.get_device_properties(0).multi_processor_count
    sizes = [int(s) for s in args.sizes.split(",")]

    # Compile time of the agent's space: sequential vs threads, each in a fresh cache.
    for threads in (1, 8):
        os.environ["TRITON_CACHE_DIR"] = tempfile.mkdtemp(prefix=f"triton-t{threads}-")
        gemm_kernel.gemm_kernel.device_caches.clear()
        t = time.monotonic()
        errs = gemm_bench.precompile(HOPPER_SPACE, sizes, num_sms, threads)
        report[f"compile_space_threads{threads}_s"] = time.monotonic() - t
        print(
            f"compile {len(HOPPER_SPACE)} configs x {len(sizes)} sizes, threads={threads}: "
            f"{report[f'compile_space_threads{threads}_s']:.1f}s errors={len(errs)}",
            flush=True,
        )
        for cfg, e in errs.items():
            print("  compile error", cfg.label(), e[:300], flush=True)

    # The agent's own search end to end, fresh cache.
    os.environ["TRITON_CACHE_DIR"] = tempfile.mkdtemp(prefix="triton-agent-")
    gemm_kernel.gemm_kernel.device_caches.clear()
    t = time.monotonic()
    results = gemm_bench.measure(sizes, HOPPER_SPACE, deadline=time.monotonic() + 120)
    report["agent_search_s"] = time.monotonic() - t
    report["agent"] = [r.wire() for r in results]
    report["agent_trials"] = [r.trial_table() for r in results]
    for r in results:
        w = r.wire()
        print(
            f"AGENT size {r.size}: ok={r.ok} best={w['best_config']} "
            f"triton={w['triton_flops'] / 1e12:.1f} cublas={w['cublas_flops'] / 1e12:.1f} "
            f"ratio={w['ratio_to_cublas']:.4f} autotune={r.autotune_seconds:.1f}s "
            f"err={r.rel_error} reason={r.reason} msg={r.message}",
            flush=True,
        )
        for row in r.trial_table():
            print("   ", row, flush=True)

    if not args.skip_broad:
        broad: list[GemmConfig] = []
        for bm, bn in ((128, 256), (256, 128)):
            for stages in (3, 4):
                for persistent in (True, False):
                    for subtile in (False, True):
                        broad.append(GemmConfig(bm, bn, 64, 8, stages, 8, persistent, subtile))
        for stages in (3, 4):
            for persistent in (True, False):
                for warps in (4, 8):
                    broad.append(
                        GemmConfig(128, 256, 64, 8, stages, warps, persistent, False, True)
                    )
        for stages in (4, 5):
            for warps in (4, 8):
                for persistent in (True, False):
                    broad.append(GemmConfig(128, 128, 64, 8, stages, warps, persistent))
        for group in (4, 16, 32):
            broad.append(GemmConfig(128, 256, 64, group, 3, 8, True))
            broad.append(GemmConfig(128, 256, 64, group, 4, 8, False))
        broad.append(GemmConfig(128, 128, 128, 8, 3, 8, True))
        broad.append(GemmConfig(128, 128, 128, 8, 3, 8, False))
        broad.append(GemmConfig(256, 128, 64, 8, 3, 8, True, False, True))
        broad.append(GemmConfig(128, 256, 64, 8, 2, 8, True))
        t = time.monotonic()
        errs = gemm_bench.precompile(broad, sizes, num_sms, 16)
        print(f"broad compile {len(broad)}: {time.monotonic() - t:.1f}s errs={len(errs)}")
        for cfg, e in errs.items():
            print("  compile error", cfg.label(), e[:200], flush=True)
        report["broad"] = {}
        for size in sizes:
            r = gemm_bench.measure_size(
                size,
                broad,
                num_sms=num_sms,
                compile_errors=errs,
                started=time.monotonic(),
                deadline=time.monotonic() + 300,
            )
            table = r.trial_table()
            report["broad"][str(size)] = {"summary": r.wire(), "trials": table}  # type: ignore[index]
            cub = r.cublas_seconds
            print(f"== size {size}: cuBLAS {2 * size**3 / cub / 1e12 if cub else 0:.1f} TFLOP/s")
            for row in sorted(table, key=lambda x: -(x["tflops"] or 0)):
                print(
                    f"  {row['config']:<40} {row['tflops'] or 0:7.1f}  err={row['rel_error']}"
                    f"  {row['error'] or ''}"[:200],
                    flush=True,
                )
            w = r.wire()
            print(
                f"BROAD size {size}: best={w['best_config']} ratio={w['ratio_to_cublas']:.4f} "
                f"triton={w['triton_flops'] / 1e12:.1f} cublas={w['cublas_flops'] / 1e12:.1f}",
                flush=True,
            )
    report["total_s"] = time.monotonic() - T0
    (args.out / "gemm_explore.json").write_text(json.dumps(report, indent=1, default=str))
    print(f"torch {torch.__version__} triton {triton.__version__} total {report['total_s']:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
