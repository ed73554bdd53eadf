"""The end-to-end part of docs/benchmarks/webhook.md: pods created through the API server."""

from __future__ import annotations

from typing import Any

from benchmarks.report import spread, table

ARM_TEXT = {
    "maxtune": "maxtune's webhook (the operator)",
    "reference": "reference webhook, Python (aiohttp, the operator's TLS), constant patch",
    "reference-go-h2": "reference webhook, Go, HTTP/2 offered",
    "reference-go-h1": "reference webhook, Go, HTTP/1.1 only",
    "bare": "no webhook",
}


def e2e_section(result: dict[str, Any]) -> list[str]:
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
    return out + _loop_lag(e2e)


def _lag_cell(lags: list[dict[str, Any] | None]) -> str:
    """p99 per round (interpolated in its bucket) and the bucket of the longest wait seen."""
    found = [lag for lag in lags if lag]
    if not found:
        return "-"
    p99 = ", ".join(str(lag["p99"].get("value_ms", "-")) for lag in found)
    tops = [lag["max_bucket_ms"] for lag in found if lag.get("max_bucket_ms")]
    worst = max(tops, key=lambda b: (b[1] is None, b[1] or 0.0)) if tops else None
    return f"{p99}; longest in {worst}" if worst else p99


def _loop_lag(e2e: dict[str, Any]) -> list[str]:
    phases = e2e["phases"]
    if not any("operator_loop_lag" in p for p in phases):
        return []  # runs before the lag probe
    rows = []
    for summary in e2e["summary"]:
        for arm in e2e["arms"]:
            mine = [p for p in phases if p["load"] == summary["load"] and p["arm"] == arm]
            rows.append(
                [
                    summary["name"],
                    arm,
                    _lag_cell([p.get("operator_loop_lag") for p in mine]),
                    _lag_cell([p.get("reference_loop_lag") for p in mine]),
                ]
            )
    return [
        "",
        "Event-loop lag over each phase, in ms: how late a server's loop ran a timer due every "
        "100 ms (`maxtune_operator_event_loop_lag_seconds`; the Python reference probes its "
        "own loop the same way). Every admission a server answers waits that long besides its "
        "handler. The operator runs in every arm (it labels the fleet) and answers admissions "
        "only in `maxtune`'s; p99 per round, then the bucket of the longest wait of any round:",
        "",
        table(["load", "arm", "operator loop lag p99", "reference server loop lag p99"], rows),
    ]
