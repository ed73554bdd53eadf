"""The measurement child: one process per GPU, `python -m maxtune.agent.worker`.

The agent starts one per GPU with CUDA_VISIBLE_DEVICES set to that GPU's UUID,
so a hang, a crash, an out-of-memory or a lost device ends this process and
not the agent. It reports on its own protocol stream (the original stdout; the
process's stdout is pointed at stderr so library prints cannot corrupt it), one
JSON object per line: `phase` when a phase starts (the parent enforces each
phase's deadline), then `gemm`, `compile` or `failed` results, then `done`.
Each phase gets fresh Triton and Inductor caches so compile times are honest.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from typing import IO, Any


class Channel:
    """The protocol stream: JSON lines, flushed at once."""

    def __init__(self) -> None:
        self._out: IO[str] = os.fdopen(os.dup(1), "w", buffering=1)
        os.dup2(2, 1)  # anything else printed to stdout lands in the stderr log
        sys.stdout = sys.stderr

    def send(self, event: str, **fields: Any) -> None:
        self._out.write(json.dumps({"event": event, **fields}, default=str) + "\n")
        self._out.flush()


def _failure(channel: Channel, phase: str, exc: BaseException) -> None:
    from maxtune.agent.failures import classify, short  # noqa: PLC0415

    name = type(exc).__name__
    channel.send(
        "failed",
        phase=phase,
        reason=classify(name, str(exc)).value,
        message=short(f"{name}: {exc}"),
    )


def scratch_base() -> str:
    """A writable folder for compiler caches; the agent's pod has a read-only root file
    system, so /tmp may not be one. Inductor's fresh caches go there too (via TMPDIR)."""
    candidates = [
        os.environ.get("TMPDIR"),
        os.path.dirname(os.environ.get("TRITON_CACHE_DIR", "").rstrip("/")) or None,
        os.environ.get("HOME"),
        tempfile.gettempdir(),
    ]
    for candidate in candidates:
        if candidate and os.path.isdir(candidate) and os.access(candidate, os.W_OK | os.X_OK):
            return candidate
    raise OSError(f"no writable folder for compiler caches among {candidates}")


def run(args: argparse.Namespace, channel: Channel) -> int:
    try:
        base = scratch_base()
    except OSError as exc:
        _failure(channel, "startup", exc)
        return 1
    os.environ["TMPDIR"] = base
    tempfile.tempdir = None  # re-read TMPDIR
    scratch = tempfile.mkdtemp(prefix="maxtune-worker-", dir=base)
    os.environ["TRITON_CACHE_DIR"] = os.path.join(scratch, "triton")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(scratch, "inductor")
    try:
        channel.send("phase", phase="startup")
        began = time.monotonic()
        try:
            import torch  # noqa: PLC0415

            from maxtune.agent import gemm_bench  # noqa: PLC0415
            from maxtune.agent.gemm_configs import search_space  # noqa: PLC0415

            if not torch.cuda.is_available():
                raise RuntimeError("CUDA is not available in the measurement process")
            props = torch.cuda.get_device_properties(0)
            uuid = f"GPU-{props.uuid}"
        except Exception as exc:
            _failure(channel, "startup", exc)
            return 1
        channel.send(
            "device",
            uuid=uuid,
            name=props.name,
            sm_count=props.multi_processor_count,
            startup_seconds=time.monotonic() - began,
            torch=torch.__version__,
        )
        if args.expect_uuid and uuid != args.expect_uuid:
            channel.send(
                "failed",
                phase="startup",
                reason="DeviceLost",
                message=f"asked to measure {args.expect_uuid} but CUDA shows {uuid}",
            )
            return 1

        channel.send("phase", phase="gemm")
        began = time.monotonic()
        try:
            configs = search_space((props.major, props.minor))
            results = gemm_bench.measure(
                args.sizes,
                configs,
                deadline=time.monotonic() + args.gemm_budget_s,
                on_size=lambda r: channel.send("gemm", result=r.wire(), trials=r.trial_table()),
            )
            del results
        except Exception as exc:
            _failure(channel, "gemm", exc)
            return 1
        channel.send("phase_done", phase="gemm", seconds=time.monotonic() - began)

        if args.level == "full":
            from maxtune.agent import compile_bench  # noqa: PLC0415

            channel.send("phase", phase="compile")
            began = time.monotonic()
            try:
                result = compile_bench.measure(deadline=time.monotonic() + args.compile_budget_s)
            except Exception as exc:
                _failure(channel, "compile", exc)
                return 1
            channel.send("compile", result=result)
            channel.send("phase_done", phase="compile", seconds=time.monotonic() - began)
        channel.send("done")
        return 0
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m maxtune.agent.worker")
    parser.add_argument("--level", choices=["gemm", "full"], required=True)
    parser.add_argument(
        "--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[4096, 8192]
    )
    parser.add_argument("--gemm-budget-s", type=float, default=90.0)
    parser.add_argument("--compile-budget-s", type=float, default=150.0)
    parser.add_argument("--expect-uuid", default=None)
    args = parser.parse_args(argv)
    channel = Channel()
    return run(args, channel)


if __name__ == "__main__":
    sys.exit(main())
