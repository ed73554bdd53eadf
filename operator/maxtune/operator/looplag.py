"""How late the event loop runs what is due: every admission waits that long too.

The webhook's answers, the health and metrics endpoints and the labeller share one
event loop. Whatever holds it (a long callback, an informer thread holding the GIL
through a large JSON decode, the process not being scheduled on a busy node) delays
every admission waiting behind it, and the admission histogram cannot show that: it
starts when the handler first runs. A probe that sleeps a fixed interval and records
how late it woke measures exactly the wait an admission would have had at that moment,
at the cost of ten timer wake-ups a second.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final

# Ten samples a second: enough to see a stall of a few tens of milliseconds within
# a scrape interval; the probe itself is one timer callback per sample.
PROBE_INTERVAL: Final = 0.1


async def probe(observe: Callable[[float], None], interval: float = PROBE_INTERVAL) -> None:
    """Until cancelled: sleep `interval`, then `observe` how many seconds late the wake-up was.

    asyncio may run a timer up to its clock resolution early; that reads as 0, not as a
    negative lag.
    """
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + interval
        await asyncio.sleep(interval)
        observe(max(0.0, loop.time() - due))
