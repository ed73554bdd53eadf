"""benchmarks.dashboardshot: the panels it draws are the dashboard's, and the stored run redraws."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import dashboardshot

DATA = Path(__file__).resolve().parents[2] / "docs" / "dashboard-data.json"


def test_drawn_panels_are_panels_of_the_shipped_dashboard() -> None:
    titles = set(dashboardshot.panels())
    assert {*dashboardshot.STATS, *dashboardshot.BARS, *dashboardshot.LINES} <= titles


def test_stored_run_answered_every_drawn_panel() -> None:
    data = json.loads(DATA.read_text())
    for group in ("stats", "bars", "lines"):
        assert all(data[group].values()), [t for t, v in data[group].items() if not v]


def test_stored_run_redraws(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")  # not a dependency: only the picture needs it
    out = tmp_path / "dashboard.png"
    dashboardshot.draw(json.loads(DATA.read_text()), out)
    assert out.read_bytes().startswith(b"\x89PNG") and out.stat().st_size > 50_000
