"""`maxtune explain`: the gate's verdict for a hypothetical GPU, and the rule behind it."""

from __future__ import annotations

import argparse
import json
from typing import Any

from maxtune.cli.errors import CliError, positive_int
from maxtune.contract import gate


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "explain",
        help="verdict for a hypothetical GPU",
        description="Would torch's max-autotune GEMM gate (is_big_gpu) pass for this GPU?",
    )
    parser.add_argument(
        "--sm-count", type=positive_int, required=True, help="multiprocessors (CUs, Xe cores)"
    )
    parser.add_argument("--vendor", choices=[v.value for v in gate.Vendor], default="nvidia")
    parser.add_argument("--arch-major", type=int, help="ROCm gfx major version (AMD only)")
    parser.add_argument(
        "--torch",
        default=None,
        help="torch MAJOR.MINOR whose rule applies (default: installed torch, else newest rule)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    torch_version = args.torch or gate.default_torch_version()
    try:
        result = gate.verdict(
            sm_count=args.sm_count,
            torch_version=torch_version,
            vendor=gate.Vendor(args.vendor),
            arch_major=args.arch_major,
        )
    except gate.TorchVersionError as exc:
        raise CliError(str(exc)) from None
    if args.json:
        print(
            json.dumps(
                {
                    "max_autotune_capable": result.capable,
                    "rule": result.rule,
                    "torch": result.torch,
                    "min_sms": result.min_sms,
                    "sm_count": args.sm_count,
                    "vendor": args.vendor,
                }
            )
        )
    else:
        word = "capable" if result.capable else "NOT capable"
        print(f"max-autotune GEMM templates: {word} (torch {result.torch}: {result.rule})")
    return 0
