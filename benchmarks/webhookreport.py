"""Markdown for docs/benchmarks/webhook.md from the stored webhook runs."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from benchmarks.report import spread, table
from benchmarks.webhooke2ereport import e2e_section

TARGET_P99_MS = 5.0
TARGET_RATE = 200.0
TARGET_HANDLER_P99_MS = 2.0
TARGET_HANDLER_RATE = 500.0
TARGET_RATIO = 1.2
TARGET_CREATORS = 50


def _header(last: dict[str, Any], latest_file: str, count: int) -> list[str]:
    env = last["environment"]
    code = env["code"]
    dirty = code["uncommitted_changes"]
    return [
        f"Latest run: `{latest_file}` (data/), {env['date_utc']} UTC, {last['nodes']} nodes; "
        f"{count} run(s) stored.",
        "",
        f"Command: `{env['command']}`",
        "",
        f"Machine: {env['machine']['cores']} cores, {env['machine']['memory_gib']} GiB, "
        f"Linux {env['machine']['kernel']} {env['machine']['arch']}, Python {env['python']}; "
        f"load average (1/5/15 min) {env['load_average_start']} at the start, "
        f"{env.get('load_average_end')} at the end. Control plane: "
        + ", ".join(f"{k} {v}" for k, v in env["control_plane"].items() if k != "helm")
        + "; "
        + ", ".join(f"{k} {v}" for k, v in env["packages"].items())
        + f". Code: {code['commit']}"
        + (f" with uncommitted changes in {', '.join(dirty)}" if dirty else "")
        + ".",
    ]


def _step_rows(steps: list[dict[str, Any]]) -> list[list[Any]]:
    by_name: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for step in steps:
        by_name[step["name"]].append(step)
    rows = []
    for name, runs in by_name.items():
        lat = [r["latency"] for r in runs if r["latency"].get("count")]
        server = [r["server"]["p99"].get("value_ms") for r in runs]
        within = [r["server"]["share_within_5ms"] for r in runs]
        cores = [r["cpu"]["cores_used"].get("operator", 0.0) for r in runs]
        client = [r["client_cpu_s"] / max(r["window_s"], 1e-9) for r in runs]
        rows.append(
            [
                name,
                spread([r["achieved_rps"] for r in runs], "", 0),
                spread([x["p50_ms"] for x in lat], "", 2),
                spread([x["p99_ms"] for x in lat], "", 2),
                spread([x["max_ms"] for x in lat], "", 1),
                spread([r["latency_from_due"].get("p99_ms", 0.0) for r in runs], "", 2),
                sum(r["error_count"] for r in runs),
                spread([v for v in server if v is not None], "", 2),
                spread([100 * w for w in within if w is not None], "%", 1),
                spread(cores, "", 2),
                spread(client, "", 2),
                spread([r["cpu"]["machine_cores_busy"] for r in runs], "", 2),
            ]
        )
    return rows


def _in_process(result: dict[str, Any]) -> list[str]:
    found = result["in_process"]
    rows = [
        [shape, row["result"], row["p50_ms"], row["p99_ms"], row["max_ms"]]
        for shape, row in found["shapes"].items()
    ]
    return [
        "## The handler alone, in-process",
        "",
        f"`admission.review` on a FleetState of the same {result['nodes']} nodes, "
        f"{found['reviews_per_shape']} reviews per shape one at a time, in the benchmark's "
        "own process before the plane starts (`python -m benchmarks.hotpath`). No HTTP, no "
        "TLS: the decision's own cost, in ms.",
        "",
        table(["shape", "result", "p50", "p99", "max"], rows),
    ]


def _direct(result: dict[str, Any]) -> list[str]:
    direct = result["direct"]
    rounds = len({s["round"] for s in direct["steps"]})
    shapes = ", ".join(
        f"{name} {share * 10}%"
        + ("" if direct["shapes"][name]["patched"] else " (answered without a patch)")
        for name, share in direct["mix"].items()
    )
    return [
        "## (a) AdmissionReviews straight to the webhook server",
        "",
        f"Mix: {shapes}. Every step ran {rounds} time(s); cells are the median over rounds "
        "(min to max). Latency in ms, measured by the load generator from send to answer; "
        "'p99 from due' counts from when an open-loop request was due (includes the "
        "generator's own lateness). Server p99: the operator's "
        "`maxtune_operator_admission_duration_seconds` histogram (interpolated in its bucket); "
        "'≤ 5 ms': share of requests the server answered within 5 ms (exact, a bucket edge). "
        "Cores: average use over the step.",
        "",
        table(
            [
                "step",
                "req/s",
                "p50",
                "p99",
                "max",
                "p99 from due",
                "errors",
                "server p99",
                "server ≤ 5 ms",
                "operator cores",
                "loadgen cores",
                "machine cores busy",
            ],
            _step_rows(direct["steps"]),
        ),
    ]


def _judged_client(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Runs whose direct part used the latest run's load generator."""
    client = (results[-1].get("direct") or {}).get("client", "python")
    return [r for r in results if (r.get("direct") or {}).get("client", "python") == client]


def _targets(results: list[dict[str, Any]]) -> list[str]:
    rows = []
    p99s, errors, server = [], 0, []
    handler, handler_errors = [], 0
    judged = _judged_client(results)
    for r in judged:
        for step in (r.get("direct") or {}).get("steps", []):
            if step["mode"] != "open":
                continue
            value = step["server"]["p99"].get("value_ms")
            if step["target_rate"] == TARGET_RATE:
                p99s.append(step["latency"].get("p99_ms", float("inf")))
                errors += step["error_count"]
                if value is not None:
                    server.append(value)
            if step["target_rate"] == TARGET_HANDLER_RATE:
                handler.append(value if value is not None else float("inf"))
                handler_errors += step["error_count"]
    client = (judged[-1].get("direct") or {}).get("client", "python") if judged else "-"
    if p99s:
        ok = max(p99s) <= TARGET_P99_MS and errors == 0
        rows.append(
            [
                f"client p99 ≤ {TARGET_P99_MS:g} ms at {TARGET_RATE:g} requests/s, no errors",
                f"{client} p99 {spread(p99s, ' ms', 2)}, server p99 {spread(server, ' ms', 2)}, "
                f"{errors} errors ({len(p99s)} step(s))",
                ("**met**" if ok else "**missed**") + f" (worst client p99 {max(p99s):.2f} ms = "
                f"{max(p99s) / TARGET_P99_MS:.0%} of the budget)",
            ]
        )
    if handler:
        ok = max(handler) <= TARGET_HANDLER_P99_MS and handler_errors == 0
        rows.append(
            [
                f"handler p99 ≤ {TARGET_HANDLER_P99_MS:g} ms at {TARGET_HANDLER_RATE:g} "
                "requests/s, no errors",
                f"server p99 {spread(handler, ' ms', 2)}, {handler_errors} errors "
                f"({len(handler)} step(s))",
                ("**met**" if ok else "**missed**")
                + f" (worst {max(handler):.2f} ms = {max(handler) / TARGET_HANDLER_P99_MS:.0%} "
                "of the budget)",
            ]
        )
    ratios: dict[str, list[float]] = defaultdict(list)
    for r in results:
        for summary in (r.get("e2e") or {}).get("summary", []):
            found = summary.get("maxtune_over_reference")
            if summary["load"] != str(TARGET_CREATORS) or not found:
                continue
            for key in ("p99_overhead_pooled", "added_cpu_per_pod"):
                if found[key] is not None:
                    ratios[key].append(found[key])
    for key, what in (
        ("p99_overhead_pooled", "added p99"),
        ("added_cpu_per_pod", "added CPU per admitted pod"),
    ):
        if ratios[key]:
            worst = max(ratios[key])
            rows.append(
                [
                    f"maxtune's {what} ≤ {TARGET_RATIO:g}x the reference webhook's, "
                    f"{TARGET_CREATORS} creators",
                    spread(ratios[key], "x", 2),
                    ("**met**" if worst <= TARGET_RATIO else "**missed**")
                    + f" (worst {worst:.2f}x)",
                ]
            )
    if not rows:
        return []
    return [
        "## Targets (every stored run with the latest run's load generator and arms: median "
        "(min to max))",
        "",
        table(["target", "measured", "verdict"], rows),
    ]


def _e2e_cells(r: dict[str, Any]) -> list[Any]:
    """50 closed creators: bare p99, maxtune p99, its overhead, the reference's overhead
    (older runs had no reference arm and called maxtune's arm 'webhook')."""
    e2e = {s["load"]: s for s in (r.get("e2e") or {}).get("summary", [])}
    c50 = e2e.get(str(TARGET_CREATORS))
    if c50 is None:
        return [None] * 4
    if "pooled" not in c50:
        return [c50["bare"]["p99_ms"], c50["webhook"]["p99_ms"], c50["p99_overhead_ms"], None]
    ref = c50["overhead"].get("reference") or {}
    return [
        c50["pooled"]["bare"]["p99_ms"],
        c50["pooled"]["maxtune"]["p99_ms"],
        c50["overhead"]["maxtune"]["p99_ms"],
        ref.get("p99_ms"),
    ]


def render(results: list[dict[str, Any]], latest_file: str) -> str:
    if not results:
        return "No runs stored yet."
    last = results[-1]
    out = _header(last, latest_file, len(results))
    out += ["", *_targets(results), ""]
    out += ["## Every run", ""]
    rows = []
    for r in results:
        steps = {s["name"]: s for s in (r.get("direct") or {}).get("steps", [])}
        open200 = steps.get("open 200/s")
        top = steps.get("open 500/s") or steps.get("open 400/s")
        rows.append(
            [
                r["environment"]["date_utc"],
                "/".join(f"{x:.1f}" for x in r["environment"]["load_average_start"][:2]),
                r["nodes"],
                (r.get("direct") or {}).get("client", "python"),
                open200["latency"].get("p99_ms") if open200 else None,
                top["name"] if top else None,
                top["server"]["p99"].get("value_ms") if top else None,
                *_e2e_cells(r),
                r.get("operator_peak_rss_mib"),
            ]
        )
    out.append(
        table(
            [
                "date (UTC)",
                "load 1/5 min",
                "nodes",
                "client",
                "200/s client p99 ms (last round)",
                "top step",
                "its server p99 ms",
                "e2e 50 closed: bare p99",
                "maxtune p99",
                "maxtune p99 overhead ms",
                "reference p99 overhead ms",
                "operator peak RSS MiB",
            ],
            rows,
        )
    )
    out.append("")
    if "in_process" in last:
        out += ["", *_in_process(last)]
    if "direct" in last:
        out += ["", *_direct(last)]
    if "e2e" in last:
        out += ["", *e2e_section(last)]
    return "\n".join(out) + "\n"
