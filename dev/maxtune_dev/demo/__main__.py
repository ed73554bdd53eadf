"""`python -m maxtune_dev.demo run|fetch-prometheus`: the demo (`make demo`) and its Prometheus.

`run` is the demo itself (see cli.py). `fetch-prometheus` puts Debian's Prometheus in the cache
(`make tools`), so the end-to-end test and the demo need no network; both fetch it on first use
as well. The demo is development tooling: it is not part of the `maxtune` package or its images.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from maxtune_dev.demo import cli
from maxtune_dev.demo.promfetch import FetchError, ensure_prometheus, version_of


def _fetch_prometheus(_: argparse.Namespace) -> int:
    started = time.monotonic()
    try:
        binary = ensure_prometheus(lambda line: print(f"[prometheus] {line}", flush=True))
    except FetchError as exc:
        print(f"[prometheus] {exc}", file=sys.stderr)
        return 2
    took = time.monotonic() - started
    print(f"  prometheus               {binary}  ({version_of(binary)}; {took:.1f}s)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m maxtune_dev.demo",
        description="maxtune's demo on a local control plane with SIMULATED GPU nodes.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    cli.register(commands)
    fetch = commands.add_parser(
        "fetch-prometheus", help="put Debian's Prometheus into the binary cache"
    )
    fetch.set_defaults(handler=_fetch_prometheus)
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
