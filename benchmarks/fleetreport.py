"""Markdown for docs/benchmarks/fleet.md from the stored fleet runs.

Targets are judged on the runs of the latest run's operator and fleet size only
(the stored kopf runs of decision 0007's before/after stay in the table of every
run, with their own operator named)."""

from __future__ import annotations

from typing import Any

from benchmarks.report import spread, table

MB = 1e6
MIB = 2**20
TARGET_LABELS_S = 30.0
TARGET_PEAK_MB = 200.0
TARGET_CHANGE_S = 5.0
HEARTBEAT_PHASES = (("heartbeats", "Lease"), ("legacy_heartbeats", "profile"))


def operator_kind(result: dict[str, Any]) -> str:
    """Which operator a run measured: kopf-based (before decision 0007) or informers."""
    kopf = result["environment"]["packages"].get("kopf", "absent")
    return "informers" if kopf == "absent" else f"kopf {kopf}"


def heartbeat_way(result: dict[str, Any], key: str) -> str:
    """How the agents heartbeat in a phase (runs before Leases heartbeat in the profile)."""
    return str((result.get(key) or {}).get("way", "profile"))


def _mb(mib: float) -> float:
    return mib * MIB / MB


def _verdict(ok: bool, detail: str) -> str:
    return f"**met** ({detail})" if ok else f"**missed** ({detail})"


def _api_writes(phase: dict[str, Any]) -> int:
    """The operator's node writes as the API server saw them: from the audit log when the
    run kept one (older runs: every node PATCH, whoever sent it)."""
    audited = phase.get("operator_node_writes_audit")
    return int(audited if audited is not None else phase["node_writes_apiserver"].get("PATCH", 0))


def _writes_ok(phase: dict[str, Any], expected: int) -> bool:
    watch = phase["watch"]
    return bool(
        watch["max_per_node"] <= 1
        and phase["label_writes_operator_metric"] <= expected
        and _api_writes(phase) <= expected
    )


def render(results: list[dict[str, Any]], latest_file: str) -> str:
    if not results:
        return "No runs stored yet."
    last = results[-1]
    env = last["environment"]
    out = [
        f"Latest run: `{latest_file}` (data/), {env['date_utc']} UTC, "
        f"{last['nodes']} nodes; {len(results)} run(s) stored.",
        "",
        f"Command: `{env['command']}`",
        "",
        f"Machine: {env['machine']['cores']} cores, {env['machine']['memory_gib']} GiB, "
        f"Linux {env['machine']['kernel']} {env['machine']['arch']}, Python {env['python']}. "
        "Control plane: "
        + ", ".join(f"{k} {v}" for k, v in env["control_plane"].items() if k != "helm")
        + "; "
        + ", ".join(f"{k} {v}" for k, v in env["packages"].items())
        + f". Code: {env['code']['commit']}"
        + (
            f" with uncommitted changes in {', '.join(env['code']['uncommitted_changes'])}"
            if env["code"]["uncommitted_changes"]
            else ""
        )
        + ".",
        "",
    ]
    n = last["nodes"]
    kind = operator_kind(last)
    judged = [r for r in results if r["nodes"] == n and operator_kind(r) == kind]
    out += [
        f"## Targets ({len(judged)} stored run(s) of the {kind} operator at {n} nodes: "
        "median (min to max))",
        "",
        table(["target", "measured", "verdict"], _target_rows(judged, n)),
    ]
    out += ["", "## Every run", ""]
    rows = []
    for r in results:
        s, c = r["start"], r["change"]
        rows.append(
            [
                r["environment"]["date_utc"],
                "/".join(f"{x:.1f}" for x in r["environment"]["load_average_start"][:2]),
                operator_kind(r),
                r["nodes"],
                s["ready_s"],
                s["first_label_s"],
                s["all_labels_right_s"],
                _three(s),
                c["changed_profiles"],
                c["converged_s"],
                _three(c),
                _heartbeat_writes(r),
                f"{r['peak_rss_mib']:.0f}",
                f"{r['rss_end_mib']:.0f}",
            ]
        )
    out.append(
        table(
            [
                "date (UTC)",
                "load 1/5 min",
                "operator",
                "nodes",
                "ready s",
                "first label s",
                "all right s",
                "writes: metric / API PATCH / watch",
                "changed",
                "converged s",
                "change writes: metric / PATCH / watch",
                "heartbeat-phase writes (way)",
                "peak RSS MiB",
                "end RSS MiB",
            ],
            rows,
        )
    )
    out += ["", "## Latest run in detail", ""]
    out += _cpu_section(last)
    out += [
        "",
        f"Fleet: {', '.join(f'{k} {v}' for k, v in last['kinds'].items())}. "
        f"Setup: created in {last['setup']['create_s']} s (32 requests in flight), "
        f"nodes Ready and untainted {last['setup']['settle_s']} s later, node writes quiet "
        f"{last['setup']['quiet_s']} s after that.",
        "",
        f"Change: {last['change']['changed_profiles']} profiles "
        f"({', '.join(f'{k} {v}' for k, v in last['change']['changed_kinds'].items())}) sent in "
        f"{last['change']['send_s']} s; every label right {last['change']['converged_s']} s "
        f"after the first was sent ({last['change']['converged_after_last_sent_s']} s after the "
        "last)." + _lags(last["change"]),
    ]
    for key, _ in HEARTBEAT_PHASES:
        if key in last:
            hb = last[key]
            cores = hb["cpu"]["cores_used"]
            what = (
                "Lease renewals (PUT)"
                if heartbeat_way(last, key) == "lease"
                else "profile heartbeats (merge patch of status.heartbeatTime)"
            )
            out += [
                "",
                f"Heartbeats, {heartbeat_way(last, key)} way: {hb['heartbeats']} {what} over "
                f"{hb['period_s']} s ({hb['heartbeats'] / last['nodes']:.2f} per agent, whose "
                f"interval is {_interval(last):g} s): "
                f"kube-apiserver {cores.get('kube-apiserver', 0):.3f} cores, etcd "
                f"{cores.get('etcd', 0):.3f}, operator {cores.get('operator', 0):.3f}; "
                f"{hb['label_writes_operator_metric']} label writes (operator metric), "
                f"{_api_writes(hb)} node writes by the operator (audit), "
                f"{hb['watch']['label_changing_events']} label changes (watch)."
                + (
                    f" {hb['failed']} heartbeats failed (refused, or no answer within 60 s)."
                    if hb.get("failed")
                    else ""
                ),
            ]
    out += _latency_section(last)
    out += _writers_section(last)
    return "\n".join(out) + "\n"


def _three(phase: dict[str, Any]) -> str:
    """The operator's counter / the API server's node PATCHes / label changes on the watch."""
    patches = phase["node_writes_apiserver"].get("PATCH", 0)
    return (
        f"{phase['label_writes_operator_metric']} / {patches} / "
        f"{phase['watch']['label_changing_events']}"
    )


def _writes_summary(phases: list[dict[str, Any]]) -> str:
    worst = max(p["watch"]["max_per_node"] for p in phases)
    writes = [p["label_writes_operator_metric"] for p in phases]
    seen = [_api_writes(p) for p in phases]
    return (
        f"max {worst} per node; {min(writes)} to {max(writes)} writes in all (operator metric), "
        f"{min(seen)} to {max(seen)} (API server)"
    )


def _writers_section(result: dict[str, Any]) -> list[str]:
    """Every node write of each phase by writer, from the API server's audit log."""
    rows = []
    for key in ("start", "change", "heartbeats"):
        phase = result.get(key) or {}
        for who, counts in (phase.get("node_writes_by_writer") or {}).items():
            rows.append([key, who, ", ".join(f"{verb} {n}" for verb, n in counts.items())])
    if not rows:
        return []
    return [
        "",
        "Node writes by writer (API server audit log, successful writes only; kwok's and "
        "the controller manager's are the simulation's own):",
        "",
        table(["phase", "writer", "writes"], rows),
    ]


def _cpu_section(result: dict[str, Any]) -> list[str]:
    phases = [("idle plane (before the operator)", result["idle_plane"])]
    for key, title in (
        ("start", "start"),
        ("change", "10% change"),
        ("heartbeats", f"heartbeats ({heartbeat_way(result, 'heartbeats')})"),
        ("legacy_heartbeats", "heartbeats (profile, the old way)"),
    ):
        if key in result:
            phases.append((title, result[key]["cpu"]))
    names = ["operator", "kube-apiserver", "etcd", "kwok", "kube-controller-manager", "driver"]
    rows = []
    for title, cpu in phases:
        cores = cpu["cores_used"]
        rows.append(
            [title, cpu["wall_s"]]
            + [cores.get(name) for name in names]
            + [cpu["machine_cores_busy"]]
        )
    return [
        "CPU, in cores used on average over each phase (the machine has "
        f"{result['idle_plane']['machine_cores']}; 'machine' includes other sessions' work):",
        "",
        table(["phase", "wall s", *names, "machine"], rows),
    ]


def _interval(result: dict[str, Any]) -> float:
    return float(result.get("agent_interval_s", 60.0))


def _heartbeat_writes(result: dict[str, Any]) -> str:
    """Label writes (operator metric) in each heartbeat phase, with the way agents beat."""
    found = [
        f"{result[key]['label_writes_operator_metric']} ({heartbeat_way(result, key)})"
        for key, _ in HEARTBEAT_PHASES
        if key in result
    ]
    return ", ".join(found) or "-"


def _target_rows(judged: list[dict[str, Any]], n: int) -> list[list[Any]]:
    labelled = [r["start"]["all_labels_right_s"] for r in judged]
    peaks = [_mb(r["peak_rss_mib"]) for r in judged]
    converged = [r["change"]["converged_s"] for r in judged]
    start_ok = all(_writes_ok(r["start"], r["nodes"]) for r in judged)
    change_ok = all(_writes_ok(r["change"], r["change"]["changed_profiles"]) for r in judged)
    quiet = [
        (r[key]["label_writes_operator_metric"], _api_writes(r[key]), r[key]["watch"])
        for r in judged
        for key, _ in HEARTBEAT_PHASES
        if key in r
    ]
    quiet_ok = all(m == 0 and a == 0 and w["label_changing_events"] == 0 for m, a, w in quiet)
    rows = [
        [
            f"all {n} nodes labelled right ≤ {TARGET_LABELS_S:.0f} s after start (ready included)",
            spread(labelled, " s"),
            _verdict(
                max(labelled) <= TARGET_LABELS_S,
                f"worst {max(labelled):.1f} s = {max(labelled) / TARGET_LABELS_S:.0%} of the "
                "budget",
            ),
        ],
        [
            "exactly 1 write per node at start",
            _writes_summary([r["start"] for r in judged]),
            _verdict(start_ok, "watch: label changes per node; operator metric; audit"),
        ],
        [
            f"10% change converged ≤ {TARGET_CHANGE_S:.0f} s after the first changed profile "
            "was sent",
            spread(converged, " s"),
            _verdict(
                max(converged) <= TARGET_CHANGE_S,
                f"worst {max(converged):.1f} s = {max(converged) / TARGET_CHANGE_S:.0%} of "
                "the budget",
            ),
        ],
        [
            "exactly 1 write per changed node (10% change)",
            _writes_summary([r["change"] for r in judged]),
            _verdict(change_ok, "same three counts"),
        ],
        [
            "0 label writes while nothing changes (heartbeat phases)",
            f"{sum(m for m, _, _ in quiet)} (operator metric), {sum(a for _, a, _ in quiet)} "
            f"(audit), {sum(w['label_changing_events'] for _, _, w in quiet)} (watch) over "
            f"{len(quiet)} phase(s)",
            _verdict(quiet_ok and bool(quiet), "the same three counts, every phase"),
        ],
        [
            f"operator peak memory ≤ {TARGET_PEAK_MB:.0f} MB",
            spread(peaks, " MB"),
            _verdict(
                max(peaks) <= TARGET_PEAK_MB,
                f"worst {max(peaks):.0f} MB = {max(peaks) / MIB * MB:.0f} MiB",
            ),
        ],
    ]
    return rows


def _latency_section(result: dict[str, Any]) -> list[str]:
    """The API server's own latency for the requests of each phase (its histogram)."""
    rows = []
    for key, title in (
        ("start", "start"),
        ("change", "10% change"),
        ("heartbeats", "heartbeats"),
        ("legacy_heartbeats", "heartbeats, old way"),
    ):
        phase = result.get(key) or {}
        for request, found in (phase.get("apiserver_latency") or {}).items():
            rows.append(
                [
                    title,
                    request,
                    found["p50"].get("count"),
                    found["p50"].get("value_ms"),
                    found["p99"].get("value_ms"),
                    found["p99"].get("bucket_ms"),
                ]
            )
    if not rows:
        return []
    return [
        "",
        "The API server's own latency per request (`apiserver_request_duration_seconds`, "
        "interpolated in its buckets), in ms:",
        "",
        table(["phase", "request", "count", "p50", "p99", "p99 bucket"], rows),
    ]


def _lags(change: dict[str, Any]) -> str:
    """Per changed node: the operator's answer by the API server's clock, and what the
    benchmark's node watch saw (runs before 2026-12-02 15:00 have neither)."""
    server, seen = change.get("operator_lag") or {}, change.get("label_lag") or {}
    if not server.get("count") or not seen.get("count"):
        return ""
    return (
        f" Per changed node ({change.get('send_concurrency', 32)} profiles written at once), "
        "from the API server finishing its profile's write to receiving the operator's write "
        f"of the node: p50 {server['p50_ms'] / 1e3:.2f} s, p90 {server['p90_ms'] / 1e3:.2f} s, "
        f"max {server['max_ms'] / 1e3:.2f} s; to the benchmark's node watch seeing its labels "
        f"right: p50 {seen['p50_ms'] / 1e3:.2f} s, max {seen['max_ms'] / 1e3:.2f} s."
    )
