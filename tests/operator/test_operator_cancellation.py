"""The operator's loops end when cancelled, whatever they were waiting for at that moment.

On Python 3.11, `asyncio.wait_for` returns the awaited result instead of raising when the
cancellation lands while that result is on its way (the event just set, the thread just
done), so a `while True` loop around it runs on: an operator once outlived SIGTERM that way.
These tests cancel each loop at every step of a wake-up in flight; ruff bans `wait_for`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from maxtune.operator.labeller import Labeller
from maxtune.operator.leader import LeaderElector
from maxtune.operator.metrics import Metrics
from maxtune_dev.testkit import H100, Fleet
from tests.operator.test_operator_labeller import RecordingKube


async def _ends_after_cancel(task: asyncio.Task[Any]) -> bool:
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=1.0)
    if not done:  # swallowed: end it for good, so the test itself does not hang
        while not task.done():
            task.cancel()
            await asyncio.sleep(0.01)
    return bool(done)


def test_labeller_ends_when_cancelled_while_a_wake_is_in_flight() -> None:
    async def cancelled_after(steps: int) -> bool:
        f = Fleet()
        f.add("h0", H100, synced=False)
        labeller = Labeller(f.state, RecordingKube(f), Metrics("test", f.state))  # type: ignore[arg-type]
        task = asyncio.create_task(labeller.run())
        await asyncio.sleep(0.1)  # converged; now waiting for a wake or the sweep
        labeller.mark(("h0",))
        for _ in range(steps):
            await asyncio.sleep(0)
        return await _ends_after_cancel(task)

    async def main() -> dict[int, bool]:
        return {steps: await cancelled_after(steps) for steps in range(8)}

    ended = asyncio.run(main())
    assert all(ended.values()), f"cancellation swallowed after these many loop steps: {ended}"


class _HeldLease:
    """Answers the elector's GET and PUT at once, as for a Lease it holds."""

    def __init__(self) -> None:
        self.calls = 0

    def request(self, method: str, path: str, **_: Any) -> Any:
        self.calls += 1
        if method == "GET":
            return {"metadata": {"resourceVersion": str(self.calls)}, "spec": {}}
        return {}


def test_leader_elector_ends_when_cancelled_as_a_renewal_returns() -> None:
    """Renewing with no pause and cancelling after 0..199 loop steps, so some cancellations
    land as a renewal's thread returns (14 of 200 were swallowed before the fix)."""

    async def main() -> list[bool]:
        ended = []
        for attempt in range(200):
            kube = _HeldLease()
            elector = LeaderElector(
                kube,  # type: ignore[arg-type]
                namespace="ns",
                name="lease",
                identity="me",
                on_started=lambda: None,
                on_stopped=lambda: None,
                retry_period=0.0,
            )
            task = asyncio.create_task(elector.run())
            for _ in range(attempt):
                await asyncio.sleep(0)
            ended.append(await _ends_after_cancel(task))
        return ended

    ended = asyncio.run(main())
    assert all(ended), f"{ended.count(False)} of {len(ended)} cancellations swallowed"
