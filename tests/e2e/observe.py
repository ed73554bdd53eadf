"""What the end-to-end test asks of the observability: live scrapes through promtool, and the
chart's dashboard queries and alert expressions as a real Prometheus answers them.

Grafana substitutes a dashboard's variables before a query reaches Prometheus; `grafana_expr`
does the same with the values a person would pick here (the release namespace, every GPU
class, a rate window of a minute: the stack scrapes every 2 s).
"""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maxtune_dev.demo.promfetch import ensure_promtool

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "charts" / "maxtune" / "dashboards" / "maxtune.json"
RATE_WINDOW = "1m"


@dataclass(frozen=True)
class Scrape:
    content_type: str
    body: str


def scrape(url: str) -> Scrape:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as answer:
        return Scrape(answer.headers["Content-Type"], answer.read().decode())


def promtool_check_metrics(body: str) -> subprocess.CompletedProcess[str]:
    """`promtool check metrics` on one scrape (it reads the exposition on stdin)."""
    return subprocess.run(
        [str(ensure_promtool()), "check", "metrics"],
        input=body,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def families(body: str) -> set[str]:
    return set(re.findall(r"^# TYPE (\S+) ", body, flags=re.M))


@dataclass(frozen=True)
class Query:
    """One query of the dashboard: where it is, and the PromQL Grafana would send."""

    where: str
    expr: str


def grafana_expr(expr: str, namespace: str) -> str:
    return (
        expr.replace("$namespace", namespace)
        .replace("$gpu_class", ".*")  # "All" (the variable's allValue)
        .replace("$__rate_interval", RATE_WINDOW)
    )


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def dashboard_queries(namespace: str) -> list[Query]:
    """Every panel target, and every query variable as the series query it stands for."""
    found = []
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            where = f"{panel['title']} [{target['refId']}]"
            found.append(Query(where, grafana_expr(target["expr"], namespace)))
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] != "query":
            continue
        match = re.fullmatch(r"label_values\((.+), (\w+)\)", variable["definition"])
        assert match, variable["definition"]  # label_values(series, label): Grafana's own syntax
        series, label = match.groups()
        expr = f"count by ({label}) ({grafana_expr(series, namespace)})"
        found.append(Query(f"variable ${variable['name']}", expr))
    return found
