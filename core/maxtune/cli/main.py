"""`maxtune` entry point.

Each subcommand lives in its own module with a `register(subparsers)` function;
components that need heavy imports (torch, kopf) import them inside their
handlers, so `maxtune explain` stays instant and the operator image, which has
no torch, can still run every command that does not need a GPU.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from maxtune.cli import version

# Modules that define `register(subparsers: argparse._SubParsersAction) -> None`.
COMMAND_MODULES: tuple[str, ...] = (
    "maxtune.cli.explain",
    "maxtune.cli.crds",
    "maxtune.cli.docs",
    "maxtune.agent.cli",
    "maxtune.operator.cli",
    "maxtune.demo.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="maxtune",
        description="Kubernetes GPU scheduling advisor for torch.compile max-autotune.",
    )
    parser.add_argument("--version", action="version", version=f"maxtune {version.VERSION}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
