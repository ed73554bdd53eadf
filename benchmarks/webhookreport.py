"""Markdown for docs/benchmarks/webhook.md from the stored webhook runs."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from benchmarks.report import spread, table

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


ARM_TEXT = {
    "maxtune": "maxtune's webhook (the operator)",
    "reference": "reference webhook, Python (aiohttp, the operator's TLS), constant patch",
    "reference-go-h2": "reference webhook, Go, HTTP/2 offered",
    "reference-go-h1": "reference webhook, Go, HTTP/1.1 only",
    "bare": "no webhook",
}


def _e2e(result: dict[str, Any]) -> list[str]:
    e2e = result["e2e"]
    arms = e2e["arms"]
    out = [
        "## (b) Pod creation through the API server, arm by arm",
        "",
        "Arms: "
        + "; ".join(f"`{a}`: {ARM_TEXT.get(a, a)}" for a in arms)
        + ". Every arm registered under the same webhook name, one after the other on the "
        "same plane, the order rotated each round. Latency of the whole `POST .../pods` in ms, "
        "pooled over the rounds of each arm. A closed loop (N creators) runs the plane as fast "
        "as it goes, so on 2 cores its latency is mostly queueing (creators / throughput); a "
        "paced load (N creators at R pods/s) stays below that. 'API server → webhook' is the "
        "API server's own `apiserver_admission_webhook_admission_duration_seconds` (buckets 5, "
        "25, 100, 500 ms). 'New connections' are the TCP connections the API server opened "
        "to the arm's server during the phase (the kernel's socket table; each is a full TLS "
        "handshake), per 100 pods; 'webhook calls per pod' counts the API server's calls (its "
        "histogram's count: more than 1 would be reinvocation). Agents renew heartbeat Leases "
        f"in the background (every "
        f"{result.get('agent_interval_s', 60):g} s).",
        "",
    ]
    rows = []
    for summary in e2e["summary"]:
        phases = [p for p in e2e["phases"] if p["load"] == summary["load"]]
        for arm in arms:
            mine = [p for p in phases if p["arm"] == arm]
            pooled = summary["pooled"][arm]
            calls = [p["apiserver_webhook_call"] for p in mine]
            pods = sum(p["created"] for p in mine)
            conns = [(p.get("connections") or {}).get("new_connections") for p in mine]
            known = [c for c in conns if c is not None]
            rows.append(
                [
                    summary["name"],
                    arm,
                    pods,
                    f"{sum(p['mutated'] for p in mine)}/{pods}",
                    spread([p["creates_per_s"] for p in mine], "", 0),
                    pooled["p50_ms"],
                    pooled["p99_ms"],
                    spread([v for c in calls if (v := c["p50"].get("value_ms")) is not None], "")
                    if arm != "bare"
                    else "-",
                    spread(
                        [100 * w for c in calls if (w := c["share_within_25ms"]) is not None], "%"
                    )
                    if arm != "bare"
                    else "-",
                    f"{100 * sum(known) / max(1, pods):.1f}" if known and arm != "bare" else "-",
                    f"{sum(c['p50'].get('count', 0) for c in calls) / max(1, pods):.2f}"
                    if arm != "bare"
                    else "-",
                ]
            )
    out.append(
        table(
            [
                "load",
                "arm",
                "pods",
                "mutated",
                "creates/s",
                "p50",
                "p99",
                "API server → webhook p50",
                "webhook calls ≤ 25 ms",
                "new connections per 100 pods",
                "webhook calls per pod",
            ],
            rows,
        )
    )
    out += [""]
    for summary in e2e["summary"]:
        parts = []
        for arm, over in summary["overhead"].items():
            per_round = ", ".join(f"{r['p99_overhead_ms'][arm]:+.1f}" for r in summary["per_round"])
            parts.append(
                f"{arm} p50 {over['p50_ms']:+.1f} ms, p99 {over['p99_ms']:+.1f} ms (per round "
                f"{per_round}), CPU {over['added_cpu_ms_per_pod']:+.2f} ms per pod"
            )
        line = f"- {summary['name']}, over bare: " + "; ".join(parts) + "."
        ratio = summary.get("maxtune_over_reference")
        if ratio:
            line += (
                f" maxtune / reference: p99 overhead {ratio['p99_overhead_pooled']}x pooled "
                f"(per round {ratio['p99_overhead_per_round']}), added CPU per pod "
                f"{ratio['added_cpu_per_pod']}x."
            )
        out.append(line)
    procs = ["kube-apiserver", "etcd", "kube-scheduler", "kwok", "operator"]
    procs += [a for a in arms if a.startswith("reference")]
    cpu_rows = []
    for summary in e2e["summary"]:
        for arm in arms:
            per_pod = summary["cpu_ms_per_pod"][arm]
            added = (summary["overhead"].get(arm) or {}).get("added_cpu_ms_per_pod")
            cpu_rows.append([summary["name"], arm, *[per_pod.get(n) for n in procs], added])
    out += [
        "",
        "CPU per created pod, in ms, by process; 'added' is the sum over the plane and every "
        "webhook server, less the bare arm's (the creators' own client is not counted):",
        "",
        table(["load", "arm", *procs, "added over bare"], cpu_rows),
    ]
    return out


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
        out += ["", *_e2e(last)]
    return "\n".join(out) + "\n"
