"""The one-group cache most tests here compile through: the chart's own Redis config, ACL
users and Secrets (group `ml`: `train` writes, `serve` only reads), served by the real
redis-server. A module that needs other groups defines its own `chart` (test_isolation)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from maxtune_dev.localplane.redisserver import RedisServer
from tests.cache.cachekit import ML_GROUPS, ChartCache, render_cache


@pytest.fixture(scope="module")
def chart() -> ChartCache:
    return render_cache({"groups": ML_GROUPS, "metrics": {"enabled": True}})


@pytest.fixture(scope="module")
def server(chart: ChartCache, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with chart.server("ml", tmp_path_factory.mktemp("ml")) as started:
        yield started
