"""Every CPU benchmark, one after the other (what `make bench` runs).

    python -m benchmarks.run [--out docs/benchmarks] [--only webhook|fleet]

Each benchmark starts its own control plane and operator, so one's leftovers
never weigh on the next. Results land in docs/benchmarks/{webhook,fleet}.md and
their raw JSON in docs/benchmarks/data/. On the 2-core machine the whole run
takes about 25 minutes; run it when nothing else is using the machine, or say
so next to the numbers (the reports record the load average).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from benchmarks import fleet, report, webhook

BENCHMARKS = {"webhook": webhook.main, "fleet": fleet.main}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--out", type=Path, default=report.DOCS)
    parser.add_argument("--only", choices=sorted(BENCHMARKS), action="append")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    for name in args.only or list(BENCHMARKS):
        started = time.monotonic()
        code = BENCHMARKS[name](["--out", str(args.out)])
        print(f"== {name}: exit {code} after {time.monotonic() - started:.0f} s", flush=True)
        if code != 0:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
