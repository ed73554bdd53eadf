"""The labeller: node labels from profiles, one merge patch per node that differs.

Level-triggered. FleetState says which nodes may have changed; for each, the
desired `maxtune.io/` labels are recomputed from scratch and compared with the
labels the node carries; only a difference is written, as a JSON merge patch
that names `maxtune.io/` keys alone (removed ones as null), so no other label
is ever touched. The patch answer goes straight back into FleetState, so the
watch event that follows is a no-op and a node is written once per change.
Failed writes are counted and retried with backoff; nothing is lost because
the next attempt recomputes the desired state again.

Only the leader runs it. It also removes labels whose profile went stale
(a sweep whose period follows the policy's staleAfterSeconds) and deletes
profiles whose node has been gone for a grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final

from maxtune.contract.names import PREFIX
from maxtune.kube import MERGE_PATCH, Kube, KubeError
from maxtune.operator.events import NODES, PROFILES
from maxtune.operator.fleet import FleetState
from maxtune.operator.metrics import Metrics
from maxtune.operator.records import read_node
from maxtune.retry import Backoff

log = logging.getLogger(__name__)

LabelPatch = dict[str, str | None]
_BACKOFF_START: Final = 0.5


def label_patch(current: Mapping[str, str], desired: Mapping[str, str]) -> LabelPatch:
    """The merge-patch `labels` map that turns `current` into `desired`, maxtune keys only."""
    changes: LabelPatch = {
        k: v for k, v in desired.items() if k.startswith(PREFIX) and current.get(k) != v
    }
    changes.update({k: None for k in current if k.startswith(PREFIX) and k not in desired})
    return changes


def sweep_interval(stale_after_seconds: float, orphan_grace_seconds: float = 60.0) -> float:
    """A tenth of the staleness window (1-30 s): labels go at most 10% late.

    Also at most half the orphan grace, so a gone node's profile is collected
    near its deadline. A sweep is a pass over FleetState's profiles: cheap.
    """
    return max(1.0, min(30.0, stale_after_seconds / 10, orphan_grace_seconds / 2))


@dataclass(slots=True)
class _Retry:
    backoff: Backoff
    due: float


class Labeller:
    def __init__(
        self,
        fleet: FleetState,
        kube: Kube,
        metrics: Metrics,
        *,
        concurrency: int = 8,
        orphan_grace_seconds: float = 60.0,
        max_backoff: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.fleet = fleet
        self.kube = kube
        self.metrics = metrics
        self.concurrency = concurrency
        self.orphan_grace = orphan_grace_seconds
        self.max_backoff = max_backoff
        self.clock = clock
        self._dirty: set[str] = set()
        self._all = True
        self._wake = asyncio.Event()
        self._inflight: set[str] = set()
        self._retries: dict[str, _Retry] = {}
        self._stale: dict[str, bool] = {}
        self._orphans: dict[str, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # The writes' own threads: the loop's default executor has min(32, cores + 4) of them
        # (6 on 2 cores), shared with every other to_thread call, which capped the writes in
        # flight below `concurrency`.
        self._pool: ThreadPoolExecutor | None = None

    def mark(self, names: Iterable[str] | None) -> None:
        """FleetState's listener: these nodes (None: all) may need a write."""
        if names is None:
            self._all = True
        else:
            self._dirty.update(names)
        self._wake.set()

    async def run(self) -> None:
        """Until cancelled (leadership lost or shutdown): converge, then follow changes."""
        unsubscribe = self.fleet.subscribe(self.mark)
        self.mark(None)  # a new leader resyncs every node
        semaphore = asyncio.Semaphore(self.concurrency)
        pool = self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="labeller")
        next_sweep = 0.0
        try:
            while True:
                now = self.clock()
                if now >= next_sweep:
                    self._sweep(now)
                    policy = self.fleet.cluster_policy().spec
                    next_sweep = now + sweep_interval(policy.stale_after_seconds, self.orphan_grace)
                self._reconcile_batch(now, semaphore)
                wait = next_sweep - now
                if self._retries:
                    wait = min(wait, min(r.due for r in self._retries.values()) - now)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.05, wait)):
                        await self._wake.wait()
                self._wake.clear()
        finally:
            unsubscribe()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._pool = None
            pool.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------ one pass

    def _reconcile_batch(self, now: float, semaphore: asyncio.Semaphore) -> None:
        if self._all:
            self._all = False
            self._dirty.update(self.fleet.nodes)
        due = [name for name, r in self._retries.items() if r.due <= now]
        self._dirty.update(due)
        batch, self._dirty = self._dirty - self._inflight, self._dirty & self._inflight
        for name in sorted(batch):
            retry = self._retries.get(name)
            if retry is not None and retry.due > now:
                continue  # backing off; the retry brings it back when due
            node = self.fleet.nodes.get(name)
            if node is None:
                self._retries.pop(name, None)
                continue
            patch = label_patch(node.labels, self.fleet.desired_labels(name, now))
            if not patch:
                self._retries.pop(name, None)
                continue
            self._inflight.add(name)
            task = asyncio.create_task(self._write(name, patch, semaphore))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _write(self, name: str, patch: LabelPatch, semaphore: asyncio.Semaphore) -> None:
        assert all(k.startswith(PREFIX) for k in patch), patch  # never another owner's label
        try:
            async with semaphore:
                body = {"metadata": {"labels": patch}}
                answer = await self._call(
                    "PATCH", f"{NODES}/{name}", body=body, content_type=MERGE_PATCH
                )
            self.metrics.label_writes.inc()
            self._retries.pop(name, None)
            record = read_node(answer) if isinstance(answer, Mapping) else None
            if record is not None:
                self.fleet.refresh_node(record)  # never brings back a node deleted meanwhile
            log.debug("labelled node %s: %s", name, patch)
        except KubeError as exc:
            if exc.status == 404:
                self._retries.pop(name, None)
            else:
                self._failed(name, exc)
        except Exception as exc:  # a bug must not stop the labeller; count it and retry
            log.exception("labelling node %s failed", name)
            self._failed(name, exc)
        finally:
            self._inflight.discard(name)
            self.mark((name,))

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        """One API request on the labeller's own threads (any thread outside `run`)."""
        call = functools.partial(self.kube.request, method, path, **kwargs)
        if self._pool is None:
            return await asyncio.to_thread(call)
        return await asyncio.get_running_loop().run_in_executor(self._pool, call)

    def _failed(self, name: str, exc: Exception) -> None:
        self.metrics.reconcile_errors.inc()
        retry = self._retries.get(name)
        backoff = retry.backoff if retry else Backoff(_BACKOFF_START, self.max_backoff)
        delay = backoff.next_delay()
        self._retries[name] = _Retry(backoff, self.clock() + delay)
        log.warning(
            "labelling node %s failed (%s); retry %d in %.1fs", name, exc, backoff.attempt, delay
        )

    # ------------------------------------------------------------ periodic checks

    def _sweep(self, now: float) -> None:
        """Stale heartbeats flip desired labels without any event: look for flips."""
        profiles = self.fleet.profiles
        for name in profiles:
            stale = self.fleet.is_stale(name, now)
            if self._stale.get(name) != stale:
                self._stale[name] = stale
                self._dirty.add(name)
        for name in [n for n in self._stale if n not in profiles]:
            del self._stale[name]
        self._collect_orphans(now)

    def _collect_orphans(self, now: float) -> None:
        """A node gone for the grace period takes its profile with it.

        (Its heartbeat Lease is the garbage collector's: the agent makes the Node its owner.)
        """
        nodes = self.fleet.nodes
        for name, profile in self.fleet.profiles.items():
            if name in nodes:
                self._orphans.pop(name, None)
                continue
            first = self._orphans.setdefault(name, now)
            if now - first >= self.orphan_grace:
                self._orphans.pop(name, None)
                task = asyncio.create_task(self._delete_profile(profile.name, profile.uid))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        for name in [n for n in self._orphans if n not in self.fleet.profiles]:
            del self._orphans[name]

    async def _delete_profile(self, name: str, uid: str) -> None:
        """Delete the profile of a node that is gone; the uid precondition spares a new one."""
        body = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "preconditions": {"uid": uid} if uid else {},
        }
        try:
            await self._call("DELETE", f"{PROFILES}/{name}", body=body)
            self.metrics.orphan_profiles_deleted.inc()
            log.info("deleted GPUNodeProfile %s: its node is gone", name)
        except KubeError as exc:
            if exc.status not in (404, 409):
                self.metrics.reconcile_errors.inc()
                log.warning("deleting orphaned GPUNodeProfile %s failed: %s", name, exc)
