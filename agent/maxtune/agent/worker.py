"""The measurement child: one process per GPU, `python -m maxtune.agent.worker`.

The agent starts one per GPU with CUDA_VISIBLE_DEVICES set to that GPU's UUID,
so a hang, a crash, an out-of-memory or a lost device ends this process and
not the agent. It reports on its own protocol stream (the original stdout; the
process's stdout is pointed at stderr so library prints cannot corrupt it), one
JSON object per line: `phase` when a phase starts (the parent enforces each
phase's deadline), then `gemm`, `block` or `failed` results, then `done`.

Levels: `gemm`, `full` (the GEMM, then both reference blocks compiled cold into
`--scratch`), and `retime`: the second timing process, started beside the first,
which waits for `go` on stdin and then compiles the blocks again from the caches
the first filled (warm) and times another set of rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
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


def _startup(args: argparse.Namespace, channel: Channel) -> tuple[Any, Any] | None:
    """Import torch, check CUDA sees the device asked for; (torch, props) or None."""
    channel.send("phase", phase="startup")
    began = time.monotonic()
    try:
        import torch  # noqa: PLC0415

        from maxtune.agent.timing import device_mismatch  # noqa: PLC0415

        if not torch.cuda.is_available():
            raise RuntimeError("CUDA is not available in the measurement process")
        props = torch.cuda.get_device_properties(0)
        uuid = f"GPU-{props.uuid}"
    except Exception as exc:
        _failure(channel, "startup", exc)
        return None
    channel.send(
        "device",
        uuid=uuid,
        name=props.name,
        sm_count=props.multi_processor_count,
        startup_seconds=time.monotonic() - began,
        torch=torch.__version__,
    )
    mismatch = device_mismatch(
        seen_uuid=uuid,
        seen_sms=int(props.multi_processor_count),
        expect_uuid=args.expect_uuid,
        expect_parent=args.expect_parent,
        expect_sms=args.expect_sms,
    )
    if mismatch is not None:
        channel.send("failed", phase="startup", reason="DeviceLost", message=mismatch)
        return None
    return torch, props


def _gemm(args: argparse.Namespace, channel: Channel, props: Any) -> bool:
    from maxtune.agent import gemm_bench  # noqa: PLC0415
    from maxtune.agent.gemm_configs import search_space  # noqa: PLC0415

    channel.send("phase", phase="gemm")
    began = time.monotonic()
    try:
        configs = search_space((props.major, props.minor))
        gemm_bench.measure(
            args.sizes,
            configs,
            deadline=time.monotonic() + args.gemm_budget_s,
            on_size=lambda r: channel.send("gemm", result=r.wire(), trials=r.trial_table()),
        )
    except Exception as exc:
        _failure(channel, "gemm", exc)
        return False
    channel.send("phase_done", phase="gemm", seconds=time.monotonic() - began)
    return True


def _prime(channel: Channel, args: argparse.Namespace, phase: str) -> bool:
    """Inductor's one-time costs, paid before any mode's compile is timed."""
    from maxtune.agent import compile_bench  # noqa: PLC0415

    try:
        primed = compile_bench.prime("cuda", Path(args.scratch) / f"prime-{args.level}")
    except Exception as exc:
        _failure(channel, phase, exc)
        return False
    print(f"maxtune: Inductor primed in {primed:.2f}s", file=sys.stderr, flush=True)
    return True


def _blocks(args: argparse.Namespace, channel: Channel, phase: str, *, warm: bool) -> bool:
    """Both reference blocks, training first (the advice rests on it); one `block` event each."""
    from maxtune.agent import compile_bench  # noqa: PLC0415
    from maxtune.agent.timing import CALLS, WORKLOADS  # noqa: PLC0415

    channel.send("phase", phase=phase)
    began = time.monotonic()
    deadline = began + (args.retime_budget_s if warm else args.compile_budget_s)
    if not warm and not _prime(channel, args, phase):
        return False
    for workload in WORKLOADS:
        try:
            result = compile_bench.measure(
                workload,
                cache_root=Path(args.scratch) / "compile",
                deadline=deadline,
                rounds=args.rounds,
                calls=CALLS[workload],
                warm=warm,
            )
        except Exception as exc:
            _failure(channel, phase, exc)
            return False
        channel.send("block", result=result)
    channel.send("phase_done", phase=phase, seconds=time.monotonic() - began)
    return True


def run(args: argparse.Namespace, channel: Channel) -> int:
    own_scratch = args.scratch is None
    try:
        base = scratch_base()
    except OSError as exc:
        _failure(channel, "startup", exc)
        return 1
    os.environ["TMPDIR"] = base
    tempfile.tempdir = None  # re-read TMPDIR
    scratch = args.scratch or tempfile.mkdtemp(prefix="maxtune-worker-", dir=base)
    args.scratch = scratch
    os.environ["TRITON_CACHE_DIR"] = os.path.join(scratch, "triton")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(scratch, "inductor")
    try:
        started = _startup(args, channel)
        if started is None:
            return 1
        _torch, props = started
        if args.level == "retime":
            # The second process: started beside the first and primed while the first
            # measures the GEMM (its start costs no time of its own), then it waits until
            # the parent says the first one's caches are complete.
            if not _prime(channel, args, "startup"):
                return 1
            channel.send("phase", phase="wait")
            if sys.stdin.readline().strip() != "go":
                return 0
            if not _blocks(args, channel, "retime", warm=True):
                return 1
        else:
            if not _gemm(args, channel, props):
                return 1
            if args.level == "full" and not _blocks(args, channel, "compile", warm=False):
                return 1
        channel.send("done")
        return 0
    finally:
        if own_scratch:
            shutil.rmtree(scratch, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m maxtune.agent.worker")
    parser.add_argument("--level", choices=["gemm", "full", "retime"], required=True)
    parser.add_argument(
        "--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[4096, 8192]
    )
    parser.add_argument("--gemm-budget-s", type=float, default=90.0)
    parser.add_argument("--compile-budget-s", type=float, default=150.0)
    parser.add_argument("--retime-budget-s", type=float, default=90.0)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument(
        "--scratch", default=None, help="cache folder shared by the cold and the warm process"
    )
    parser.add_argument("--expect-uuid", default=None)
    parser.add_argument("--expect-parent", default=None, help="a MIG slice's parent GPU UUID")
    parser.add_argument("--expect-sms", type=int, default=None)
    args = parser.parse_args(argv)
    if args.rounds is None:
        from maxtune.agent.timing import ROUNDS  # noqa: PLC0415

        args.rounds = ROUNDS
    channel = Channel()
    return run(args, channel)


if __name__ == "__main__":
    sys.exit(main())
