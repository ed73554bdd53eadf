"""`python -m imagebuild tools|build`: what `make image` and `make tools` run."""

from __future__ import annotations

import argparse
import sys
from typing import cast

from imagebuild import tools
from imagebuild.build import TARGETS, Rebuild, ensure
from imagebuild.buildah import BuildahError, available


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m imagebuild", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("tools", help="install buildah and mmdebstrap with apt-get if missing")
    build = commands.add_parser("build", help="build the images whose inputs changed")
    build.add_argument(
        "--target", choices=[*TARGETS, "all"], default="all", help="which Dockerfile target"
    )
    build.add_argument(
        "--rebuild",
        choices=["none", "images", "all"],
        default="none",
        help="images: rebuild the targets even if unchanged; all: the base too",
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "tools":
            tools.install()
            return 0
        why_not = available()
        if why_not is not None:
            print(f"cannot build images here: {why_not}", file=sys.stderr)
            return 2
        targets = TARGETS if args.target == "all" else (args.target,)
        ensure(targets, rebuild=cast(Rebuild, args.rebuild))
    except (BuildahError, tools.ToolsError) as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
