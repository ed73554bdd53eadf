"""Profiles are listed in pages of their own size, and a paged list misses none."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from kubernetes.client import ApiClient

from maxtune.kube import Kube
from maxtune.operator.events import PROFILE_PAGE_SIZE, sources
from maxtune.operator.fleet import FleetState
from maxtune.operator.informer import list_into
from maxtune_dev.testkit import H100, profile
from maxtune_dev.testkit.cluster import PROFILES, delete_quietly, put_profile


class PageCountingKube(Kube):
    """The one client, recording the size of every page of profiles it was given."""

    pages: list[int]

    def list_pages(
        self, path: str, *, page_size: int = 500, query: Mapping[str, str] | None = None
    ) -> Iterator[tuple[list[dict[str, Any]], str]]:
        for page, version in super().list_pages(path, page_size=page_size, query=query):
            if path == PROFILES:
                self.pages.append(len(page))
            yield page, version


@pytest.mark.plane
@pytest.mark.usefixtures("maxtune_crds")
def test_profiles_are_listed_a_page_at_a_time_and_none_is_missed(k8s: ApiClient) -> None:
    kube = PageCountingKube(k8s.configuration)
    kube.pages = []
    names = [f"gpu-pages-{uuid.uuid4().hex[:8]}" for _ in range(5)]
    try:
        for name in names:
            put_profile(kube, profile(name, H100))
        fleet = FleetState()
        list_into(kube, fleet, sources("", profile_page_size=2))
        assert set(names) <= set(fleet.profiles)
        assert all(fleet.profiles[n].has_status for n in names)
        # Every page at most 2 (other tests' profiles may be there too), so at least 3 pages.
        assert max(kube.pages) <= 2 and len(kube.pages) >= 3 and sum(kube.pages) >= 5
    finally:
        for name in names:
            delete_quietly(kube, f"{PROFILES}/{name}")
        kube.close()


def test_the_operator_lists_profiles_in_pages_of_100_unless_told() -> None:
    by_kind = {s.kind: s for s in sources("maxtune-system")}
    assert PROFILE_PAGE_SIZE == 100 and by_kind["profile"].page_size == 100
    assert by_kind["node"].page_size == 500  # nodes are kept as small records: pages of 500
    assert {s.kind: s.page_size for s in sources(None, profile_page_size=7)}["profile"] == 7
