"""`python -m maxtune.demo fetch-prometheus`: put Debian's Prometheus in the cache (make tools).

The end-to-end test and `maxtune demo` fetch it on first use as well; this lets `make tools`
do it up front, next to the control-plane binaries, so a test run needs no network.
"""

from __future__ import annotations

import argparse
import sys
import time

from maxtune.demo.promfetch import FetchError, ensure_prometheus, version_of


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m maxtune.demo")
    parser.add_argument("command", choices=["fetch-prometheus"])
    parser.parse_args(argv)
    started = time.monotonic()
    try:
        binary = ensure_prometheus(lambda line: print(f"[prometheus] {line}", flush=True))
    except FetchError as exc:
        print(f"[prometheus] {exc}", file=sys.stderr)
        return 2
    took = time.monotonic() - started
    print(f"  prometheus               {binary}  ({version_of(binary)}; {took:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
