"""How many inputs a fuzz test tries, and a tally of what was tried, for docs/reliability.md.

CI runs a modest number of examples per property (`MAXTUNE_FUZZ_EXAMPLES` unset: the default
each test names). A campaign sets `MAXTUNE_FUZZ_EXAMPLES=N` to run N per property instead; the
tally is printed at the end of the session (tests/fuzz/conftest.py) and, with
`MAXTUNE_FUZZ_REPORT=path`, written as JSON.
"""

from __future__ import annotations

import os
from collections import Counter

TALLY: Counter[str] = Counter()


def examples(default: int, *, share: float = 1.0) -> int:
    """The number of examples for one property: the campaign's figure (times `share`, for
    properties whose inputs are costly), else `default`."""
    raw = os.environ.get("MAXTUNE_FUZZ_EXAMPLES", "").strip()
    return max(default, int(int(raw) * share)) if raw else default


def count(what: str, n: int = 1) -> None:
    TALLY[what] += n
