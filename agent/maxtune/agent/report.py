"""A readable table of a profile status, for `maxtune probe`."""

from __future__ import annotations

from collections.abc import Sequence

from maxtune.contract.assess import gpu_capable, mig_capable
from maxtune.contract.models import CompileMeasurement, Measurements, PolicySpec, ProfileStatus
from maxtune.contract.policy import torch_rule


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def render(status: ProfileStatus, spec: PolicySpec) -> str:
    rule = torch_rule(spec)
    sw = status.software
    lines: list[str] = []
    if status.source == "simulation":
        lines.append(f"SIMULATED node from fleet file {status.simulation} (not real hardware)")
    inventoried = next((c for c in status.conditions if c.type == "Inventoried"), None)
    if not status.gpus:
        why = inventoried.message if inventoried else "no GPU found"
        lines.append(f"No GPU on this machine: {why.removeprefix('no GPU on this node: ')}")
        lines.append("Nothing here is max-autotune capable.")
        return "\n".join(lines)
    lines.append(
        f"driver {sw.driver_version or '?'}, CUDA {sw.cuda_driver_version or '?'}, "
        f"torch {sw.torch_version or 'not installed'}, triton {sw.triton_version or '-'}; "
        f"gate of torch {rule}"
    )
    rows = [["GPU", "PRODUCT", "MEMORY", "CC", "SMs", "RESOURCE", "CAPABLE", "WHY"]]
    for gpu in status.gpus:
        if gpu.mig_enabled:
            rows.append(
                [
                    str(gpu.index),
                    gpu.product,
                    f"{gpu.memory_mib} MiB",
                    gpu.compute_capability,
                    "-",
                    "(MIG mode)",
                    "-",
                    "whole GPU not schedulable",
                ]
            )
        else:
            capable = gpu_capable(gpu, rule)
            why = gpu.verdict.rule
            if gpu.verdict.capable and not capable:
                why += "; but the Triton GEMM check failed"
            rows.append(
                [
                    str(gpu.index),
                    gpu.product,
                    f"{gpu.memory_mib} MiB",
                    gpu.compute_capability,
                    str(gpu.sm_count) if gpu.sm_count is not None else "?",
                    gpu.resource or "",
                    "yes" if capable else "no",
                    why,
                ]
            )
        for mig in gpu.mig_instances:
            rows.append(
                [
                    f" {gpu.index}/{mig.gpu_instance_id}",
                    f"MIG {mig.profile}",
                    "",
                    "",
                    str(mig.sm_count) if mig.sm_count is not None else "?",
                    mig.resource or "(not scheduled)",
                    "yes" if mig_capable(mig, rule) else "no",
                    mig.verdict.rule,
                ]
            )
    lines += _table(rows)

    gemm_rows = [
        [
            "DEVICE",
            "SIZE",
            "TRITON TFLOP/s",
            "cuBLAS TFLOP/s",
            "RATIO",
            "AUTOTUNE",
            "TRIED",
            "BEST / ERROR",
        ]
    ]
    compile_rows = [
        ["DEVICE", "BLOCK", "MODE", "STEP ms", "COMPILE s", "WARM s", "GAIN [interval]", "ROUNDS"]
    ]
    for label, m in _measured_devices(status):
        for g in m.gemm:
            if g.ok:
                gemm_rows.append(
                    [
                        label,
                        str(g.size),
                        f"{g.triton_flops / 1e12:.1f}",
                        f"{g.cublas_flops / 1e12:.1f}",
                        f"{g.ratio_to_cublas:.1%}",
                        f"{g.autotune_seconds:.1f}s",
                        str(g.configs_tried),
                        g.best_config or "",
                    ]
                )
            else:
                gemm_rows.append(
                    [label, str(g.size), "-", "-", "-", "-", "-", f"{g.reason}: {g.message}"]
                )
        for block in (m.training, m.compile):
            if block is not None:
                compile_rows += _block_rows(label, block)
    if len(gemm_rows) > 1:
        lines += ["", "Reference GEMM (bf16, Triton autotuned vs cuBLAS, same run):"]
        lines += _table(gemm_rows)
    if len(compile_rows) > 1:
        lines += [
            "",
            "torch.compile on the reference blocks (training decides; gains: median of "
            "paired per-round gains, interval over every timing process):",
        ]
        lines += _table(compile_rows)
    lines.append("")
    for r in status.resources:
        lines.append(
            f"{r.name}: {r.count} x {r.gpu_class}, capable={str(r.capable).lower()}, "
            f"recommended mode {r.recommended_mode.value}"
        )
        if r.advice:
            lines.append(f"  {r.advice}")
    for c in status.conditions:
        if c.status != "True" and c.reason != "NotRequested":
            lines.append(f"{c.type}: {c.reason}: {c.message}")
    return "\n".join(lines)


def _measured_devices(status: ProfileStatus) -> list[tuple[str, Measurements]]:
    found: list[tuple[str, Measurements]] = []
    for gpu in status.gpus:
        if gpu.measurements is not None:
            found.append((str(gpu.index), gpu.measurements))
        for mig in gpu.mig_instances:
            if mig.measurements is not None:
                found.append((f"{gpu.index}/{mig.gpu_instance_id}", mig.measurements))
    return found


def _block_rows(label: str, block: CompileMeasurement) -> list[list[str]]:
    if not block.ok:
        return [[label, block.workload, "-", "-", "-", "-", f"{block.reason}: {block.message}", ""]]
    rows = []
    for t in block.modes:
        interval = (
            f" [{t.gain_low:+.1%}, {t.gain_high:+.1%}]"
            if t.gain_low is not None and t.gain_high is not None
            else ""
        )
        rows.append(
            [
                label,
                block.workload,
                t.mode.value,
                f"{t.step_seconds * 1e3:.3f}",
                f"{t.compile_seconds:.1f}",
                f"{t.warm_compile_seconds:.1f}" if t.warm_compile_seconds is not None else "-",
                f"{t.gain:+.1%}{interval}",
                f"{block.processes}x{block.rounds}",
            ]
        )
    return rows
