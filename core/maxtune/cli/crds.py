"""`maxtune crds`: print or write the CRDs generated from the typed models."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from maxtune.contract import crdgen

# Where the generated manifests live: the repository's crds/ (plain manifests) and the chart's
# templates (the same CRDs with the release's labels, upgraded by `helm upgrade`).
PLAIN = Path("crds")
CHART = Path("charts/maxtune/templates/crds")


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "crds", help="print (or --write) the CRD manifests generated from the models"
    )
    parser.add_argument(
        "--write", action="store_true", help="write crds/ and the chart's templates/crds/"
    )
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="repository root")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    files = crdgen.rendered_files()
    if not args.write:
        print("---\n".join(files.values()), end="")
        return 0
    for target, generated in ((PLAIN, files), (CHART, crdgen.chart_files())):
        folder = args.root / target
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in generated.items():
            (folder / name).write_text(text)
            print(f"wrote {folder / name}")
    return 0
