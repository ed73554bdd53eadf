"""Markdown for docs/benchmarks/heartbeatcost.md from the stored heartbeat-cost runs."""

from __future__ import annotations

from typing import Any

from benchmarks.report import spread, table

TARGET_RATIO = 5.0
DESCRIPTIONS = {
    "profile": "merge patch of the profile's `status.heartbeatTime` (agents before 0.2)",
    "profile-full": "the same patch, the profile at full precision (agents until 2026-12-02)",
    "lease": "PUT of the node's Lease without field tracking (agents now, `KubeSink._renew`)",
    "lease-tracked": "PUT of the node's Lease, managedFields kept (agents 0.2 until 2026-12-01)",
    "status-put": "GET + PUT of the whole profile status",
    "status-put-full": "GET + PUT of the whole profile status at full precision",
    "status-patch": "merge patch of the whole profile status",
}


def _machine(env: dict[str, Any]) -> str:
    return (
        f"{env['machine']['cores']} cores, {env['machine']['memory_gib']} GiB, "
        f"Linux {env['machine']['kernel']} {env['machine']['arch']}, Python {env['python']}; "
        f"load average (1/5/15 min) {env['load_average_start']} at the start, "
        f"{env.get('load_average_end')} at the end. Control plane: "
        + ", ".join(f"{k} {v}" for k, v in env["control_plane"].items() if k != "helm")
        + f". Code: {env['code']['commit']}"
        + (
            f" with uncommitted changes in {', '.join(env['code']['uncommitted_changes'])}"
            if env["code"]["uncommitted_changes"]
            else ""
        )
        + "."
    )


def render(results: list[dict[str, Any]], latest_file: str) -> str:
    if not results:
        return "No runs stored yet."
    last = results[-1]
    env, settings = last["environment"], last["settings"]
    out = [
        f"Latest run: `{latest_file}` (data/), {env['date_utc']} UTC; {len(results)} run(s) "
        "stored.",
        "",
        f"Command: `{env['command']}`",
        "",
        f"Machine: {_machine(env)}",
        "",
        f"Setup: {settings['profiles']} nodes, each with its GPUNodeProfile "
        f"({last['object_bytes']['profile']:,} bytes of JSON) and heartbeat Lease "
        f"({last['object_bytes']['lease']:,} bytes), the operator's two watches on them; "
        f"{settings['rate']:g} heartbeats/s for {settings['seconds']:g} s per way and round, "
        f"{settings['rounds']} rounds (order reversed every other round), each net of an "
        "idle window of the same length in the same round.",
        "",
    ]
    ratios = [r["summary"]["profile_over_lease"] for r in results if _has_ratio(r)]
    if ratios:
        rows = []
        for key, whom in (
            ("median", "the API server and etcd"),
            ("apiserver_only_median", "the API server alone (the issue's measure)"),
        ):
            values = [float(r[key]) for r in ratios]
            worst = min(values)
            verdict = "**met**" if worst >= TARGET_RATIO else "**missed**"
            rows.append(
                [
                    f"a Lease heartbeat costs {whom} ≥ {TARGET_RATIO:g}x less CPU than a "
                    "profile heartbeat",
                    spread(values, "x"),
                    f"{verdict} (worst {worst:.1f}x)",
                ]
            )
        out += [
            "## Target (every stored run: median (min to max))",
            "",
            table(["target", "measured", "verdict"], rows),
            "",
        ]
    out += ["## Latest run", "", "CPU per heartbeat, net of idle, median over rounds:", ""]
    rows = []
    for way in settings["ways"]:
        row = last["summary"][way]
        ms = row["net_ms_per_heartbeat"]
        per_round = row["net_ms_per_heartbeat_rounds"]["kube-apiserver"]
        rows.append(
            [
                DESCRIPTIONS.get(way, way),
                ms["kube-apiserver"],
                ", ".join(f"{x:.2f}" for x in per_round),
                ms["etcd"],
                row["cpu_ms_per_node_per_minute"],
                row["cores_at_5000_nodes"],
            ]
        )
    out.append(
        table(
            [
                "way",
                "kube-apiserver ms",
                "(per round)",
                "etcd ms",
                "CPU ms per node per minute (60 s interval)",
                "cores at 5,000 nodes",
            ],
            rows,
        )
    )
    ratio = last["summary"].get("profile_over_lease")
    if ratio:
        out += ["", f"Profile / Lease, API server + etcd CPU: {_ratio_text(ratio)}."]
    tracked = last["summary"].get("lease_tracked_over_lease")
    if tracked:
        out += [
            "",
            f"Lease with field tracking / without, API server + etcd CPU: {_ratio_text(tracked)}. "
            "Lease sizes as last written: "
            f"{last['object_bytes'].get('lease-tracked', 0):,} bytes with the record, "
            f"{last['object_bytes']['lease']:,} without.",
        ]
    for key, text in (
        ("profile_full_over_lease", "Full-precision profile / Lease"),
        ("profile_full_over_profile", "Heartbeat patch, full-precision profile / published"),
        ("status_put_full_over_status_put", "Whole-status PUT, full precision / published"),
    ):
        if key in last["summary"]:
            out += ["", f"{text}, API server + etcd CPU: {_ratio_text(last['summary'][key])}."]
    if "profile-full" in last["object_bytes"]:
        out += [
            "",
            f"Profile sizes as stored: {last['object_bytes']['profile']:,} bytes published "
            f"(six significant digits), {last['object_bytes']['profile-full']:,} at full "
            "precision.",
        ]
    out += ["", "## Every run", ""]
    out.append(
        table(
            ["date (UTC)", "load 1/5 min", "profile ms (API server + etcd)", "lease ms", "ratio"],
            [
                [
                    r["environment"]["date_utc"],
                    "/".join(f"{x:.1f}" for x in r["environment"]["load_average_start"][:2]),
                    _total(r, "profile"),
                    _total(r, "lease"),
                    f"{r['summary']['profile_over_lease']['median']}x" if _has_ratio(r) else "-",
                ]
                for r in results
            ],
        )
    )
    return "\n".join(out) + "\n"


def _ratio_text(ratio: dict[str, Any]) -> str:
    per_round = ", ".join(f"{x}x" for x in ratio["per_round"])
    return (
        f"{ratio['median']}x (per round: {per_round}); API server alone "
        f"{ratio['apiserver_only_median']}x"
    )


def _has_ratio(result: dict[str, Any]) -> bool:
    return "profile_over_lease" in result.get("summary", {})


def _total(result: dict[str, Any], way: str) -> float | None:
    row = result.get("summary", {}).get(way)
    if row is None:
        return None
    ms = row["net_ms_per_heartbeat"]
    return round(float(ms["kube-apiserver"]) + float(ms["etcd"]), 3)
