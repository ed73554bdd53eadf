"""Three full profiles of the real GPU in a row, each a fresh agent process (as the DaemonSet
starts one), and whether their advice holds from one to the next.

Run on the GPU machine (repository root; docs/decisions/0012-stable-gains.md gives the exact
`run` call, benchmarks/agent/prepare_device.sh fetches the wheels it needs):

    python3 benchmarks/agent/h200_run.py --out $OUT

Each run is `maxtune agent --once --level full --profile-file F` with its own profile file
(so nothing is kept from the run before: every run measures from cold caches). Per run it
prints, for both reference blocks, each mode's step time with the spread of its rounds,
its gain over default with the interval, cold and warm compile seconds and break-even
steps, then the advice the profile carries and the wall time of the whole profile. Last, a
between-runs table: does each run's interval hold the other runs' gains, and does the
recommendation change. `--dry` does all of it against a simulated node instead (the
control flow, on any machine). A JSON summary goes to --out/summary.json.

`--compile-cache-debs DIR` (the .debs of benchmarks/cache/prepare.sh; `--compile-cache` alone
uses the dev cache's redis-server) also proves a compile cache in each run: a local
redis-server on 127.0.0.1 with the chart's rights for the agent's user (GET and SET on pt2:*),
its URL given as `--compile-cache-url bench=URL`, and each run's profile then carries the
agent's proof (cold and warm compile of the inference block through the cache, each a fresh
process, key salted per run). Needs the redis package for the agent's Python (prepare.sh's
wheel):

    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl \
      && PYTHONPATH=/tmp/site:core:agent:dev:. python3 benchmarks/agent/h200_run.py \
         --compile-cache-debs .whl/debs --out $OUT
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
NODE = "h200-node"
DRY_FLEET = ROOT / "examples" / "fleets" / "demo.yaml"
DRY_NODE = "gpu-a100-0"
BUDGET_S = 90.0  # the full profile's target on an H200
CACHE_GROUP = "bench"


def agent_command(out: Path, run: int, *, dry: bool, cache_url: str | None = None) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "maxtune.cli.main",
        "agent",
        "--once",
        "--level",
        "full",
        "--node-name",
        DRY_NODE if dry else NODE,
        "--profile-file",
        str(out / f"profile-{run}.json"),
        "--measurement-log",
        str(out / f"measurement-{run}.json"),
    ]
    if cache_url is not None:
        command += ["--compile-cache-url", f"{CACHE_GROUP}={cache_url}"]
    return command + (["--simulate", str(DRY_FLEET)] if dry else [])


@contextlib.contextmanager
def compile_cache(debs: Path | None, tmp: Path) -> Iterator[str]:
    """A local redis-server with the chart's rights for the agent's user; its URL."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from benchmarks.cache import gpu_cache_run  # noqa: PLC0415 - only when asked for

    # The harness's two stdlib-only modules, usable on a GPU box without the kube client.
    debfetch, redisserver = gpu_cache_run._harness()

    if debs is None:
        binary = redisserver.ensure_redis(lambda line: print(f"[redis] {line}", flush=True))
    else:
        found = sorted(debs.glob("*.deb"))
        if not found:
            raise SystemExit(f"no .deb files in {debs}: run benchmarks/cache/prepare.sh first")
        first = [d for d in found if d.name.startswith("redis-server_")]
        binary = debfetch.unpack_all(
            first + [d for d in found if d not in first], tmp / "redis", redisserver.REDIS.binary
        )
    password = secrets.token_hex(20)
    acl = redisserver.acl_file([("svc-agent", password, redisserver.TORCH_CACHE_RULES)])
    with redisserver.RedisServer(
        redisserver.cache_config("8gb"), acl, binary=binary, workdir=tmp / "server"
    ) as server:
        print(f"compile cache: redis-server on 127.0.0.1:{server.port}", flush=True)
        yield redisserver.url(
            "svc-agent",
            password,
            server.port,
            query={"socket_connect_timeout": 2, "socket_timeout": 5},
        )


# ------------------------------------------------------------------ summary of one run


def _spread(rounds: list[float]) -> dict[str, float]:
    ordered = sorted(rounds)
    return {
        "min_ms": round(ordered[0] * 1e3, 4),
        "median_ms": round(statistics.median(ordered) * 1e3, 4),
        "max_ms": round(ordered[-1] * 1e3, 4),
        "spread_pct": round(100 * (ordered[-1] - ordered[0]) / statistics.median(ordered), 2),
    }


def block_summary(block: dict[str, Any], advice_modes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One block of one device: per mode its rounds' spread, gain and interval, compile."""
    found: dict[str, Any] = {
        "block": block.get("block"),
        "ok": block.get("ok"),
        "processes": block.get("processes"),
        "rounds": block.get("rounds"),
        "calls_per_round": block.get("callsPerRound"),
        "confidence": block.get("confidence"),
        "eager_ms": round(block["eagerStepSeconds"] * 1e3, 4)
        if block.get("eagerStepSeconds")
        else None,
        "message": block.get("message"),
        "reason": block.get("reason"),
        "modes": {},
    }
    for t in block.get("modes", []):
        rounds = t.get("roundStepSeconds") or [t["stepSeconds"]]
        entry = {
            "step_ms": round(t["stepSeconds"] * 1e3, 4),
            **_spread(rounds),
            "gain": t["gain"],
            "gain_low": t.get("gainLow"),
            "gain_high": t.get("gainHigh"),
            "compile_s": round(t["compileSeconds"], 2),
            "warm_compile_s": round(t["warmCompileSeconds"], 2)
            if t.get("warmCompileSeconds") is not None
            else None,
        }
        advice = advice_modes.get(t["mode"])
        if advice is not None:
            entry["break_even_steps"] = advice.get("breakEvenSteps")
            entry["warm_break_even_steps"] = advice.get("warmBreakEvenSteps")
            entry["recommended"] = advice.get("recommended")
        found["modes"][t["mode"]] = entry
    return found


def run_summary(profile: dict[str, Any], log: dict[str, Any] | None) -> dict[str, Any]:
    """What one full profile measured and advised (the first measured device's blocks)."""
    status = profile["status"]
    resource = next((r for r in status.get("resources", []) if r["name"] == "nvidia.com/gpu"), None)
    advice_modes = {m["mode"]: m for m in (resource or {}).get("modes", [])}
    devices = []
    for gpu in status.get("gpus", []):
        units = [(str(gpu["index"]), gpu.get("measurements"))] + [
            (f"{gpu['index']}/{m.get('gpuInstanceId')}", m.get("measurements"))
            for m in gpu.get("migInstances", [])
        ]
        for label, m in units:
            if not m:
                continue
            devices.append(
                {
                    "device": label,
                    "gemm": [
                        {
                            "size": g["size"],
                            "ok": g["ok"],
                            "ratio_to_cublas": g.get("ratioToCublas"),
                            "reason": g.get("reason"),
                        }
                        for g in m.get("gemm", [])
                    ],
                    "training": block_summary(m["training"], advice_modes)
                    if m.get("training")
                    else None,
                    "inference": block_summary(m["compile"], {}) if m.get("compile") else None,
                }
            )
    stages: dict[str, float] = {}
    for entry in (log or {}).values():
        for name, seconds in (entry.get("stages") or {}).items():
            stages[name] = max(stages.get(name, 0.0), float(seconds))
    return {
        "software": status.get("software"),
        "conditions": {
            c["type"]: f"{c['status']}/{c['reason']}" for c in status.get("conditions", [])
        },
        "recommended_mode": resource["recommendedMode"] if resource else None,
        "advice": resource.get("advice") if resource else None,
        "advice_about": resource.get("mode") if resource else None,
        "gain_low": resource.get("gainLow") if resource else None,
        "break_even_steps": resource.get("breakEvenSteps") if resource else None,
        "stage_seconds": {k: round(v, 2) for k, v in stages.items()},
        "devices": devices,
        "compile_cache": status.get("compileCache", []),
    }


# ------------------------------------------------------------------ between runs


def between_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """For each block and mode of the first device: the runs' gains and intervals, whether
    each run's interval holds every other run's gain, and whether the advice flipped."""
    table: dict[str, Any] = {}
    for workload in ("training", "inference"):
        per_mode: dict[str, Any] = {}
        blocks = [
            r["summary"]["devices"][0][workload]
            for r in runs
            if r.get("summary") and r["summary"]["devices"] and r["summary"]["devices"][0][workload]
        ]
        modes = sorted({m for b in blocks for m in b["modes"]} - {"default"})
        for mode in modes:
            seen = [b["modes"][mode] for b in blocks if mode in b["modes"]]
            gains = [s["gain"] for s in seen]
            intervals = [(s["gain_low"], s["gain_high"]) for s in seen]
            held = all(
                lo is not None and hi is not None and lo <= g <= hi
                for i, (lo, hi) in enumerate(intervals)
                for j, g in enumerate(gains)
                if i != j
            )
            widths = [hi - lo for lo, hi in intervals if lo is not None and hi is not None]
            per_mode[mode] = {
                "gains": gains,
                "intervals": intervals,
                "run_to_run_range": (max(gains) - min(gains)) if gains else None,
                "median_interval_width": statistics.median(widths) if widths else None,
                "each_interval_holds_the_other_runs_gains": held,
                "compile_s": [s["compile_s"] for s in seen],
                "warm_compile_s": [s["warm_compile_s"] for s in seen],
            }
        table[workload] = per_mode
    modes_advised = [r["summary"]["recommended_mode"] for r in runs if r.get("summary")]
    table["recommended_modes"] = modes_advised
    table["advice_flipped"] = len(set(modes_advised)) > 1
    table["profile_seconds"] = [r["seconds"] for r in runs]
    table["within_budget"] = all(r["seconds"] <= BUDGET_S for r in runs)
    return table


# ------------------------------------------------------------------ printing


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:+.2%}"


def print_run(index: int, run: dict[str, Any]) -> None:
    print(f"\n==== full profile {index}: {run['seconds']:.1f} s to a published profile", end="")
    print(f", rc={run['rc']}")
    summary = run.get("summary")
    if summary is None:
        print("   no profile written; log tail:", *run.get("log_tail", []), sep="\n   ")
        return
    print(f"   stages: {summary['stage_seconds']}; conditions: {summary['conditions']}")
    for device in summary["devices"]:
        for g in device["gemm"]:
            ratio = g["ratio_to_cublas"]
            print(f"   GPU {device['device']} gemm {g['size']}: ok={g['ok']} ratio {ratio}")
        for workload in ("training", "inference"):
            block = device[workload]
            if block is None:
                continue
            failed = "" if block["ok"] else f" FAILED {block['reason']}"
            print(
                f"   GPU {device['device']} {workload}: {block['block']} ({block['processes']} "
                f"processes x {block['rounds']} rounds x {block['calls_per_round']} calls; "
                f"eager {block['eager_ms']} ms){failed}"
            )
            if block["message"]:
                print(f"      note: {block['message']}")
            for mode, m in block["modes"].items():
                print(
                    f"      {mode:<28} step {m['step_ms']:.4f} ms (rounds {m['min_ms']:.4f}.."
                    f"{m['max_ms']:.4f}, spread {m['spread_pct']:.2f}%) gain {_pct(m['gain'])} "
                    f"[{_pct(m['gain_low'])}, {_pct(m['gain_high'])}] compile {m['compile_s']} s "
                    f"(warm {m['warm_compile_s']} s)"
                    + (
                        f" break-even {m.get('break_even_steps')} steps"
                        f" (warm {m.get('warm_break_even_steps')})"
                        if "break_even_steps" in m
                        else ""
                    )
                )
    for proof in summary.get("compile_cache", []):
        print(
            f"   compile cache {proof['group']} ({proof['mode']}, {proof.get('gpuClass')}): "
            f"reachable {proof['reachable']}, hit {proof['hit']}, cold "
            f"{proof.get('coldSeconds')} s, warm {proof.get('warmSeconds')} s, saved "
            f"{proof.get('savedSeconds')} s"
            + (f"; {proof['reason']}: {proof.get('error')}" if proof.get("reason") else "")
        )
    print(f"   recommendation: {summary['recommended_mode']}")
    print(f"   advice: {summary['advice']}")


def print_between(table: dict[str, Any]) -> None:
    print("\n==== between the runs")
    for workload in ("training", "inference"):
        for mode, row in table[workload].items():
            gains = ", ".join(_pct(g) for g in row["gains"])
            intervals = ", ".join(f"[{_pct(lo)}, {_pct(hi)}]" for lo, hi in row["intervals"])
            print(
                f"   {workload} {mode}: gains {gains}; intervals {intervals}; run-to-run range "
                f"{_pct(row['run_to_run_range'])} vs median interval width "
                f"{_pct(row['median_interval_width'])}; every interval holds the others' gains: "
                f"{row['each_interval_holds_the_other_runs_gains']}; compile {row['compile_s']} s "
                f"(warm {row['warm_compile_s']})"
            )
    print(
        f"   recommended: {table['recommended_modes']} (flipped: {table['advice_flipped']}); "
        f"profile seconds {table['profile_seconds']} (all within {BUDGET_S:g} s: "
        f"{table['within_budget']})"
    )


# ------------------------------------------------------------------ main


def _kill_tree(pid: int) -> None:
    """The agent and its measurement workers (which run in sessions of their own)."""
    import psutil  # noqa: PLC0415 - on the device machine's image

    try:
        parent = psutil.Process(pid)
        family = [*parent.children(recursive=True), parent]
    except psutil.NoSuchProcess:
        return
    for proc in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(family, timeout=10)


def one_run(
    out: Path, index: int, *, dry: bool, timeout_s: float, cache_url: str | None = None
) -> dict[str, Any]:
    log = out / f"agent-{index}.log"
    began = time.monotonic()
    with log.open("w") as handle:
        proc = subprocess.Popen(
            agent_command(out, index, dry=dry, cache_url=cache_url),
            stdout=handle,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        try:
            rc: int | str = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_tree(proc.pid)
            proc.wait()
            rc = "timeout"
    seconds = time.monotonic() - began
    run: dict[str, Any] = {"rc": rc, "seconds": round(seconds, 1)}
    profile_file = out / f"profile-{index}.json"
    measurement = out / f"measurement-{index}.json"
    if profile_file.exists():
        profile = json.loads(profile_file.read_text())
        mlog = json.loads(measurement.read_text()) if measurement.exists() else None
        run["summary"] = run_summary(profile, mlog)
    run["log_tail"] = log.read_text().splitlines()[-8:]
    return run


def pack(out: Path, keep: set[str]) -> None:
    """At most 8 files come back from the device machine: everything else in one archive."""
    files = [p for p in out.iterdir() if p.is_file() and p.name not in keep]
    with tarfile.open(out / "details.tar.gz", "w:gz") as tar:
        for path in files:
            tar.add(path, arcname=path.name)
    for path in files:
        path.unlink()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--first", type=int, default=1, help="number of the first run")
    parser.add_argument("--run-timeout", type=float, default=400.0, help="seconds per profile")
    parser.add_argument("--dry", action="store_true", help="a simulated node: the flow only")
    parser.add_argument(
        "--compile-cache", action="store_true", help="prove a local compile cache in each run"
    )
    parser.add_argument(
        "--compile-cache-debs", type=Path, help="redis-server .debs (prepare.sh); implies it"
    )
    args = parser.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    runs = []
    with contextlib.ExitStack() as stack:
        cache_url = None
        if args.compile_cache or args.compile_cache_debs is not None:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="h200-cache-")))
            cache_url = stack.enter_context(compile_cache(args.compile_cache_debs, tmp))
        for index in range(args.first, args.first + args.runs):
            run = one_run(out, index, dry=args.dry, timeout_s=args.run_timeout, cache_url=cache_url)
            runs.append(run)
            print_run(index, run)
    table = between_runs(runs)
    print_between(table)
    summary = {
        "dry": args.dry,
        "compile_cache": cache_url is not None,
        "runs": runs,
        "between_runs": table,
        "total_seconds": round(time.monotonic() - began, 1),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    pack(out, {"summary.json", "run.log"})
    print(f"\ntotal {summary['total_seconds']} s; summary in {out / 'summary.json'}")
    return 0 if all(r["rc"] == 0 for r in runs) else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
