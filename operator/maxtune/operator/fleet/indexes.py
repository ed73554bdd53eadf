"""Inverted indexes over nodes: what the webhook's candidate search reads.

A pod's candidate nodes are found with a few set operations (by label, by
label key, by GPU resource, tainted or not) instead of a Python loop over
5,000 nodes per admission. The sets returned are the index's own: callers
never mutate them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Mapping
from typing import TypeVar

from maxtune.operator.records import NodeRecord

_EMPTY: frozenset[str] = frozenset()
ANSWERS_KEPT = 32  # pod shapes whose candidate nodes are kept at a time
K = TypeVar("K")


class NodeIndex:
    def __init__(self) -> None:
        self._by_label: dict[tuple[str, str], set[str]] = defaultdict(set)
        self._by_key: dict[str, set[str]] = defaultdict(set)
        self._by_resource: dict[str, set[str]] = defaultdict(set)
        self._tainted: set[str] = set()
        self._all: set[str] = set()
        # (resource, count) -> nodes with at least `count` of it; cleared on any change.
        self._at_least: dict[tuple[str, int], frozenset[str]] = {}
        # Answers computed from the index alone (maxtune.operator.selection.candidates), by
        # the question; cleared on any change, like _at_least. Each can hold every node's
        # name (a set of 5,000 names is 0.5 MB), so few are kept.
        self._answers: dict[Hashable, frozenset[str]] = {}

    def add(self, node: NodeRecord) -> None:
        name = node.name
        self._changed()
        self._all.add(name)
        for key, value in node.labels.items():
            self._by_label[(key, value)].add(name)
            self._by_key[key].add(name)
        for resource in node.gpus:
            self._by_resource[resource].add(name)
        if node.taints:
            self._tainted.add(name)

    def remove(self, node: NodeRecord) -> None:
        name = node.name
        self._changed()
        self._all.discard(name)
        for key, value in node.labels.items():
            _discard(self._by_label, (key, value), name)
            _discard(self._by_key, key, name)
        for resource in node.gpus:
            _discard(self._by_resource, resource, name)
        self._tainted.discard(name)

    def _changed(self) -> None:
        self._at_least.clear()
        self._answers.clear()

    def remembered(
        self, question: Hashable, answer: Callable[[], frozenset[str]]
    ) -> frozenset[str]:
        """`answer()`, computed once per `question` until the index next changes.

        The pods of one training job ask the same question (same selector, affinity,
        tolerations and GPU count), and node shapes change rarely (heartbeats never change
        them), so their set algebra over thousands of names is done once, not per pod.
        """
        found = self._answers.get(question)
        if found is None:
            if len(self._answers) >= ANSWERS_KEPT:  # many distinct shapes: stay bounded
                self._answers.clear()
            found = self._answers[question] = answer()
        return found

    def all_nodes(self) -> set[str]:
        return self._all

    def with_label(self, key: str, value: str) -> set[str] | frozenset[str]:
        return self._by_label.get((key, value), _EMPTY)

    def with_key(self, key: str) -> set[str] | frozenset[str]:
        return self._by_key.get(key, _EMPTY)

    def with_resource(self, resource: str) -> set[str] | frozenset[str]:
        return self._by_resource.get(resource, _EMPTY)

    def with_resource_at_least(
        self, resource: str, count: int, nodes: Mapping[str, NodeRecord]
    ) -> set[str] | frozenset[str]:
        """Nodes with at least `count` allocatable of `resource`.

        Pods ask for a handful of distinct counts (1, 2, 4, 8), and node shapes change
        rarely (heartbeats never change them), so each answer is kept until the next index
        change: an 8-GPU pod no longer costs a Python loop over every GPU node.
        """
        if count <= 1:
            return self.with_resource(resource)
        found = self._at_least.get((resource, count))
        if found is None:
            if len(self._at_least) >= 256:  # odd counts come and go; stay bounded
                self._at_least.clear()
            found = frozenset(
                n for n in self.with_resource(resource) if nodes[n].gpus.get(resource, 0) >= count
            )
            self._at_least[(resource, count)] = found
        return found

    def tainted(self) -> set[str]:
        return self._tainted


def _discard(index: dict[K, set[str]], key: K, name: str) -> None:
    members = index.get(key)
    if members is not None:
        members.discard(name)
        if not members:
            del index[key]
