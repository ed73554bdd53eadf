"""An independent witness of the operator's node writes: a watch on every node.

Every write that changes a node produces exactly one watch event carrying the
new object, so counting events whose `maxtune.io/` labels differ from the
previous event's counts the operator's effective label writes per node, without
trusting the operator's own metric. (A write that changes nothing produces no
event; the API server's request counter catches those.) The watcher also keeps
each node's current labels and says when every node carries exactly the
labels it should: that moment, not a poll, is "all labels right".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

import aiohttp

from benchmarks.kubeapi import Api
from maxtune.contract.names import PREFIX

Labels = dict[str, str]


def maxtune_labels(node: Mapping[str, Any]) -> Labels:
    labels = (node.get("metadata") or {}).get("labels") or {}
    return {k: v for k, v in labels.items() if k.startswith(PREFIX)}


class NodeWatcher:
    def __init__(self, api: Api, *, watch_seconds: int = 3600) -> None:
        self.api = api
        self.watch_seconds = watch_seconds
        self.current: dict[str, Labels] = {}
        self.expected: dict[str, Labels] = {}
        self.wrong: set[str] = set()
        self.label_changes: Counter[str] = Counter()  # per node, since the last reset()
        self.events: Counter[str] = Counter()  # every MODIFIED event per node, since reset()
        self.first_change_at: float | None = None
        self.all_right_at: float | None = None
        self.right_at: dict[str, float] = {}  # expected node -> when it came to carry its labels
        self._all_right = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.error: BaseException | None = None
        self.resumed = 0  # streams the API server ended, resumed where they stopped

    async def start(self) -> None:
        listing = await self.api.call("GET", "/api/v1/nodes")
        for node in listing.get("items") or []:
            self.current[node["metadata"]["name"]] = maxtune_labels(node)
        version = listing["metadata"]["resourceVersion"]
        self._task = asyncio.create_task(self._watch(version))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def expect(self, expected: Mapping[str, Mapping[str, str]]) -> None:
        """Set what these nodes must carry; the 'all right' moment is looked for afresh."""
        self.expected.update({name: dict(labels) for name, labels in expected.items()})
        for name in expected:
            self.right_at.pop(name, None)
        self.wrong = {n for n, want in self.expected.items() if self.current.get(n) != want}
        self.all_right_at = None
        self._all_right.clear()
        if not self.wrong:
            self._mark_all_right()

    def reset_counts(self) -> None:
        self.label_changes.clear()
        self.events.clear()
        self.first_change_at = None

    async def wait_all_right(self, timeout_s: float) -> float:
        """Until every expected node carries its labels; returns that moment (monotonic)."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._all_right.wait()
        except TimeoutError:
            sample = sorted(self.wrong)[:5]
            raise TimeoutError(
                f"{len(self.wrong)} node(s) still without the right labels after "
                f"{timeout_s:.0f}s, e.g. {[(n, self.current.get(n)) for n in sample]}"
            ) from None
        if self.error is not None:
            raise RuntimeError("the node watch failed") from self.error
        assert self.all_right_at is not None
        return self.all_right_at

    def _mark_all_right(self) -> None:
        self.all_right_at = time.monotonic()
        self._all_right.set()

    def _apply(self, event: Mapping[str, Any]) -> None:
        kind = event.get("type")
        node = event.get("object") or {}
        if kind == "BOOKMARK":
            return
        name = (node.get("metadata") or {}).get("name")
        if not name:
            return
        if kind == "DELETED":
            self.current.pop(name, None)
            return
        self.events[name] += 1
        labels = maxtune_labels(node)
        if labels != self.current.get(name):
            self.label_changes[name] += 1
            if self.first_change_at is None:
                self.first_change_at = time.monotonic()
        self.current[name] = labels
        if name in self.expected:
            if labels == self.expected[name]:
                if name in self.wrong:
                    self.right_at[name] = time.monotonic()
                self.wrong.discard(name)
                if not self.wrong and not self._all_right.is_set():
                    self._mark_all_right()
            else:
                self.wrong.add(name)

    async def _watch(self, version: str) -> None:
        """Follow every node event after `version`. A stream the API server ends (its
        timeout, or a watcher it found too slow on a saturated machine) is resumed from the
        last resourceVersion seen, which replays every event after it: none is missed. An
        ERROR event (a 410: that history compacted away) ends the witness, as an error."""
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
        try:
            while True:
                query = {
                    "watch": "true",
                    "resourceVersion": version,
                    "allowWatchBookmarks": "true",
                    "timeoutSeconds": str(self.watch_seconds),
                }
                async with self.api.session.get(
                    "/api/v1/nodes", params=query, timeout=timeout
                ) as response:
                    response.raise_for_status()
                    while line := await response.content.readline():
                        event = json.loads(line)
                        if event.get("type") == "ERROR":
                            raise RuntimeError(f"the node watch failed: {event.get('object')}")
                        self._apply(event)
                        meta = (event.get("object") or {}).get("metadata") or {}
                        version = meta.get("resourceVersion") or version
                self.resumed += 1
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self.error = exc
            self._all_right.set()  # wake a waiter, which reports the error
            raise

    def change_summary(self, nodes: int) -> dict[str, int]:
        per_node = self.label_changes
        return {
            "label_changing_events": sum(per_node.values()),
            "nodes_changed": len(per_node),
            "max_per_node": max(per_node.values(), default=0),
            "nodes_changed_more_than_once": sum(1 for c in per_node.values() if c > 1),
            "watch_resumed": self.resumed,
            "node_events_all": sum(self.events.values()),
            "nodes": nodes,
        }
