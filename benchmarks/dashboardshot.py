"""Draw the chart's Grafana dashboard's main view from a real run: docs/dashboard.png.

Not Grafana: matplotlib, fed by the dashboard's own queries (charts/maxtune/dashboards/
maxtune.json, variables filled as Grafana would), answered by Debian's Prometheus scraping the
real operator replicas and agents of the demo stack: a local control plane, the chart installed
by helm, a kwok fleet whose GPUs are simulated from examples/fleets/demo.yaml. While it records,
opted-in training pods are created (and deleted) at a steady pace so the webhook panels have
traffic. The raw answers are written next to the picture (dashboard-data.json).

    pip install matplotlib   # not a maxtune dependency
    python -m benchmarks.dashboardshot --minutes 4 --out docs/dashboard.png
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes.client.exceptions import ApiException

from maxtune.contract.names import LABEL_INJECT, RESOURCE_GPU
from maxtune_dev.demo.cluster import Cluster
from maxtune_dev.demo.prometheus import Prometheus
from maxtune_dev.demo.stack import Stack, StackOptions
from maxtune_dev.localplane import LocalPlane

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "charts" / "maxtune" / "dashboards" / "maxtune.json"
FLEET = ROOT / "examples" / "fleets" / "demo.yaml"
TEAM = "team-dashboard"
STEP_S = 5
# The panels of the main view, by title, in the order they are drawn.
STATS = (
    "GPU nodes profiled",
    "max-autotune capable nodes",
    "Stale profiles",
    "Nodes with labels out of sync",
    "Operator replicas ready",
    "Webhook certificate expires in",
)
BARS = (
    "Nodes by GPU class and capability",
    "GPUs and MIG slices by class",
    "Training step time",
    "Measured gain over default",
    "Cold compile time",
    "Triton GEMM speed over cuBLAS",
)
LINES = ("Admissions by result", "Answer time")


def panels() -> dict[str, dict[str, Any]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return {p["title"]: p for p in dashboard["panels"] if p["type"] != "row"}


def expr_of(target: dict[str, Any], namespace: str) -> str:
    expr: str = target["expr"]
    return (
        expr.replace("$namespace", namespace)
        .replace("$gpu_class", ".*")
        .replace("$__rate_interval", "1m")
    )


def legend(fmt: str, labels: dict[str, str]) -> str:
    text = fmt
    for key, value in labels.items():
        text = text.replace("{{" + key + "}}", value)
    return text.replace("nvidia-", "").replace("geforce-", "")


def instant(prometheus: Prometheus, panel: dict[str, Any], ns: str) -> list[tuple[str, float]]:
    found = []
    for target in panel["targets"]:
        for sample in prometheus.query(expr_of(target, ns)):
            found.append((legend(target.get("legendFormat", ""), sample.labels), sample.value))
    return found


def series(
    prometheus: Prometheus, panel: dict[str, Any], ns: str, start: float, end: float
) -> list[tuple[str, list[float], list[float]]]:
    found = []
    for target in panel["targets"]:
        params = {"query": expr_of(target, ns), "start": f"{start}", "end": f"{end}", "step": "5"}
        for result in prometheus.api("query_range", params)["result"]:
            times = [float(t) - start for t, _ in result["values"]]
            values = [float(v) for _, v in result["values"]]
            name = legend(target.get("legendFormat", ""), result["metric"])
            found.append((name, times, values))
    return found


def traffic(stack: Stack, stop: threading.Event) -> None:
    """Opted-in pods at a steady pace: GPU pods (patched) and CPU pods (skipped)."""
    core = stack.core
    core.create_namespace({"metadata": {"name": TEAM}})
    time.sleep(3)  # the namespace's default service account
    made: list[str] = []
    n = 0
    while not stop.wait(2.0):
        name = f"train-{n}"
        limits = {RESOURCE_GPU: "1"} if n % 3 else {"cpu": "1"}
        pod = {
            "metadata": {"name": name, "labels": {LABEL_INJECT: "true"}},
            "spec": {
                "containers": [
                    {
                        "name": "train",
                        "image": "registry.invalid/train:1",
                        "resources": {"limits": limits},
                    }
                ]
            },
        }
        try:
            core.create_namespaced_pod(TEAM, pod)
            made.append(name)
        except ApiException as exc:
            print(f"pod {name}: {exc.status}")
        if len(made) > 12:
            core.delete_namespaced_pod(made.pop(0), TEAM, grace_period_seconds=0)
        n += 1
    core.delete_namespace(TEAM)


def record(minutes: float, out: Path, progress: Callable[[str], None] = print) -> dict[str, Any]:
    options = StackOptions(fleet_file=FLEET)
    with (
        tempfile.TemporaryDirectory(prefix="maxtune-dashboard-") as tmp,
        LocalPlane() as plane,
        Stack(Cluster.of_plane(plane), options, Path(tmp), progress=progress) as stack,
    ):
        prometheus = stack.prometheus
        assert prometheus is not None
        start = time.time()
        stop = threading.Event()
        worker = threading.Thread(target=traffic, args=(stack, stop), daemon=True)
        worker.start()
        progress(f"recording {minutes} min of traffic")
        time.sleep(minutes * 60)
        stop.set()
        worker.join(timeout=30)
        end = time.time()
        found = panels()
        ns = options.namespace
        return {
            "recorded": {"start": start, "end": end, "namespace": ns},
            "stats": {t: instant(prometheus, found[t], ns) for t in STATS},
            "bars": {t: instant(prometheus, found[t], ns) for t in BARS},
            "lines": {t: series(prometheus, found[t], ns, start, end) for t in LINES},
            "units": {t: found[t]["fieldConfig"]["defaults"].get("unit", "") for t in found},
        }


def _scale(unit: str, values: list[float]) -> tuple[float, str]:
    """Display scale and unit of a panel: Grafana's unit, in a size a person reads."""
    if unit == "s":
        small = bool(values) and max(abs(v) for v in values) < 1
        return (1e3, "ms") if small else (1.0, "s")
    if unit == "percentunit":
        return 100.0, "%"
    return 1.0, ""


def draw(data: dict[str, Any], out: Path) -> None:
    import matplotlib  # noqa: PLC0415 - optional, only for the picture

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    plt.style.use("dark_background")
    fig = plt.figure(figsize=(20, 22), facecolor="#111217")
    grid = fig.add_gridspec(5, 6, height_ratios=[0.45, 1.2, 1.1, 1.0, 0.9], hspace=0.45, wspace=0.9)
    fig.subplots_adjust(left=0.17, right=0.97, top=0.95, bottom=0.04)
    for i, title in enumerate(STATS):
        ax = fig.add_subplot(grid[0, i])
        ax.set_axis_off()
        values = [v for _, v in data["stats"][title]]
        value = values[0] if values else float("nan")
        years = data["units"][title] == "dtdurations"
        text = f"{value / 86400 / 365:.1f} years" if years else f"{value:.0f}"
        ax.text(0.5, 0.35, text, ha="center", va="center", fontsize=26, color="#73bf69")
        ax.set_title(title, fontsize=9, loc="left")
    spots = [grid[1, 0:3], grid[1, 3:6], grid[2, 0:3], grid[2, 3:6], grid[3, 0:3], grid[3, 3:6]]
    for title, spot in zip(BARS, spots, strict=True):
        ax = fig.add_subplot(spot)
        rows = sorted(data["bars"][title])
        values = [value for _, value in rows]
        scale, unit = _scale(data["units"][title], values)
        ax.barh(range(len(rows)), [v * scale for v in values], color="#5794f2")
        ax.set_yticks(range(len(rows)), [name for name, _ in rows], fontsize=7)
        ax.invert_yaxis()
        ax.axvline(0, color="#888888", linewidth=0.6)
        ax.set_title(title + (f" ({unit})" if unit else ""), fontsize=10, loc="left")
        ax.tick_params(axis="x", labelsize=7)
    for i, title in enumerate(LINES):
        ax = fig.add_subplot(grid[4, 3 * i : 3 * i + 3])
        lines = data["lines"][title]
        every = [v for _, _, values in lines for v in values if not math.isnan(v)]
        scale, unit = _scale(data["units"][title], every)
        for name, times, values in lines:
            ax.plot(times, [v * scale for v in values], label=name, linewidth=1.2)
        ax.set_title(f"{title} ({unit or 'per second'})", fontsize=10, loc="left")
        ax.set_xlabel("seconds into the recording", fontsize=8)
        ax.legend(fontsize=7, loc="upper right")
        ax.tick_params(labelsize=7)
    fig.suptitle(
        "maxtune dashboard, main view: drawn with matplotlib from the dashboard's queries on a"
        " real Prometheus (demo stack, simulated GPU fleet)",
        fontsize=11,
    )
    fig.savefig(out, dpi=80, facecolor=fig.get_facecolor())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=4.0)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "dashboard.png")
    parser.add_argument(
        "--from-data", type=Path, help="redraw from a recorded dashboard-data.json, no stack"
    )
    args = parser.parse_args()
    if args.from_data:
        data = json.loads(args.from_data.read_text())
    else:
        data = record(args.minutes, args.out)
        args.out.with_name("dashboard-data.json").write_text(json.dumps(data, indent=1) + "\n")
    draw(data, args.out)
    print(f"wrote {args.out} and {args.out.with_name('dashboard-data.json')}")


if __name__ == "__main__":
    main()
