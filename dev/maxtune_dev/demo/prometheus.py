"""A real Prometheus on 127.0.0.1 that scrapes the operator and the agents, and its HTTP API.

Targets come from file_sd files the stack runner writes as it starts processes, so Prometheus can
start before the workloads exist and a restarted process on a new port is picked up within a
second. Each target carries the labels a Kubernetes service discovery would have given it
(`namespace`, `pod`, and `node` for agents): per-GPU agent series are told apart by node that
way, as they would be in a cluster.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maxtune_dev.localplane.process import Proc, spawn, stop

SCRAPE_INTERVAL_S = 2
JOBS = ("maxtune-operator", "maxtune-agent")


class PrometheusError(RuntimeError):
    """Prometheus did not start or did not answer; the message carries its log's tail."""


@dataclass(frozen=True, slots=True)
class Target:
    address: str  # host:port
    labels: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Sample:
    labels: dict[str, str]
    value: float


def render_config(folder: Path) -> str:
    """prometheus.yml: one job per component, targets from `<folder>/<job>.json`."""
    jobs = "".join(
        f"  - job_name: {job}\n"
        f"    metrics_path: /metrics\n"
        f"    file_sd_configs:\n"
        f"      - files: ['{folder / f'{job}.json'}']\n"
        f"        refresh_interval: 1s\n"
        for job in JOBS
    )
    return (
        "# Written by maxtune's stack runner: the operator and agents run as local processes.\n"
        "global:\n"
        f"  scrape_interval: {SCRAPE_INTERVAL_S}s\n"
        f"  scrape_timeout: {SCRAPE_INTERVAL_S - 1}s\n"
        f"  evaluation_interval: {SCRAPE_INTERVAL_S}s\n"
        "scrape_configs:\n" + jobs
    )


def write_targets(folder: Path, job: str, targets: Sequence[Target]) -> None:
    """Replace a job's file_sd targets atomically (Prometheus never reads half a file)."""
    groups = [{"targets": [t.address], "labels": dict(t.labels)} for t in targets]
    path = folder / f"{job}.json"
    partial = path.with_suffix(".json.tmp")
    partial.write_text(json.dumps(groups, indent=1))
    partial.replace(path)


class Prometheus:
    """One Prometheus process with its own config, data folder and port."""

    def __init__(self, binary: Path, folder: Path, port: int) -> None:
        self.binary = binary
        self.folder = folder
        self.port = port
        self.proc: Proc | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.folder / "prometheus.log"

    def start(self, timeout_s: float = 60.0) -> Prometheus:
        self.folder.mkdir(parents=True, exist_ok=True)
        for job in JOBS:
            if not (self.folder / f"{job}.json").exists():
                write_targets(self.folder, job, [])
        config = self.folder / "prometheus.yml"
        config.write_text(render_config(self.folder))
        argv = [
            str(self.binary),
            f"--config.file={config}",
            f"--storage.tsdb.path={self.folder / 'data'}",
            "--storage.tsdb.retention.time=1d",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
            f"--web.local-assets={self.binary.parents[1] / 'share' / 'prometheus' / 'web'}",
        ]
        self.proc = spawn("prometheus", argv, self.log)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.proc.alive():
                raise PrometheusError(f"prometheus exited:\n{self.proc.log_tail()}")
            if self._get("/-/ready") is not None:
                return self
            time.sleep(0.2)
        raise PrometheusError(
            f"prometheus not ready after {timeout_s:.0f}s:\n{self.proc.log_tail()}"
        )

    def stop(self) -> None:
        if self.proc is not None:
            stop([self.proc])
            self.proc = None

    def set_targets(self, job: str, targets: Sequence[Target]) -> None:
        write_targets(self.folder, job, targets)

    # -- HTTP API -----------------------------------------------------------

    def _get(self, path: str, params: Mapping[str, str] | None = None) -> bytes | None:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        try:
            with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=5) as answer:
                body: bytes = answer.read()
                return body
        except (urllib.error.URLError, OSError):
            return None

    def api(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        """`data` of an /api/v1 answer; raises PrometheusError when it is not `success`."""
        body = self._get(f"/api/v1/{path}", params)
        if body is None:
            raise PrometheusError(f"no answer from {self.url}/api/v1/{path}")
        answer = json.loads(body)
        if answer.get("status") != "success":
            raise PrometheusError(f"/api/v1/{path} {params}: {answer.get('error', answer)}")
        return answer["data"]

    def query(self, expr: str) -> list[Sample]:
        """An instant query; every result is a sample with its labels and float value."""
        data = self.api("query", {"query": expr})
        if data["resultType"] == "scalar":
            return [Sample({}, float(data["result"][1]))]
        return [Sample(dict(r["metric"]), float(r["value"][1])) for r in data["result"]]

    def query_url(self, expr: str) -> str:
        """The URL a person can curl for the same query."""
        return f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"

    def targets_up(self) -> dict[str, dict[str, int]]:
        """Per job: how many active targets are up and how many there are."""
        found: dict[str, dict[str, int]] = {job: {"up": 0, "total": 0} for job in JOBS}
        for target in self.api("targets", {"state": "active"})["activeTargets"]:
            job = target["labels"].get("job", "")
            counts = found.setdefault(job, {"up": 0, "total": 0})
            counts["total"] += 1
            counts["up"] += target["health"] == "up"
        return found
