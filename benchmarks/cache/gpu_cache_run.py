"""Cold against warm torch.compile through a Redis remote cache, each compile a fresh process.

On the GPU machine (no network: run benchmarks/cache/prepare.sh here first, then carry .whl):

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
    PYTHONPATH=/tmp/site:core:agent:dev:. python3 benchmarks/cache/gpu_cache_run.py \\
        --debs .whl/debs --out $OUT

One call, at most --budget-s (470 s) of compiles; what did not fit is listed as skipped and can
be run by a second call (e.g. --workloads train --modes max-autotune --no-faults --no-variants).

On a CPU, to prove it end to end before GPU time is spent:

    python -m benchmarks.cache.gpu_cache_run --device cpu --tiny --out /tmp/cache-run

Starts Debian's redis-server (unpacked from the carried .debs, or the dev cache) on 127.0.0.1
with the chart's rights for the cache user, then for each workload and mode runs a cold process
(empty local caches, empty Redis for that key) and a warm one (empty local caches again, so only
Redis can serve it), through the recipe the webhook will hand pods. Records the first call's
seconds (compile included), step times, torch's cache counters and Redis' INFO (keyspace hits
and misses, memory). Then, unless turned off: variants (which extra remote caches add anything
on top of the FX graph cache) and faults (what each recipe does against a Redis that hangs).
Writes cache_run.json and prints a table. Stops starting new processes when --budget-s is spent.

To take a recipe apart (docs/benchmarks/compile-cache.md, H200 calls A-C): `--pairs
recipe:workload:mode,...` runs those instead; `--also-warm fx,fx+aot` adds warm processes with
fewer remote caches after each pair (the FX key leaves the switches out, so they find the same
entries); `--folder-warm` a process on the cold one's filled local folders (the floor for any
cache); `--prewarm` pays torch.compile's one-time start in each process first; `--agent-proof
MODE` runs the agent's own proof against the same server. Each process records torch's compile
phases and the source keys of the code it ran.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import secrets
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "core"), str(ROOT / "agent"), str(ROOT / "dev")]


def _harness() -> tuple[types.ModuleType, types.ModuleType]:
    """maxtune_dev.localplane's debfetch and redisserver. The package's __init__ imports the
    Kubernetes client for the control plane, which a GPU box without network lacks: there the
    package is entered without running it (these two modules need only the standard library)."""
    try:
        import kubernetes  # noqa: F401, PLC0415
    except ImportError:
        package = types.ModuleType("maxtune_dev.localplane")
        package.__path__ = [str(ROOT / "dev" / "maxtune_dev" / "localplane")]
        sys.modules["maxtune_dev.localplane"] = package
    return (
        importlib.import_module("maxtune_dev.localplane.debfetch"),
        importlib.import_module("maxtune_dev.localplane.redisserver"),
    )


if TYPE_CHECKING:
    from maxtune_dev.localplane import debfetch, redisserver
else:
    debfetch, redisserver = _harness()

MODES = ("default", "max-autotune-no-cudagraphs", "max-autotune")
FX = {"TORCHINDUCTOR_FX_GRAPH_REMOTE_CACHE": "1"}
RECIPES: dict[str, dict[str, str]] = {
    "fx": FX,
    "fx+autotune": {**FX, "TORCHINDUCTOR_AUTOTUNE_REMOTE_CACHE": "1"},
    "fx+autotune+bundled": {
        **FX,
        "TORCHINDUCTOR_AUTOTUNE_REMOTE_CACHE": "1",
        "TORCHINDUCTOR_BUNDLED_AUTOTUNE_REMOTE_CACHE": "1",
    },
    "fx+aot": {**FX, "TORCHINDUCTOR_AUTOGRAD_REMOTE_CACHE": "1"},
    "fx+autotune+aot": {
        **FX,
        "TORCHINDUCTOR_AUTOTUNE_REMOTE_CACHE": "1",
        "TORCHINDUCTOR_AUTOGRAD_REMOTE_CACHE": "1",
    },
}
FAULTS = (
    ("fx", "train", "default"),
    ("fx+aot", "train", "default"),
    ("fx+autotune", "mlp", "max-autotune-no-cudagraphs"),
)
INFO_KEYS = ("keyspace_hits", "keyspace_misses", "used_memory", "evicted_keys")


@dataclass
class Bench:
    args: argparse.Namespace
    server: redisserver.RedisServer
    user_password: str
    admin_password: str
    deadline: float
    tmp: Path
    runs: list[dict[str, Any]] = field(default_factory=list)
    proofs: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def admin(self, *command: str) -> str:
        done = self.server.cli(*command, user="admin", password=self.admin_password)
        return done.stdout.strip()

    def stats(self) -> dict[str, int]:
        info = self.server.info("admin", self.admin_password)
        found = {key: int(info.get(key, "0")) for key in INFO_KEYS}
        found["keys"] = int(self.admin("DBSIZE") or 0)
        return found

    def child(
        self,
        label: str,
        workload: str,
        mode: str,
        env: Mapping[str, str],
        tiny: bool,
        *,
        folder: Path | None = None,
    ) -> dict[str, Any]:
        """One fresh process; its result, with Redis' INFO moved by it. `folder`: the local
        cache folders to use (another process's, filled); by default new, empty ones."""
        remaining = self.deadline - time.monotonic()
        if remaining < 20:
            self.skipped.append(f"{label} {workload} {mode}: budget spent")
            return {
                "label": label,
                "workload": workload,
                "mode": mode,
                "ok": False,
                "skipped": "budget",
            }
        folder = folder or Path(tempfile.mkdtemp(prefix="inductor-", dir=self.tmp))
        full_env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("TORCHINDUCTOR_")},
            "TORCHINDUCTOR_CACHE_DIR": str(folder / "inductor"),
            "TRITON_CACHE_DIR": str(folder / "triton"),
            "PYTHONPATH": os.pathsep.join(
                [
                    *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep)),
                    str(ROOT),
                    str(ROOT / "core"),
                    str(ROOT / "agent"),
                ]
            ),
            **env,
        }
        argv = [
            sys.executable,
            "-m",
            "benchmarks.cache.compile_child",
            "--workload",
            workload,
            "--mode",
            mode,
            "--device",
            self.args.device,
            "--steps",
            str(self.args.steps),
        ]
        argv += ["--tiny"] if tiny else []
        argv += ["--prewarm"] if self.args.prewarm else []
        before = self.stats()
        began = time.monotonic()
        try:
            done = subprocess.run(
                argv,
                cwd=ROOT,
                env=full_env,
                capture_output=True,
                text=True,
                timeout=min(self.args.child_timeout, remaining),
                check=False,
            )
            code, out, err = done.returncode, done.stdout, done.stderr
        except subprocess.TimeoutExpired as exc:
            code, out = -9, ""
            err = (exc.stderr or b"").decode() if isinstance(exc.stderr, bytes) else ""
        wall = time.monotonic() - began
        after = self.stats()
        record: dict[str, Any] = {
            "label": label,
            "workload": workload,
            "mode": mode,
            "rc": code,
            "wall_s": wall,
            "ok": code == 0,
            "folder": str(folder),
        }
        record["redis"] = {k: after[k] - before[k] for k in INFO_KEYS if k != "used_memory"}
        record["redis"].update(used_memory=after["used_memory"], keys=after["keys"])
        lines = out.strip().splitlines()
        if code == 0 and lines:
            record.update(json.loads(lines[-1]))
        else:
            record["error"] = [ln for ln in err.splitlines() if ln.strip()][-6:]
        (self.tmp / "logs").mkdir(exist_ok=True)
        log_name = f"{len(self.runs):02d}-{label}-{workload}-{mode}.log".replace("+", "_")
        (self.tmp / "logs" / log_name).write_text(err)
        self.runs.append(record)
        print(
            f"  {label:<22} {workload:<5} {mode:<27} rc={code} wall {wall:6.1f}s "
            f"first call {record.get('first_call_s', float('nan')):7.2f}s "
            f"fx {record.get('counters', {}).get('inductor', {})}",
            flush=True,
        )
        return record

    def pair(self, workload: str, mode: str, recipe: str) -> None:
        """Cold, then warm through Redis alone; with --folder-warm, a third process on the cold
        one's filled local folders and no remote cache (what the issue's folder-cache table
        measured), so that what Redis does not carry shows up in the same run."""
        env = {**RECIPES[recipe], "TORCHINDUCTOR_REDIS_URL": self.url()}
        self.admin("FLUSHALL")
        cold = self.child(f"{recipe}:cold", workload, mode, env, self.args.tiny)
        self.child(f"{recipe}:warm", workload, mode, env, self.args.tiny)
        # torch leaves the remote-cache switches out of the FX graph's key
        # (config._cache_config_ignore_prefix), so a warm process with fewer caches switched on
        # finds the same entries: what each extra cache adds, measured from one cold compile.
        for other in self.args.also_warm:
            if other != recipe and set(RECIPES[other].items()) <= set(RECIPES[recipe].items()):
                other_env = {**RECIPES[other], "TORCHINDUCTOR_REDIS_URL": self.url()}
                self.child(f"{other}:warm<{recipe}", workload, mode, other_env, self.args.tiny)
        if self.args.folder_warm and cold.get("ok"):
            folder = Path(cold["folder"])
            self.child(f"{recipe}:folder", workload, mode, {}, self.args.tiny, folder=folder)

    def url(self, port: int | None = None, **query: float) -> str:
        return redisserver.url(
            "ns-bench", self.user_password, port or self.server.port, query=query
        )


def faults(bench: Bench, which: Sequence[tuple[str, str, str]]) -> None:
    """Each recipe against a hung Redis (1 s timeouts in the URL): does the compile survive?"""
    with redisserver.hung_server() as port:
        # The autotune cache is consulted only for kernels with several configs or under
        # coordinate descent: a max-autotune mode, so that its path is the one exercised.
        for recipe, workload, mode in which:
            url = bench.url(port, socket_timeout=1, socket_connect_timeout=1)
            env = {**RECIPES[recipe], "TORCHINDUCTOR_REDIS_URL": url}
            bench.child(f"hung:{recipe}", workload, mode, env, tiny=True)


def agent_proof(bench: Bench, mode: str) -> None:
    """The agent's own proof (maxtune.agent.cacheproof.prove, what its full profile runs) against
    this server, with the URL timeouts the chart gives the agent: cold and warm compile of the
    reference block, each a fresh process, key salted per proof."""
    from maxtune.agent import cacheproof  # noqa: PLC0415 - needs pydantic (prepare_device.sh)

    url = bench.url(socket_connect_timeout=2, socket_timeout=5)
    began = time.monotonic()
    proof = cacheproof.prove(
        cacheproof.CacheTarget("bench", url),
        device=bench.args.device,
        mode=mode,
        tiny=bench.args.tiny,
        timeout_s=bench.args.child_timeout,
    )
    record = proof.model_dump(mode="json", by_alias=True, exclude_none=True)
    record["wall_s"] = round(time.monotonic() - began, 1)
    bench.proofs.append(record)
    print(f"  agent proof ({mode}): {json.dumps(record, sort_keys=True)}", flush=True)


def parse_triples(text: str) -> list[tuple[str, str, str]]:
    """`recipe:workload:mode,...`, each recipe one of RECIPES."""
    triples = []
    for item in filter(None, text.split(",")):
        recipe, workload, mode = item.split(":")
        if recipe not in RECIPES or workload not in ("mlp", "train") or mode not in MODES:
            raise SystemExit(f"not recipe:workload:mode: {item!r}")
        triples.append((recipe, workload, mode))
    return triples


def redis_binary(args: argparse.Namespace, tmp: Path) -> Path:
    if args.debs is None:
        return redisserver.ensure_redis(lambda line: print(f"[redis] {line}", flush=True))
    debs = sorted(Path(args.debs).glob("*.deb"))
    if not debs:
        raise SystemExit(f"no .deb files in {args.debs}: run benchmarks/cache/prepare.sh first")
    main = [d for d in debs if d.name.startswith("redis-server_")]
    ordered = main + [d for d in debs if d not in main]
    return debfetch.unpack_all(ordered, tmp / "redis", redisserver.REDIS.binary)


def fmt(value: Any, spec: str) -> str:
    return format(value, spec) if isinstance(value, (int, float)) else "-"


def table(runs: Sequence[dict[str, Any]]) -> str:
    head = (
        f"{'recipe:phase':<24} {'workload':<8} {'mode':<27} {'ok':<3} {'first s':>8} "
        f"{'step ms':>9} {'proc s':>7} {'fx hit/miss':>11} {'redis hit/miss':>14} "
        f"{'keys':>5} {'mem MB':>7}"
    )
    lines = [head, "-" * len(head)]
    for r in runs:
        ind = r.get("counters", {}).get("inductor", {})
        red = r.get("redis", {})
        hits = f"{ind.get('fxgraph_cache_hit', 0)}/{ind.get('fxgraph_cache_miss', 0)}"
        rhits = f"{red.get('keyspace_hits', 0)}/{red.get('keyspace_misses', 0)}"
        step = r.get("step_s")
        lines.append(
            f"{r['label']:<24} {r['workload']:<8} {r['mode']:<27} {'y' if r['ok'] else 'NO':<3} "
            f"{fmt(r.get('first_call_s'), '8.2f')} {fmt(step * 1e3 if step else None, '9.3f')} "
            f"{fmt(r.get('total_s'), '7.1f')} {hits:>11} {rhits:>14} {red.get('keys', 0):>5} "
            f"{fmt(red.get('used_memory', 0) / 2**20, '7.1f')}"
        )
    return "\n".join(lines)


def summary(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Cold against warm per (recipe, workload, mode): the saving, and whether warm is slower."""
    out = []
    by_key = {(r["label"], r["workload"], r["mode"]): r for r in runs if r.get("ok")}
    for (label, workload, mode), cold in by_key.items():
        if not label.endswith(":cold"):
            continue
        warm = by_key.get((label.replace(":cold", ":warm"), workload, mode))
        if warm is None:
            continue
        folder = by_key.get((label.replace(":cold", ":folder"), workload, mode))
        out.append(
            {
                "recipe": label.split(":")[0],
                "workload": workload,
                "mode": mode,
                "cold_first_call_s": cold["first_call_s"],
                "warm_first_call_s": warm["first_call_s"],
                "cold_step_s": cold["step_s"],
                "warm_step_s": warm["step_s"],
                "warm_step_slower_by": warm["step_s"] / cold["step_s"] - 1,
                "warm_fx_hits": warm["counters"]["inductor"].get("fxgraph_cache_hit", 0),
                "warm_fx_misses": warm["counters"]["inductor"].get("fxgraph_cache_miss", 0),
                "warm_share": warm["first_call_s"] / cold["first_call_s"],
                "folder_warm_first_call_s": folder["first_call_s"] if folder else None,
                "cold_init_s": cold.get("init_s"),
                # the cold process also loads max-autotune's benchmark modules
                "same_code": bool(warm.get("code")) and set(warm["code"]) <= set(cold["code"]),
                "warm_init_s": warm.get("init_s"),
            }
        )
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="gpu_cache_run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--tiny", action="store_true", help="small sizes (CPU smoke run)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--debs", type=Path, help="folder of .debs from prepare.sh")
    parser.add_argument("--workloads", default="mlp,train")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--budget-s", type=float, default=470.0)
    parser.add_argument("--no-variants", action="store_true")
    parser.add_argument("--no-faults", action="store_true")
    parser.add_argument("--child-timeout", type=float, default=300.0, help="seconds per process")
    parser.add_argument(
        "--pairs",
        help="recipe:workload:mode,... to run instead of the fx pairs and the variants",
    )
    parser.add_argument(
        "--faults", help="recipe:workload:mode,... against a hung server instead of the default"
    )
    parser.add_argument(
        "--folder-warm", action="store_true", help="also a warm process on the cold one's folder"
    )
    parser.add_argument("--agent-proof", metavar="MODE", help="also run the agent's own proof")
    parser.add_argument(
        "--prewarm",
        action="store_true",
        help="each process pays torch.compile's one-time start on a one-op function first",
    )
    parser.add_argument(
        "--also-warm",
        type=lambda text: [r for r in text.split(",") if r],
        default=[],
        help="recipes (subsets of the pair's) whose warm process also runs after each pair",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="cache-run-"))
    binary = redis_binary(args, tmp)
    password, admin = secrets.token_hex(20), secrets.token_hex(20)
    acl = redisserver.acl_file(
        [("ns-bench", password, redisserver.TORCH_CACHE_RULES), ("admin", admin, "~* &* +@all")]
    )
    workloads = [w for w in args.workloads.split(",") if w]
    modes = [m for m in args.modes.split(",") if m]
    with redisserver.RedisServer(
        redisserver.cache_config("8gb"), acl, binary=binary, workdir=tmp / "server"
    ) as server:
        bench = Bench(args, server, password, admin, started + args.budget_s, tmp)
        print(f"redis: {redisserver.version_of(binary)} on 127.0.0.1:{server.port}", flush=True)
        if args.agent_proof:
            agent_proof(bench, args.agent_proof)
        pairs = parse_triples(args.pairs) if args.pairs else []
        for recipe, workload, mode in pairs:
            bench.pair(workload, mode, recipe)
        for workload in workloads if not pairs else []:
            for mode in modes:
                bench.pair(workload, mode, "fx")
        # In order of what the decision needs most, so a spent budget cuts the least: the
        # recipe's saving, then whether each candidate survives a hung cache, then variants.
        if not args.no_faults:
            faults(bench, parse_triples(args.faults) if args.faults else list(FAULTS))
        if not args.no_variants and not pairs:
            ma = next((m for m in modes if m.startswith("max-autotune")), modes[0])
            for recipe in ("fx+autotune", "fx+autotune+bundled"):
                bench.pair(workloads[0], ma, recipe)
            if "train" in workloads:
                bench.pair("train", modes[0], "fx+aot")
        redis_version = redisserver.version_of(binary)
    findings = summary(bench.runs)
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "host": platform.node(),
        "argv": sys.argv,
        "redis_server": redis_version,
        "wall_s": time.monotonic() - started,
        "skipped": bench.skipped,
        "summary": findings,
        "agent_proofs": bench.proofs,
        "runs": bench.runs,
    }
    (args.out / "cache_run.json").write_text(json.dumps(result, indent=2, sort_keys=True))
    with (args.out / "children.log").open("w") as joined:  # one file: the device returns 8
        for log in sorted((tmp / "logs").glob("*.log")):
            joined.write(f"==> {log.name}\n{log.read_text()}\n")
    print()
    print(table(bench.runs))
    print()
    for s in findings:
        print(
            f"{s['recipe']:<20} {s['workload']:<6} {s['mode']:<27} first call "
            f"{s['cold_first_call_s']:7.2f} -> {s['warm_first_call_s']:6.2f} s "
            f"({s['warm_share']:.0%} of cold; folder "
            f"{fmt(s['folder_warm_first_call_s'], '.2f')} s), step {s['cold_step_s'] * 1e3:.3f} -> "
            f"{s['warm_step_s'] * 1e3:.3f} ms, warm fx hits {s['warm_fx_hits']} "
            f"misses {s['warm_fx_misses']}"
        )
    for r in bench.runs:
        phases = sorted(r.get("phases", {}).items(), key=lambda kv: -kv[1])[:8]
        if phases:
            shown = ", ".join(f"{name} {sec:.2f}" for name, sec in phases)
            print(f"phases {r['label']} {r['workload']} {r['mode']}: {shown}")
    for line in bench.skipped:
        print(f"skipped: {line}")
    print(f"wrote {args.out / 'cache_run.json'} in {result['wall_s']:.0f} s")
    # Variants and faults are findings whatever they show; the measurement itself must run.
    return 0 if all(r.get("ok") for r in bench.runs if r["label"].startswith("fx:")) else 1


if __name__ == "__main__":
    sys.exit(main())
