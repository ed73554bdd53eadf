"""The agent proves its node's compile cache: the reference block compiled twice through it.

Where a cache is configured (`--compile-cache-url`, env MAXTUNE_COMPILE_CACHE_URL: one
`GROUP=URL` per sharing group, as the chart's agent Secret holds them), the full profile
compiles the inference reference block (blocks.py) in a fresh process, then again in a
second fresh process, each with the switches pods get (maxtune.contract.compilecache) and
an EMPTY private Inductor and Triton cache folder, so only the remote cache can serve the
second. Both carry TORCH_COMPILE_CACHE_KEY_TAG with a nonce
drawn for this proof: the first compile is truly cold, the agent's entries are keys no
pod ever computes (and the agent never loads an entry a pod wrote), and the second finds
exactly what the first stored. torch's own counters (`fxgraph_cache_hit` / `_miss`) in the
second process say whether the cache served it; times are the first call's seconds.

Each process first reads one salted key with redis-py (the agent's ACL user may run GET and
SET on `pt2:*` only), so a refused password or an unreachable server is reported as such in
under a second instead of torch's silent miss. Nothing here raises into the agent: every
failure is a `CompileCacheProof` with a reason, and no proof ever touches a GPU's verdict.

The parent never imports torch (the agent process stays without it); `python -m
maxtune.agent.cacheproof` is the child.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from maxtune.agent.failures import short
from maxtune.agent.inventory import Inventory
from maxtune.agent.targets import Target
from maxtune.agent.worker import scratch_base
from maxtune.contract import compilecache, gpuclass
from maxtune.contract.models import CompileCacheProof

ENV = "MAXTUNE_COMPILE_CACHE_URL"
DEFAULT_GROUP = "default"
# The mode whose compile a pod most wants to skip (max-autotune's GEMM benchmarking); on an
# H200 this proof measured 15.4 s cold, 5.9 s warm (docs/benchmarks/compile-cache.md).
DEFAULT_MODE = "max-autotune-no-cudagraphs"
CHILD_TIMEOUT_S = 300.0
NO_REDIS = "NoRedisPackage"
BAD_URL = "BadUrl"
UNREACHABLE = "Unreachable"
AUTH_REFUSED = "AuthRefused"
COMPILE_FAILED = "CompileFailed"
TIMEOUT = "Timeout"
WARM_MISS = "WarmMiss"


@dataclass(frozen=True, slots=True)
class CacheTarget:
    """One sharing group's cache as the agent reaches it. `url` holds a password: it is
    never logged, published or put in an error message (see `redacted`). `problem`: the
    configured entry is unusable; the proof then reports BadUrl without contacting anything
    (a misconfigured cache must not stop the agent: it is a status, like every proof)."""

    group: str
    url: str
    problem: str | None = None

    def redacted(self) -> str:
        return redact(self.url)

    def __repr__(self) -> str:
        return f"CacheTarget(group={self.group!r}, url={self.redacted()!r})"


def redact(url: str) -> str:
    try:
        parts = urllib.parse.urlsplit(url)
        password = parts.password
    except ValueError:
        return "<unparsable URL>"
    if password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[-1]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def _hide(text: str, url: str) -> str:
    """`text` without the password of `url` (belt and braces: no message should hold it)."""
    try:
        password = urllib.parse.urlsplit(url).password
    except ValueError:
        password = None
    if password:
        text = text.replace(password, "***").replace(urllib.parse.unquote(password), "***")
    return text


def _check(url: str) -> str | None:
    """Why `url` cannot be a cache's URL (never quoting its password), or None."""
    try:
        parts = urllib.parse.urlsplit(url)
        host, user, password = parts.hostname, parts.username, parts.password
    except ValueError as exc:
        return f"not a URL ({exc})"
    if "$(" in url:
        return f"{redact(url)!r} holds an unexpanded $(VAR): the agent Secret or its key is missing"
    if parts.scheme not in ("redis", "rediss") or not host:
        return f"{redact(url)!r} is not a redis:// URL"
    if not user or not password:
        return f"{redact(url)!r} names no user and password"
    return None


def parse(value: str | Sequence[str]) -> list[CacheTarget]:
    """`GROUP=URL` entries (whitespace-separated in the env) or one bare URL (group
    `default`). An unusable entry becomes a target with a `problem`, reported as BadUrl."""
    entries = value.split() if isinstance(value, str) else [e for v in value for e in v.split()]
    found: dict[str, CacheTarget] = {}
    for entry in entries:
        group, sep, url = entry.partition("=")
        if not sep or "://" in group:
            group, url = DEFAULT_GROUP, entry
        group = group or DEFAULT_GROUP
        problem = _check(url)
        if group in found:  # which URL is meant is unclear: neither is proved
            problem = f"group {group!r} is given twice"
        found[group] = CacheTarget(group, url, problem)
    return list(found.values())


def _proof(
    target: CacheTarget, mode: str, gpu_class: str | None, now: datetime, **fields: Any
) -> CompileCacheProof:
    error = fields.pop("error", None)
    return CompileCacheProof(
        group=target.group,
        gpu_class=gpu_class,
        mode=mode,
        measured_time=now,
        error=None if error is None else short(_hide(str(error), target.url), 400),
        **fields,
    )


def _child(
    target: CacheTarget,
    *,
    tag: str,
    folder: Path,
    device: str,
    mode: str,
    tiny: bool,
    python: str,
    env: Mapping[str, str],
    timeout_s: float,
) -> dict[str, Any]:
    """One fresh process, one compile; its JSON result, or {reason, error}."""
    folder.mkdir(parents=True)
    child_env = {
        **{k: v for k, v in env.items() if not k.startswith(("TORCHINDUCTOR_", "TRITON_"))},
        "TORCHINDUCTOR_CACHE_DIR": str(folder / "inductor"),
        "TRITON_CACHE_DIR": str(folder / "triton"),
        **compilecache.SWITCHES,
        compilecache.URL_VAR: target.url,
        "TORCH_COMPILE_CACHE_KEY_TAG": tag,
        "TMPDIR": str(folder),
    }
    command = [python, "-m", "maxtune.agent.cacheproof", "--device", device, "--mode", mode]
    try:
        done = subprocess.run(
            [*command, "--tiny"] if tiny else command,
            env=child_env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"reason": TIMEOUT, "error": f"the compile took over {timeout_s:g}s"}
    lines = done.stdout.strip().splitlines()
    try:
        result: dict[str, Any] = json.loads(lines[-1])
    except (IndexError, ValueError):
        tail = done.stderr.strip().splitlines()
        last = tail[-1] if tail else "no output"
        return {
            "reason": COMPILE_FAILED,
            "error": f"proof process exited with code {done.returncode}: {last}",
        }
    return result


def prove(
    target: CacheTarget,
    *,
    device: str = "cuda",
    mode: str = DEFAULT_MODE,
    tiny: bool = False,
    gpu_class: str | None = None,
    python: str = sys.executable,
    env: Mapping[str, str] | None = None,
    timeout_s: float = CHILD_TIMEOUT_S,
    scratch: str | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC).replace(microsecond=0),
) -> CompileCacheProof:
    """Cold compile, then warm compile, each a fresh process: the proof. Never raises for
    anything the cache or the compile does."""
    if target.problem is not None:
        return _proof(
            target, mode, gpu_class, clock(), reachable=False, reason=BAD_URL, error=target.problem
        )
    tag = f"maxtune-proof-{secrets.token_hex(16)}"
    base = Path(tempfile.mkdtemp(prefix="maxtune-cacheproof-", dir=scratch))
    environ = dict(os.environ if env is None else env)

    def child(name: str) -> dict[str, Any]:
        return _child(
            target,
            tag=tag,
            folder=base / name,
            device=device,
            mode=mode,
            tiny=tiny,
            python=python,
            env=environ,
            timeout_s=timeout_s,
        )

    try:
        cold = child("cold")
        if "reason" in cold:
            reached = bool(cold.get("reachable"))
            return _proof(target, mode, gpu_class, clock(), reachable=reached, **_why(cold))
        warm = child("warm")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    cold_s = float(cold["seconds"])
    if "reason" in warm:
        return _proof(
            target,
            mode,
            gpu_class,
            clock(),
            reachable=bool(warm.get("reachable")),
            cold_seconds=cold_s,
            **_why(warm),
        )
    warm_s = float(warm["seconds"])
    hit = warm["hits"] > 0 and warm["misses"] == 0
    return _proof(
        target,
        mode,
        gpu_class,
        clock(),
        reachable=True,
        hit=hit,
        cold_seconds=cold_s,
        warm_seconds=warm_s,
        saved_seconds=round(cold_s - warm_s, 3),
        reason=None if hit else WARM_MISS,
        error=None
        if hit
        else f"the second compile was not served by the cache (torch counted {warm['hits']} "
        f"FX graph hits, {warm['misses']} misses; {warm.get('remote_errors', 0)} remote errors)",
    )


def device_class(inventory: Inventory, target: Target) -> str:
    """The GPU class of the device a proof compiles on (its entries are keyed by it)."""
    for gpu in inventory.gpus:
        if gpu.uuid == target.uuid:
            return gpuclass.gpu_class(gpu.product, gpu.sm_count)
        for m in gpu.mig:
            if m.uuid == target.uuid:
                return gpuclass.gpu_class(gpu.product, m.sm_count, m.profile)
    return "unknown"


def prove_node(
    inventory: Inventory,
    devices: Sequence[Target],
    caches: Sequence[CacheTarget],
    *,
    mode: str = DEFAULT_MODE,
    timeout_s: float = CHILD_TIMEOUT_S,
) -> list[CompileCacheProof]:
    """Every configured group, proved on one device of the node (a whole GPU where there is
    one): a node's devices are of one class, and the proof is about the cache, not the GPU.
    No device, no proof: the list is empty and the profile says nothing about the cache."""
    if not devices or not caches:
        return []
    device = next((d for d in devices if not d.is_mig), devices[0])
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": device.uuid}
    cls = device_class(inventory, device)
    try:
        scratch: str | None = scratch_base()
    except OSError:
        scratch = None
    return [
        prove(
            cache,
            device="cuda",
            mode=mode,
            gpu_class=cls,
            env=env,
            timeout_s=timeout_s,
            scratch=scratch,
        )
        for cache in caches
    ]


def _why(result: Mapping[str, Any]) -> dict[str, Any]:
    return {"reason": result["reason"], "error": result.get("error")}


# ---------------------------------------------------------------- the child


def _probe(url: str, tag: str) -> dict[str, Any] | None:
    """Read one salted key: None when the cache answered, else {reason, error}."""
    try:
        import redis  # noqa: PLC0415
    except ImportError:
        return {
            "reason": NO_REDIS,
            "error": "the redis package is not installed here, so torch cannot use a remote "
            "cache (pods without it compile as if there were none)",
        }
    from redis.backoff import NoBackoff  # noqa: PLC0415
    from redis.retry import Retry  # noqa: PLC0415

    try:
        client = redis.Redis.from_url(url, retry=Retry(NoBackoff(), 0))
    except ValueError as exc:
        return {"reason": BAD_URL, "error": f"{type(exc).__name__}: {exc}"}
    try:
        client.get(f"pt2:maxtune-proof::{tag}")
    except redis.AuthenticationError as exc:
        return {"reason": AUTH_REFUSED, "error": f"the cache refused the login: {exc}"}
    except redis.ResponseError as exc:  # NOPERM: the user exists but may not read
        return {"reason": AUTH_REFUSED, "error": f"the cache refused the read: {exc}"}
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        return {"reason": UNREACHABLE, "error": f"{type(exc).__name__}: {exc}"}
    finally:
        client.close()
    return None


def child_main(argv: list[str] | None = None) -> int:
    import argparse  # noqa: PLC0415

    parser = argparse.ArgumentParser(prog="python -m maxtune.agent.cacheproof")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--mode", default=DEFAULT_MODE)
    parser.add_argument("--tiny", action="store_true", help="CPU-sized block, for tests")
    args = parser.parse_args(argv)
    out = sys.stdout
    sys.stdout = sys.stderr  # torch's prints must not corrupt the one JSON line
    env = os.environ
    problem = _probe(env["TORCHINDUCTOR_REDIS_URL"], env["TORCH_COMPILE_CACHE_KEY_TAG"])
    if problem is not None:
        out.write(json.dumps({"reachable": False, **problem}) + "\n")
        return 0
    try:
        result = _compile(args.device, args.mode, tiny=args.tiny)
    except Exception as exc:
        result = {
            "reachable": True,
            "reason": COMPILE_FAILED,
            "error": short(f"{type(exc).__name__}: {exc}", 400),
        }
    out.write(json.dumps(result) + "\n")
    return 0


def _compile(device: str, mode: str, *, tiny: bool) -> dict[str, Any]:
    import torch  # noqa: PLC0415
    from torch._dynamo.utils import counters  # noqa: PLC0415

    from maxtune.agent.blocks import build  # noqa: PLC0415

    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("CUDA is not available in the proof process")
    block = build("inference", torch.device(device), tiny=tiny)
    fn = block.compile(mode)
    if device == "cuda":
        torch.cuda.synchronize()
    began = time.perf_counter()
    error = block.check(fn)  # the first call compiles
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - began
    if not error <= block.error_limit:
        raise RuntimeError(f"wrong result: relative error {error:.3g} against eager")
    inductor = counters["inductor"]
    return {
        "reachable": True,
        "seconds": seconds,
        "hits": int(inductor["fxgraph_cache_hit"]),
        "misses": int(inductor["fxgraph_cache_miss"]),
        "remote_errors": int(inductor["fxgraph_cache_write_error"]),
        "rel_error": error,
    }


if __name__ == "__main__":
    sys.exit(child_main())
