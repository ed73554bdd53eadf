"""Markdown for docs/benchmarks/fleet.md from the stored fleet runs."""

from __future__ import annotations

from typing import Any

from benchmarks.report import spread, table

MB = 1e6
MIB = 2**20
TARGET_LABELS_S = 60.0
TARGET_PEAK_MB = 250.0


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
        "## Targets (every stored run: median (min to max))",
        "",
    ]
    labelled = [r["start"]["all_labels_right_s"] for r in results]
    peaks = [_mb(r["peak_rss_mib"]) for r in results]
    n = last["nodes"]
    start_ok = all(_writes_ok(r["start"], r["nodes"]) for r in results)
    change_ok = all(_writes_ok(r["change"], r["change"]["changed_profiles"]) for r in results)
    out.append(
        table(
            ["target", "measured", "verdict"],
            [
                [
                    f"all {n} nodes labelled right ≤ {TARGET_LABELS_S:.0f} s after start",
                    spread(labelled, " s"),
                    _verdict(
                        max(labelled) <= TARGET_LABELS_S,
                        f"worst {max(labelled):.1f} s = {max(labelled) / TARGET_LABELS_S:.0%}"
                        " of the budget",
                    ),
                ],
                [
                    "≤ 1 write per node at start",
                    _writes_summary([r["start"] for r in results]),
                    _verdict(start_ok, "watch: label changes per node; operator metric; audit"),
                ],
                [
                    "≤ 1 write per changed node (10% change)",
                    _writes_summary([r["change"] for r in results]),
                    _verdict(change_ok, "same three counts"),
                ],
                [
                    f"operator peak memory ≤ {TARGET_PEAK_MB:.0f} MB",
                    spread(peaks, " MB"),
                    _verdict(
                        max(peaks) <= TARGET_PEAK_MB,
                        f"worst {max(peaks):.0f} MB = {max(peaks) / MIB * MB:.0f} MiB",
                    ),
                ],
            ],
        )
    )
    out += ["", "## Every run", ""]
    rows = []
    for r in results:
        s, c = r["start"], r["change"]
        hb = r.get("heartbeats") or {}
        rows.append(
            [
                r["environment"]["date_utc"],
                "/".join(f"{x:.1f}" for x in r["environment"]["load_average_start"][:2]),
                r["nodes"],
                s["ready_s"],
                s["first_label_s"],
                s["all_labels_right_s"],
                _three(s),
                c["changed_profiles"],
                c["converged_s"],
                _three(c),
                hb.get("label_writes_operator_metric", "-"),
                f"{r['peak_rss_mib']:.0f}",
                f"{r['rss_end_mib']:.0f}",
            ]
        )
    out.append(
        table(
            [
                "date (UTC)",
                "load 1/5 min",
                "nodes",
                "ready s",
                "first label s",
                "all right s",
                "writes: metric / API PATCH / watch",
                "changed",
                "converged s",
                "change writes: metric / PATCH / watch",
                "heartbeat-phase writes",
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
        "last).",
    ]
    if "heartbeats" in last:
        hb = last["heartbeats"]
        op_cpu = hb["cpu"]["cpu_s"].get("operator", 0.0)
        out += [
            "",
            f"Heartbeats: {hb['heartbeats']} profile status updates over {hb['period_s']} s "
            f"(each agent once, as at their 60 s default): operator CPU {op_cpu:.1f} s = "
            f"{op_cpu / max(hb['cpu']['wall_s'], 1e-9):.0%} of a core, "
            f"{hb['label_writes_operator_metric']} label writes, "
            f"{hb['node_writes_apiserver'].get('PATCH', 0)} node PATCHes.",
        ]
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
    for key, title in (("start", "start"), ("change", "10% change"), ("heartbeats", "heartbeats")):
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
