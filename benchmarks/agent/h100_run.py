"""The agent on a real GPU machine, end to end (run on the device machine; see agent-h100.md).

    python3 benchmarks/agent/h100_run.py --out $OUT

Runs, each as a fresh process exactly as a person or the DaemonSet would:
  1. `maxtune probe` and `maxtune probe --json` (timed);
  2. `maxtune agent --once --level L --profile-file F` for inventory, full and gemm: the wall
     time from process start to a published profile, with the agent's own stage log;
  3. `maxtune agent --level full --interval 10` restarted on the full profile's file (it must
     keep the measurements, not re-measure), then its CPU and memory sampled with psutil over
     30 s of re-inventories, and its /metrics, /healthz, /readyz;
  4. the GPUBusy path: another process holds the GPU, `maxtune probe --level gemm` must skip.
The profile goes to a local file (`--profile-file`): no API server on that machine.
Prints a short table last; logs and profiles land in --out.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil

MAXTUNE = [sys.executable, "-m", "maxtune.cli.main"]
NODE = "h100-node"


def timed(cmd: list[str], log: Path, timeout: float = 400) -> tuple[int, float]:
    began = time.monotonic()
    with log.open("w") as handle:
        done = subprocess.run(
            cmd, stdout=handle, stderr=subprocess.STDOUT, timeout=timeout, check=False
        )
    return done.returncode, time.monotonic() - began


def conditions(profile: dict[str, Any]) -> dict[str, str]:
    return {
        c["type"]: f"{c['status']}/{c['reason']}" for c in profile["status"].get("conditions", [])
    }


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError as e:
        return 0, str(e)


def main() -> int:  # noqa: PLR0915 - one scenario after another
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    parser.add_argument("--gemm-repeats", type=int, default=3, help="level-gemm runs")
    args = parser.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {}

    rc, secs = timed([*MAXTUNE, "probe"], out / "probe.txt")
    summary["probe"] = {"rc": rc, "seconds": round(secs, 2)}
    rc, secs = timed([*MAXTUNE, "probe", "--json"], out / "probe.json")
    summary["probe_json"] = {"rc": rc, "seconds": round(secs, 2)}
    print((out / "probe.txt").read_text(), flush=True)

    runs = ["inventory", "full"] + [
        "gemm" if i == 0 else f"gemm{i + 1}" for i in range(args.gemm_repeats)
    ]
    for run in runs:
        level = run.rstrip("0123456789")
        profile_file = out / f"profile-{run}.json"
        rc, secs = timed(
            [
                *MAXTUNE,
                "agent",
                "--once",
                "--level",
                level,
                "--node-name",
                NODE,
                "--profile-file",
                str(profile_file),
                "--measurement-log",
                str(out / f"measurement-{run}.json"),
            ],
            out / f"agent-once-{run}.log",
        )
        entry: dict[str, Any] = {"rc": rc, "seconds_to_published_profile": round(secs, 1)}
        if profile_file.exists():
            profile = json.loads(profile_file.read_text())
            entry["conditions"] = conditions(profile)
            for gpu in profile["status"]["gpus"]:
                m = gpu.get("measurements") or {}
                entry["gemm"] = [
                    {
                        k: g.get(k)
                        for k in (
                            "size",
                            "ok",
                            "reason",
                            "bestConfig",
                            "tritonFlops",
                            "cublasFlops",
                            "ratioToCublas",
                            "autotuneSeconds",
                            "relError",
                            "configsTried",
                            "message",
                        )
                    }
                    for g in m.get("gemm", [])
                ]
                if m.get("compile"):
                    entry["compile"] = m["compile"]
        entry["log_tail"] = (out / f"agent-once-{run}.log").read_text().splitlines()[-6:]
        summary[f"once_{run}"] = entry
        print(run, json.dumps(entry, indent=1), flush=True)

    # Restart on the full profile: must keep measurements; then idle CPU and memory.
    log = (out / "agent-daemon.log").open("w")
    began = time.monotonic()
    proc = subprocess.Popen(
        [
            *MAXTUNE,
            "agent",
            "--level",
            "full",
            "--interval",
            "10",
            "--node-name",
            NODE,
            "--profile-file",
            str(out / "profile-full.json"),
            "--metrics-host",
            "127.0.0.1",
            "--metrics-port",
            "9400",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    ready_after = None
    while time.monotonic() - began < 120:
        code, _ = get("http://127.0.0.1:9400/readyz")
        if code == 200:
            ready_after = time.monotonic() - began
            break
        time.sleep(0.1)
    summary["restart_ready_seconds"] = round(ready_after, 2) if ready_after else None
    ps = psutil.Process(proc.pid)
    time.sleep(2)
    cpu0 = ps.cpu_times()
    t0 = time.monotonic()
    rss: list[int] = []
    while time.monotonic() - t0 < args.idle_seconds:
        rss.append(ps.memory_info().rss)
        time.sleep(1)
    cpu1 = ps.cpu_times()
    wall = time.monotonic() - t0
    used = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    summary["idle"] = {
        "wall_seconds": round(wall, 1),
        "cpu_seconds": round(used, 3),
        "cpu_percent_of_one_core": round(100 * used / wall, 2),
        "rss_mib_max": round(max(rss) / 2**20, 1),
        "rss_mib_min": round(min(rss) / 2**20, 1),
        "children_now": len(ps.children(recursive=True)),
    }
    for path in ("metrics", "healthz", "readyz"):
        code, body = get(f"http://127.0.0.1:9400/{path}")
        (out / f"endpoint-{path}.txt").write_text(f"HTTP {code}\n{body}")
        summary[f"endpoint_{path}"] = code
    proc.send_signal(signal.SIGTERM)
    try:
        summary["daemon_exit"] = proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        summary["daemon_exit"] = "killed"
    log.close()
    text = (out / "agent-daemon.log").read_text()
    summary["restart_kept_measurements"] = "kept the published measurements" in text
    summary["restart_measured_again"] = "measuring GPU" in text

    # GPUBusy: another process holds the GPU.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import torch,time; x=torch.ones(1<<20,device='cuda'); "
            "torch.cuda.synchronize(); print('holding', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    holder.stdout.readline()
    rc, secs = timed([*MAXTUNE, "probe", "--level", "gemm", "--json"], out / "probe-busy.json")
    holder.kill()
    try:
        busy = json.loads((out / "probe-busy.json").read_text())
        summary["busy"] = {
            "rc": rc,
            "seconds": round(secs, 1),
            "conditions": conditions({"status": busy}),
        }
    except ValueError as exc:
        summary["busy"] = {"rc": rc, "error": str(exc)}

    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    # At most 8 files come back from the device machine: everything else in one archive.
    keep = {"summary.json", "run.log"}
    files = [p for p in out.iterdir() if p.is_file() and p.name not in keep]
    with tarfile.open(out / "details.tar.gz", "w:gz") as tar:
        for path in files:
            tar.add(path, arcname=path.name)
    for path in files:
        path.unlink()
    print("\n==== summary ====")
    for run in runs:
        e = summary[f"once_{run}"]
        print(
            f"time to published profile, {run:<9}: {e['seconds_to_published_profile']}s"
            f" rc={e['rc']} {e.get('conditions')}"
        )
        for g in e.get("gemm", []):
            if g["ok"]:
                print(
                    f"   gemm {g['size']}: triton {g['tritonFlops'] / 1e12:.1f} cuBLAS "
                    f"{g['cublasFlops'] / 1e12:.1f} TFLOP/s ratio {g['ratioToCublas']:.4f} "
                    f"autotune {g['autotuneSeconds']:.1f}s best {g['bestConfig']} "
                    f"err {g['relError']:.2e}"
                )
            else:
                print(f"   gemm {g['size']}: FAILED {g['reason']}: {g['message']}")
        if "compile" in e:
            c = e["compile"]
            print(
                f"   compile ok={c['ok']} eager {c.get('eagerStepSeconds', 0) * 1e3:.3f} ms "
                f"{c.get('message') or ''}"
            )
            for t in c.get("modes", []):
                print(
                    f"   {t['mode']:<28} step {t['stepSeconds'] * 1e3:.3f} ms compile "
                    f"{t['compileSeconds']:.1f}s gain {t['gain']:+.2%}"
                )
    print(
        "restart ready after",
        summary["restart_ready_seconds"],
        "s; kept measurements:",
        summary["restart_kept_measurements"],
        "measured again:",
        summary["restart_measured_again"],
    )
    print("idle:", summary["idle"])
    print(
        "endpoints:",
        {k: v for k, v in summary.items() if k.startswith("endpoint_")},
        "daemon exit:",
        summary["daemon_exit"],
    )
    print("busy:", summary["busy"])
    print("probe:", summary["probe"], summary["probe_json"])
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
