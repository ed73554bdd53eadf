"""The event-loop lag probe: a loop held by other work reads as lag, never as a negative one."""

from __future__ import annotations

import asyncio
import time

import pytest

from maxtune.operator import looplag


def test_a_held_loop_reads_as_lag_of_at_least_the_hold() -> None:
    seen: list[float] = []

    async def main() -> None:
        task = asyncio.create_task(looplag.probe(seen.append, interval=0.01))
        await asyncio.sleep(0.05)  # a few samples of a free loop
        free = len(seen)
        asyncio.get_running_loop().call_soon(time.sleep, 0.2)  # a callback that holds the loop
        await asyncio.sleep(0.25)
        task.cancel()
        assert free >= 1

    asyncio.run(main())
    # The probe's timer came due within 10 ms of the hold starting and could not run before
    # the hold ended: one sample is at least 190 ms late, whatever else the machine did.
    assert max(seen) >= 0.19
    assert min(seen) >= 0.0


def test_a_timer_run_early_reads_as_no_lag(monkeypatch: pytest.MonkeyPatch) -> None:
    """asyncio may run a timer up to its clock resolution early; that is 0, not negative."""
    seen: list[float] = []
    real_sleep = asyncio.sleep

    async def early(delay: float) -> None:
        await real_sleep(0)  # wakes the probe well before its timer was due

    async def main() -> None:
        task = asyncio.create_task(looplag.probe(seen.append, interval=10.0))
        while len(seen) < 3:
            await real_sleep(0)
        task.cancel()

    monkeypatch.setattr(looplag.asyncio, "sleep", early)
    asyncio.run(main())
    assert seen[:3] == [0.0, 0.0, 0.0]
