"""`python -m maxtune_dev.localplane up|down|env|status|build|fetch-redis [--name NAME]`.

`build` and `fetch-redis` are what `make tools` runs before the tests; the rest manage a named
plane that keeps running after the command returns (see detached.py).
"""

from __future__ import annotations

import argparse
import sys
import time

from maxtune_dev.localplane import detached
from maxtune_dev.localplane.build import BuildError, ensure_binaries


def _build() -> int:
    started = time.monotonic()
    try:
        found = ensure_binaries(progress=lambda line: print(f"[localplane] {line}", flush=True))
    except BuildError as exc:
        print(f"[localplane] {exc}", file=sys.stderr, flush=True)
        return 2
    for name, path in found.as_dict().items():
        print(f"  {name:<24} {path}")
    print(f"[localplane] build step done in {time.monotonic() - started:.1f}s", flush=True)
    return 0


def _fetch_redis() -> int:
    from maxtune_dev.localplane import redisserver  # noqa: PLC0415 - only this command needs it
    from maxtune_dev.localplane.debfetch import FetchError  # noqa: PLC0415

    started = time.monotonic()
    try:
        binary = redisserver.ensure_redis(lambda line: print(f"[redis] {line}", flush=True))
    except FetchError as exc:
        print(f"[redis] {exc}", file=sys.stderr, flush=True)
        return 2
    took = time.monotonic() - started
    print(f"  redis-server             {binary}  ({redisserver.version_of(binary)}; {took:.1f}s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m maxtune_dev.localplane",
        description="A real local Kubernetes control plane (etcd, kube-apiserver, "
        "kube-controller-manager, kube-scheduler, kwok) on 127.0.0.1.",
    )
    parser.add_argument(
        "command",
        choices=["up", "down", "env", "status", "build", "fetch-redis", "_serve"],
        help="up: start a named plane in the background; down: stop it; env: print the "
        "KUBECONFIG export line; status: show its components; build: build the binaries; "
        "fetch-redis: Debian's redis-server into the binary cache",
    )
    parser.add_argument("--name", default="default", help="which named plane (default: default)")
    args = parser.parse_args(argv)
    if args.command == "build":
        return _build()
    if args.command == "fetch-redis":
        return _fetch_redis()
    try:
        handlers = {
            "up": detached.up,
            "down": detached.down,
            "env": detached.env,
            "status": detached.status,
            "_serve": detached.serve,
        }
        return handlers[args.command](args.name)
    except BuildError as exc:
        print(f"[localplane] {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        parser.error(str(exc))  # exits


if __name__ == "__main__":
    sys.exit(main())
