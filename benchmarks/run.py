"""Every CPU benchmark, one after the other (what `make bench` runs).

    python -m benchmarks.run [--out docs/benchmarks]
        [--only webhook|handlercpu|fleet|heartbeatcost]

Each plane benchmark starts its own control plane and operator, so one's leftovers never
weigh on the next; handlercpu needs none (the webhook server alone, against the reference).
Results land in docs/benchmarks/{webhook,fleet,heartbeatcost}.md and their raw JSON (and
handlercpu's) in docs/benchmarks/data/; the fleet at 5,000 nodes (issue 15's size; setting
it up alone takes about 6 minutes on 2 cores). On the 2-core machine the whole run takes
about 50 minutes; run it when nothing else is using the machine, or say so next to the
numbers (the reports record the load average).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks import fleet, handlercpu, heartbeatcost, report, webhook

BENCHMARKS: dict[str, Callable[[list[str]], int]] = {
    "webhook": webhook.main,
    "handlercpu": handlercpu.main,
    "fleet": lambda argv: fleet.main(["--nodes", "5000", *argv]),
    "heartbeatcost": heartbeatcost.main,
}


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
